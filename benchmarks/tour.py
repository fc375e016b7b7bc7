"""The tour, timed: `genlearn tour` start to finish, and are its samples recognisable digits?

"Recognisable" is measured, not eyeballed alone: a classifier trained on the real digits
(scikit-learn logistic regression on the same 16 px images) labels the samples of the VAE, the
DCGAN and the diffusion model (DDIM, 50 steps), and the share it labels confidently (max
probability >= 0.8) is compared with the same share on the real test digits (the peer) and on
noise images of the same brightness (a floor). The GPT's last validation loss is reported
beside them (nats per character; a unigram model of Shakespeare scores 3.3).

    python benchmarks/tour.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from genlearn.data import get_dataset
from genlearn.tour import TOUR_IMAGE_SIZE
from genlearn.workflows import load_model


def confident_share(classifier: LogisticRegression, images: np.ndarray) -> float:
    return float((classifier.predict_proba(images).max(axis=1) >= 0.8).mean())


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="genlearn-tour-"))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "genlearn", "tour", "--runs-dir", str(work)],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    runs = {p.name.split("-")[0]: p for p in work.iterdir() if (p / "config.json").is_file()}
    train_seconds = {}
    for family, run in runs.items():
        log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        train_seconds[family] = [r for r in log if r["split"] == "train"][-1]["train_seconds"]

    data = get_dataset("digits", image_size=TOUR_IMAGE_SIZE)
    flat = lambda t: t.reshape(len(t), -1).float().numpy() / 255  # noqa: E731
    classifier = LogisticRegression(max_iter=2000).fit(
        flat(data.train_images), data.train_labels.numpy()
    )
    shares = {}
    for family in ("vae", "dcgan", "ddpm"):
        model, _ = load_model(runs[family])
        with torch.no_grad():
            samples = model.eval().sample(1000, generator=torch.Generator().manual_seed(0))
        shares[f"{family}_samples"] = confident_share(classifier, samples.reshape(1000, -1).numpy())
    gpt_log = [json.loads(x) for x in (runs["gpt"] / "metrics.jsonl").read_text().splitlines()]
    gpt_validation = [r["loss"] for r in gpt_log if r["split"] == "validation"][-1]
    real = flat(data.test_images)
    noise = np.random.default_rng(0).permutation(real.ravel()).reshape(real.shape)
    print(
        json.dumps(
            {
                "benchmark": "tour",
                "tour_seconds_start_to_finish": round(seconds, 1),
                "tour_printed": re.findall(r"done in \d+ s", done.stderr)[-1:],
                "training_seconds": {k: round(v, 1) for k, v in train_seconds.items()},
                "training_seconds_total": round(sum(train_seconds.values()), 1),
                "confidently_classified_share": {
                    **{k: round(v, 3) for k, v in shares.items()},
                    "real_test_digits": round(confident_share(classifier, real), 3),
                    "shuffled_pixel_noise": round(confident_share(classifier, noise), 3),
                },
                "gpt_validation_loss": round(gpt_validation, 3),
                "gpt_data": json.loads((runs["gpt"] / "config.json").read_text())["data"]["name"],
                "test_accuracy_of_the_classifier": round(
                    float(classifier.score(real, data.test_labels.numpy())), 3
                ),
                "runs": {k: str(v) for k, v in runs.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
