"""Self-contained HTML reports of one run, or of several runs side by side.

Every image (PNG and GIF) is embedded as a base64 data URI and the CSS is inline, so a
report is one file that can be mailed, moved or opened offline: no CDN, no scripts, no
links into the run folder. All text from configs, metrics and captions is HTML-escaped.

A run directory (read through `genlearn.train.runs.Run`) holds config.json (required),
metrics.jsonl and metrics.json (optional), figures/ (with captions.json) and gets report.html. Figures are ordered by what they show,
recognised from their file names: loss curves, samples, reconstructions, latent scatter,
latent grid, prior gap, interpolation, attributes, then anything else.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from genlearn.atomic import write_text_atomic
from genlearn.errors import RunError
from genlearn.report.figures import plot_loss_curves, read_captions
from genlearn.train.runs import Run

LOSS_CURVES = "loss_curves.png"
IMAGE_TYPES = {
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
TEXT_TYPES = (".txt",)  # generated text (a language model's samples), shown as it is
# (section title, file-name fragments): the first matching entry decides a figure's place
FIGURE_ORDER: list[tuple[str, tuple[str, ...]]] = [
    ("Training", ("loss",)),
    ("Samples", ("sample",)),
    ("Attention", ("attention",)),
    ("Denoising, step by step", ("trajectory",)),
    ("Reconstructions", ("recon",)),
    ("Latent scatter", ("scatter",)),
    ("Latent grid", ("grid",)),
    ("Prior gap", ("gap",)),
    ("Interpolation", ("interp",)),
    ("Attributes", ("attr", "vector")),
    ("Nearest training images", ("neighbour",)),
]
GAN_FAMILIES = ("dcgan", "wgan", "wgan-gp")
GAN_CURVES = (
    "loss_d",
    "loss_g",
    "d_real",
    "d_fake",
    "wasserstein",
    "gp",
    "grad_norm_d",
    "grad_norm_g",
)
FAMILY_NAMES = {
    "vae": "Variational autoencoder",
    "ae": "Autoencoder",
    "gan": "GAN",
    "dcgan": "DCGAN",
    "wgan": "Wasserstein GAN",
    "wgan-gp": "Wasserstein GAN with gradient penalty",
    "ddpm": "Denoising diffusion model",
    "ldm": "Latent diffusion model",
    "gpt": "GPT language model",
}
FAMILY_TEXT = {
    "vae": (
        "The encoder outputs a Gaussian q(z|x) over codes and a KL term pulls it towards "
        "the prior N(0, I) (Kingma & Welling, 2014), so decoding random z ~ N(0, I) should "
        "give new, plausible images."
    ),
    "ae": (
        "It learns only to reconstruct its input through the bottleneck; nothing organises "
        "the space between the training codes, so decoding random codes is not expected "
        "to give plausible images."
    ),
}
_GAN_TEXT = (
    "A generator G maps z ~ N(0, I) to images while a {critic} learns to tell them from real "
    "ones, and G learns to fool it ({paper}). The losses follow the game, not the quality of "
    "the images: genlearn evaluate measures that (FID, precision/recall, near-copies)."
)
FAMILY_TEXT.update(
    {
        "dcgan": _GAN_TEXT.format(
            critic="discriminator", paper="Goodfellow et al. 2014; Radford et al. 2016"
        ),
        "wgan": _GAN_TEXT.format(
            critic="critic (weight-clipped, estimating the Wasserstein distance)",
            paper="Arjovsky et al. 2017",
        ),
        "wgan-gp": _GAN_TEXT.format(
            critic="critic (kept 1-Lipschitz by a gradient penalty)",
            paper="Gulrajani et al. 2017",
        ),
    }
)


_DIFFUSION_TEXT = (
    "A network learns to find the noise mixed into {space} at every noise level (Ho et al. "
    "2020); sampling runs the noising backwards from pure noise, with DDPM's 1000 random "
    "steps or DDIM's few deterministic ones (Song et al. 2021). The loss is the mean squared "
    "error of that guess: it falls fast and then slowly, while the samples keep improving."
)
FAMILY_TEXT["gpt"] = (
    "A decoder-only transformer reads the text so far and predicts the next token (Radford et "
    "al. 2018); writing is that prediction, sampled one token at a time. The loss is the "
    "cross-entropy of the next token in nats: ln(vocabulary size) for a model that knows "
    "nothing, falling as it learns spelling, words and then style."
)
FAMILY_TEXT.update(
    {
        "ddpm": _DIFFUSION_TEXT.format(space="the images"),
        "ldm": _DIFFUSION_TEXT.format(space="a trained autoencoder's codes")
        + " Each sample is decoded to pixels by the autoencoder (Rombach et al. 2022).",
    }
)


class MetricInfo(NamedTuple):
    label: str
    hint: str = ""  # "higher is better" / "lower is better", or "" where neither applies
    unit: str | None = None  # None: from the name's suffix (see UNIT_SUFFIXES)
    stderr: str | None = None  # the key of its standard error; None: `<stem>_stderr`


HIGHER, LOWER = "higher is better", "lower is better"
# what `genlearn evaluate` writes into metrics.json (LikelihoodReport, prefixed "test_"), then
# what the report derives from metrics.jsonl, then names kept for other families and tools
KNOWN_METRICS: dict[str, MetricInfo] = {
    "test_images": MetricInfo("Test set size", unit="images"),
    "test_elbo_nats": MetricInfo("Test ELBO", HIGHER),
    "test_elbo_stderr": MetricInfo("Test ELBO, standard error", unit="nats/image"),
    "test_reconstruction_nats": MetricInfo("Test reconstruction term, -log p(x|z = mu)", LOWER),
    "test_reconstruction_mse": MetricInfo(
        "Test reconstruction mean squared error", LOWER, "per pixel"
    ),
    "test_iwae_nll_nats": MetricInfo(
        "Test negative log-likelihood, IWAE bound", LOWER, stderr="test_iwae_stderr"
    ),
    "test_iwae_stderr": MetricInfo("Test IWAE bound, standard error", unit="nats/image"),
    "test_iwae_k": MetricInfo("IWAE importance samples k", unit="samples/image"),
    "test_binarized": MetricInfo("Test images binarised"),
    "test_bits_per_dim": MetricInfo("Test negative log-likelihood in bits per dimension", LOWER),
    "test_bits_per_dim_stderr": MetricInfo("Test bits per dimension, standard error"),
    "test_bits_per_dim_images": MetricInfo("Test images in the bound", unit="images"),
    "last_test_loss_nats": MetricInfo("Test loss, last epoch of training", LOWER),
    "last_test_recon_nats": MetricInfo("Test reconstruction term, last epoch", LOWER),
    "last_test_kl_nats": MetricInfo("Test KL term, last epoch"),
    "last_test_loss": MetricInfo("Test loss, last epoch of training", LOWER),
    "last_test_d_real": MetricInfo("D(x) on test images, last epoch of training"),
    "last_test_d_fake": MetricInfo("D(G(z)) on generated images, last epoch of training"),
    "last_test_wasserstein": MetricInfo("Critic's Wasserstein estimate, last epoch", LOWER),
    "train_elbo_nats": MetricInfo("Train ELBO", HIGHER),
    "test_kl_nats": MetricInfo("Test KL term"),
    "iwae_nll_nats": MetricInfo("Negative log-likelihood, IWAE bound", LOWER),
    "iwae_k": MetricInfo("IWAE importance samples k", unit="samples/image"),
    "bits_per_dim": MetricInfo("Bits per dimension", LOWER),
    # a language model's (`genlearn evaluate` on a gpt run: the whole validation split)
    "validation_loss": MetricInfo("Validation loss, next-token cross-entropy", LOWER, "nats/token"),
    "perplexity": MetricInfo("Validation perplexity, exp(loss)", LOWER, ""),
    "bits_per_token": MetricInfo("Validation bits per token", LOWER, "bits/token"),
    "bits_per_character": MetricInfo("Validation bits per character", LOWER, "bits/character"),
    "validation_tokens": MetricInfo("Validation tokens predicted", unit="tokens"),
}
# metric-name suffix -> unit; the first match wins
UNIT_SUFFIXES: list[tuple[tuple[str, ...], str]] = [
    (("_per_s", "_per_second"), ""),  # the label says "per second"
    (("_nats",), "nats/image"),
    (("_bpd", "bits_per_dim"), "bits/dim"),
    (("_seconds", "_s"), "s"),
    (("_pct", "_percent"), "%"),
]


class QualityRow(NamedTuple):
    key: str  # in each side of metrics.json's sample_quality.spaces.<space>
    label: str
    hint: str
    stderr: str  # key of its standard error
    percent: bool = False
    short: str = ""  # for narrow tables (the terminal); the label when empty


# the sample-quality table: distribution metrics, then novelty (see genlearn.metrics.quality)
QUALITY_ROWS: list[QualityRow] = [
    QualityRow("fid", "FID", LOWER, "fid_stderr"),
    QualityRow("kid", "KID", LOWER, "kid_stderr"),
    QualityRow(
        "precision",
        "Precision: samples that look real",
        HIGHER,
        "precision_stderr",
        short="precision",
    ),
    QualityRow("recall", "Recall: data the samples cover", HIGHER, "recall_stderr", short="recall"),
    QualityRow("density", "Density", HIGHER, "density_stderr", short="density"),
    QualityRow("coverage", "Coverage", HIGHER, "coverage_stderr", short="coverage"),
    QualityRow(
        "inception_score",
        "Inception Score, from this network's ImageNet classes",
        HIGHER,
        "inception_score_stderr",
        short="IS (its ImageNet classes)",
    ),
    QualityRow(
        "near_copy_share",
        "Near-copies of training images (%)",
        "about 1% is what new real images score",
        "near_copy_stderr",
        percent=True,
        short="near-copies (%)",
    ),
    QualityRow(
        "novelty_ratio",
        "Novelty ratio: median distance to the nearest training image, over real data's",
        "about 1 is as new as real data; far below 1 is copying",
        "novelty_ratio_stderr",
        short="novelty ratio",
    ),
]


def format_metric(side: dict[str, Any], key: str) -> str:
    """One quality figure with its standard error ("12.3 ± 0.4"), or a dash when absent."""
    row = next((r for r in QUALITY_ROWS if r.key == key), QualityRow(key, key, "", f"{key}_stderr"))
    value, error = side.get(row.key), side.get(row.stderr)
    if not _is_number(value):
        return "—"
    scale = 100.0 if row.percent else 1.0
    if _is_number(error) and math.isfinite(error) and error > 0:
        return format_with_error(value * scale, error * scale)
    return format_value(float(value) * scale)


# ---- reading a run ---------------------------------------------------------------------------
def family_name(run: Run) -> str:
    """ "Variational autoencoder" for a "vae" run; unknown families by their name."""
    return FAMILY_NAMES.get(run.family, run.family.upper())


def ensure_loss_curves(run: Run) -> Path | None:
    """(Re)draw figures/loss_curves.png from metrics.jsonl, which grows while training runs."""
    if not run.metrics_log_path.is_file():
        return None
    units = "nats/image" if run.family in ("vae", "ae") else None
    caption = (
        "Loss during training: train (faint: every logged step; bold: smoothed) and "
        "test (dots, at each evaluation)"
    )
    keys: tuple[str, ...] = ("loss", "recon", "kl")
    if run.family == "gpt":  # counted in steps; an "epoch" of random windows is nominal
        units = "nats per token"
        caption = (
            "Loss during training: next-token cross-entropy on training windows (faint: "
            "every logged step; bold: smoothed) and on the validation text (dots)"
        )
    if run.family == "vae":
        caption += "; the loss is the negative ELBO = reconstruction term + KL term."
    if run.family in GAN_FAMILIES:
        keys = GAN_CURVES
        caption += (
            ". A healthy game keeps D(x) and D(G(z)) apart but not at 1 and 0; D winning "
            "outright (D(G(z)) near 0, G's loss climbing) starves the generator of gradient"
        )
    return plot_loss_curves(
        run.metrics_log_path,
        run.figures_dir / LOSS_CURVES,
        caption=caption + ("" if caption.endswith(".") else "."),
        units=units,
        keys=keys,
        by_step=run.family == "gpt",
    )


def figure_files(figures_dir: Path) -> list[Path]:
    """The embeddable figures of a folder, in report order."""
    if not figures_dir.is_dir():
        return []
    files = [
        p
        for p in figures_dir.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.suffix.lower() in (*IMAGE_TYPES, *TEXT_TYPES)
    ]
    return sorted(files, key=lambda p: figure_sort_key(p.name))


def figure_section(filename: str) -> int:
    """Index of the first FIGURE_ORDER entry matching the name; len(FIGURE_ORDER) if none."""
    stem = filename.lower()
    for i, (_, fragments) in enumerate(FIGURE_ORDER):
        if any(fragment in stem for fragment in fragments):
            return i
    return len(FIGURE_ORDER)


def figure_sort_key(filename: str) -> tuple:
    """Section first, then natural order of the name (step_2 before step_10), PNG before GIF."""
    stem, suffix = os.path.splitext(filename)
    natural = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", stem.lower())
        if part
    )
    return figure_section(filename), natural, suffix.lower() != ".png"


def figure_title(filename: str) -> str:
    """A readable title from a file name: "latent_grid.png" -> "Latent grid"."""
    stem = Path(filename).stem.replace("_", " ").replace("-", " ").strip()
    title = stem[:1].upper() + stem[1:]
    return f"{title} (animation)" if filename.lower().endswith(".gif") else title


# ---- formatting ------------------------------------------------------------------------------
def esc(value: Any) -> str:
    """HTML-escape any value's text (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def data_uri(path: Path) -> str:
    """The file as a base64 data URI, so the report needs nothing beside itself."""
    mime = IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def metric_unit(key: str) -> str:
    """A known metric's unit, else one from genlearn's name suffixes (test_elbo_nats ->
    nats/image)."""
    known = KNOWN_METRICS.get(key)
    if known is not None and known.unit is not None:
        return known.unit
    lower = key.lower()
    for suffixes, unit in UNIT_SUFFIXES:
        if lower.endswith(suffixes):
            return unit
    return ""


def metric_label(key: str) -> str:
    """A readable name: known metrics by name, others from the key without its unit suffix."""
    if key in KNOWN_METRICS:
        return KNOWN_METRICS[key].label
    text = re.sub(r"_per_s(econd)?$", " per second", key)
    stem = _without_unit(text)
    timed = re.sub(r"_(s|seconds)$", "", stem)
    text = timed + (" time" if "time" not in timed else "") if timed != stem else stem
    text = text.replace("_", " ")
    return text[:1].upper() + text[1:]


def metric_hint(key: str) -> str:
    """ "higher is better" / "lower is better" for known metrics, else ""."""
    known = KNOWN_METRICS.get(key)
    return known.hint if known is not None else ""


def _without_unit(key: str) -> str:
    return re.sub(r"_(nats|bpd|pct|percent)$", "", key)


def stderr_key(key: str) -> str:
    """The key of a metric's standard error: test_elbo_nats -> test_elbo_stderr."""
    known = KNOWN_METRICS.get(key)
    if known is not None and known.stderr is not None:
        return known.stderr
    return f"{_without_unit(key)}_stderr"


def _stderr_of(metrics: dict[str, Any], key: str) -> float | None:
    """The standard error of a numeric metric, when `metrics` holds one for it."""
    error = metrics.get(stderr_key(key))
    return float(error) if _is_number(metrics[key]) and _is_number(error) else None


def metric_rows(metrics: dict[str, Any]) -> list[str]:
    """The keys shown as rows: all but the standard errors shown beside their metric."""
    beside = {stderr_key(k) for k in metrics if _stderr_of(metrics, k) is not None}
    return [k for k in metrics if k not in beside]


LOSS_TERMS = ("loss", "recon", "kl")


def run_metrics(run: Run) -> dict[str, Any]:
    """metrics.json's flat figures, plus the last test loss/recon/KL logged in metrics.jsonl
    (when not there). Nested sections (sample_quality) have their own table."""
    metrics = {k: v for k, v in run.read_evaluation().items() if not isinstance(v, dict)}
    tests = [r for r in run.read_log() if r.get("split") == "test"]
    if not tests:
        return metrics
    suffix = "_nats" if run.family in ("vae", "ae") else ""
    # a GAN's summed loss is no objective (each player minimises its own): show the game
    names = ("d_real", "d_fake", "wasserstein") if run.family in GAN_FAMILIES else LOSS_TERMS
    for name in names:
        value = tests[-1].get(name)
        key = f"last_test_{name}{suffix}"
        if _is_number(value) and key not in metrics and not (name == "kl" and run.family == "ae"):
            metrics[key] = float(value)
    return metrics


def _metric_th(key: str, with_unit: bool) -> str:
    unit = metric_unit(key) if with_unit else ""
    hint = metric_hint(key)
    label = esc(metric_label(key) + (f" ({unit})" if unit else ""))
    return f"<th>{label}" + (f' <span class="hint">{esc(hint)}</span>' if hint else "") + "</th>"


def format_value(value: Any) -> str:
    """Numbers rounded for reading (large ones with thousands separators); others as JSON."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        if abs(value) >= 100:
            return f"{value:,.2f}"
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested config -> [("model.latent_dim", 2), ...] in file order."""
    rows: list[tuple[str, Any]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def format_with_error(value: float, error: float) -> str:
    """ "93.41 ± 0.25": the error to two significant digits, the value to the same place."""
    if not (math.isfinite(value) and math.isfinite(error)) or error <= 0:
        return f"{format_value(float(value))} ± {format_value(float(error))}"
    decimals = max(0, 1 - math.floor(math.log10(error)))
    return f"{value:,.{decimals}f} ± {error:,.{decimals}f}"


MISSING_CELL = '<td class="missing">—</td>'


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    cls = ' class="num"' if _is_number(value) else ""
    return f"<td{cls}>{esc(format_value(value))}</td>"


def _metric_cell(metrics: dict[str, Any], key: str) -> str:
    """A metric's value, with its standard error when there is one; a dash when missing."""
    if key not in metrics:
        return MISSING_CELL
    error = _stderr_of(metrics, key)
    if error is None:
        return _cell(metrics[key])
    return f'<td class="num">{esc(format_with_error(metrics[key], error))}</td>'


# ---- pieces of a page ------------------------------------------------------------------------
CSS = """
:root { --fg: #1c2230; --muted: #5a6374; --line: #e1e5eb; --accent: #2f5f98; --bg: #f4f6f8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 32px 64px; background: #fff;
  min-height: 100vh; }
h1 { font-size: 1.75rem; margin: 0 0 4px; line-height: 1.25; }
h2 { font-size: 1.3rem; margin: 36px 0 10px; padding-bottom: 4px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05rem; margin: 0 0 8px; }
p { max-width: 80ch; }
.meta { color: var(--muted); font-size: .9rem; margin: 0 0 18px; }
.lead { font-size: 1.02rem; }
nav { font-size: .9rem; color: var(--muted); margin: 8px 0 0; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
.columns { display: flex; flex-wrap: wrap; gap: 12px 48px; align-items: flex-start; }
.columns > div { flex: 1 1 340px; min-width: 0; }
table { border-collapse: collapse; font-size: .92rem; }
th, td { padding: 5px 12px 5px 0; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.unit, td.missing, .empty { color: var(--muted); }
table.quality thead th { text-align: center; padding: 5px 12px; }
table.quality td.num { padding-left: 18px; white-space: nowrap; }
.hint { display: block; font-weight: 400; font-size: .8rem; color: var(--muted); }
td.key { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .85rem; color: #374151; }
tr.group th { padding-top: 14px; color: var(--accent); border-bottom: 1px solid #c9d3e0; }
figure { margin: 0 0 40px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 4px; }
figure pre { white-space: pre-wrap; max-height: 36em; overflow: auto; padding: 12px;
  border: 1px solid var(--line); font-size: .85rem; max-width: 100ch; }
figcaption { color: var(--muted); font-size: .92rem; margin-top: 8px; max-width: 85ch; }
table.compare { width: 100%; table-layout: fixed; }
table.compare th.run { font-size: 1rem; padding: 8px 12px 8px 0; }
table.compare th.run small { display: block; font-weight: 400; color: var(--muted); }
table.compare td { padding: 8px 16px 16px 0; }
table.compare td img { display: block; max-width: 100%; height: auto;
  border: 1px solid var(--line); border-radius: 4px; }
table.compare td .cap { color: var(--muted); font-size: .85rem; margin-top: 6px; }
tr.capt td { padding-top: 0; }
tr.figrow th { font-size: 1.05rem; padding-top: 22px; border-bottom: none; }
.note { background: #f2f6fb; border-left: 4px solid var(--accent); padding: 12px 16px;
  max-width: none; }
footer { margin-top: 48px; color: var(--muted); font-size: .8rem; }
@media print { body { background: #fff; } main { padding: 0; } figure { break-inside: avoid; } }
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n<footer>Made by genlearn on "
        f"{esc(datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}. "
        "Self-contained: every image is embedded in this file.</footer>\n</main>\n</body>\n"
        "</html>\n"
    )


def _run_title(run: Run) -> str:
    return f"{family_name(run)} on {run.data_name}: {run.name}"


def describe_run(run: Run) -> str:
    """A short paragraph of plain text: what was trained on what, for how long, how well."""
    model = run.config.get("model") if isinstance(run.config.get("model"), dict) else {}
    data = run.config.get("data") if isinstance(run.config.get("data"), dict) else {}
    train = run.config.get("train") if isinstance(run.config.get("train"), dict) else {}
    what = family_name(run).lower() if run.family in FAMILY_NAMES else f"{run.family} model"
    article = "an" if what[:1] in "aeiou" else "a"
    parts = [f"This run trained {article} {what}"]
    if "latent_dim" in model:
        parts.append(f" with a {model['latent_dim']}-dimensional latent space")
    parts.append(f" on {run.data_name}")
    if "image_size" in data:
        parts.append(f" ({data['image_size']} px images)")
    parts.append(".")
    if run.family in FAMILY_TEXT:
        parts.append(" " + FAMILY_TEXT[run.family])
    length = _training_length(train, run.read_log(), with_loss=run.family not in GAN_FAMILIES)
    if length:
        parts.append(f" {length}")
    if "seed" in run.config:
        parts.append(f" Seed {run.config['seed']}.")
    return "".join(parts)


def _training_length(
    train: dict[str, Any], rows: list[dict[str, Any]], with_loss: bool = True
) -> str:
    """ "Trained for N epochs (S steps); last test loss L." from metrics.jsonl, else the config."""
    if rows:
        last = rows[-1]
        text = "Trained for"
        if train.get("max_steps") and not train.get("eval_every_epochs"):
            # counted in steps (a language model's): its "epochs" are passes over the tokens
            text += f" {format_value(int(last.get('step', 0)))} steps"
        elif _is_number(last.get("epoch")):
            epoch = float(last["epoch"])  # whole epochs read as such: "120", not "120.00"
            text += f" {int(epoch) if epoch.is_integer() else format_value(epoch)} epochs"
        if _is_number(last.get("step")) and not text.endswith("steps"):
            text += f" ({format_value(int(last['step']))} steps)"
        limit, spent = train.get("max_seconds"), last.get("train_seconds")
        if _is_number(limit) and limit > 0 and _is_number(spent) and spent >= limit:
            text += f", when its time limit of {format_value(limit)} s ran out"
        held_out = "validation" if any(r.get("split") == "validation" for r in rows) else "test"
        tests = [r for r in rows if r.get("split") == held_out and _is_number(r.get("loss"))]
        if tests and with_loss:
            text += f"; last {held_out} loss {format_value(float(tests[-1]['loss']))}"
        return text + "." if text != "Trained for" else ""
    for key in ("epochs", "steps", "max_steps"):
        if _is_number(train.get(key)):
            return f"Configured for {format_value(train[key])} {key.replace('max_', '')}."
    return ""


def _metrics_table(metrics: dict[str, Any]) -> str:
    metrics = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    if not metrics:
        return '<p class="empty">No evaluation results (metrics.json) for this run.</p>'
    rows = "".join(
        f"<tr>{_metric_th(key, False)}{_metric_cell(metrics, key)}"
        f'<td class="unit">{esc(metric_unit(key))}</td></tr>'
        for key in metric_rows(metrics)
    )
    return (
        '<table class="metrics"><thead><tr><th>Metric</th><th>Value</th><th>Unit</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _quality_section(metrics: dict[str, Any]) -> str:
    """Sample quality and novelty: per feature space, the samples beside held-out real images."""
    quality = metrics.get("sample_quality")
    if not isinstance(quality, dict) or not isinstance(quality.get("spaces"), dict):
        return ""
    spaces = quality["spaces"]
    with_real = bool(quality.get("num_held_out"))
    sides = ["samples", "held_out"] if with_real else ["samples"]
    top = "".join(
        f'<th colspan="{len(sides)}">{esc(space.get("label", name))}'
        f'<span class="hint">{esc(_space_note(space))}</span></th>'
        for name, space in spaces.items()
    )
    sub = "".join(
        "".join(f"<th>{'samples' if side == 'samples' else 'held-out real'}</th>" for side in sides)
        for _ in spaces
    )
    rows = []
    for row in QUALITY_ROWS:
        cells = [
            format_metric(space.get(side, {}), row.key)
            for space in spaces.values()
            for side in sides
        ]
        if all(cell == "—" for cell in cells):
            continue
        hint = f'<span class="hint">{esc(row.hint)}</span>' if row.hint else ""
        tds = "".join(
            MISSING_CELL if cell == "—" else f'<td class="num">{esc(cell)}</td>' for cell in cells
        )
        rows.append(f"<tr><th>{esc(row.label)}{hint}</th>{tds}</tr>")
    intro = (
        f"{_count(quality.get('num_samples'))} samples"
        + (
            f", and {_count(quality.get('num_held_out'))} held-out real images (as many, or the "
            "whole test split when smaller): their column is the best a model can score at this "
            "sample size"
            if with_real
            else ""
        )
        + ". Each figure is ± one standard error. A near-copy lies closer to a training image "
        "than 99% of training images lie to their own nearest neighbour."
    )
    return (
        f'<h2>Sample quality and novelty</h2><p>{esc(intro)}</p><table class="metrics quality">'
        f"<thead><tr><th></th>{top}</tr><tr><th>Metric</th>{sub}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _count(value: Any) -> str:
    return f"{value:,}" if _is_number(value) else "?"


def _space_note(space: dict[str, Any]) -> str:
    count, total = space.get("reference_images"), space.get("training_images")
    reference = f"vs {_count(count)} training images" if _is_number(count) else ""
    if _is_number(count) and _is_number(total) and total > count:
        reference = f"vs {_count(count)} of {_count(total)} training images"
    if space.get("standard_fid"):
        return f"standard FID features; {reference}"
    if space.get("label") == "pixels":
        return f"raw pixels, for novelty only; {reference}"
    return f"not comparable with published FID; {reference}"


def _config_table(config: dict[str, Any]) -> str:
    rows, group = [], None
    flat = flatten(config)
    flat = [kv for kv in flat if "." not in kv[0]] + [kv for kv in flat if "." in kv[0]]
    for key, value in flat:
        head = key.split(".", 1)[0] if "." in key else ""
        if head != group and head:
            rows.append(f'<tr class="group"><th colspan="2">{esc(head)}</th></tr>')
        group = head
        short = key.split(".", 1)[1] if head else key
        rows.append(f'<tr><td class="key">{esc(short)}</td>{_cell(value)}</tr>')
    return f'<table class="config"><tbody>{"".join(rows)}</tbody></table>'


def _figure_html(path: Path, caption: str | None, anchor: str) -> str:
    title = figure_title(path.name)
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    content = _figure_content(path, title)
    return f'<figure id="{esc(anchor)}"><h3>{esc(title)}</h3>{content}{cap}</figure>'


def _figure_content(path: Path, title: str) -> str:
    """An embedded image, or a text file as preformatted text."""
    if path.suffix.lower() in TEXT_TYPES:
        return f"<pre>{esc(path.read_text(encoding='utf-8', errors='replace'))}</pre>"
    return f'<img src="{data_uri(path)}" alt="{esc(title)}">'


def _anchor(filename: str) -> str:
    return "fig-" + re.sub(r"[^a-z0-9]+", "-", filename.lower()).strip("-")


# ---- the reports -----------------------------------------------------------------------------
def write_report(
    run_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write `run_dir/report.html` (or `out_path`): description, config, metrics, figures.

    The loss curves are redrawn from metrics.jsonl first, so the report is current.
    """
    run = Run.open(run_dir)
    ensure_loss_curves(run)
    captions = read_captions(run.figures_dir)
    figures = figure_files(run.figures_dir)
    nav = "".join(
        f'<a href="#{esc(_anchor(p.name))}">{esc(figure_title(p.name))}</a>' for p in figures
    )
    body = [
        f"<header><h1>{esc(_run_title(run))}</h1>",
        f'<p class="meta">Run folder: {esc(run.path.resolve())}</p></header>',
        f'<h2>What this run is</h2><p class="lead">{esc(describe_run(run))}</p>',
        _quality_section(run.read_evaluation()),
        '<div class="columns"><div><h2>Metrics</h2>',
        _metrics_table(run_metrics(run)),
        "</div><div><h2>Configuration</h2>",
        _config_table(run.config),
        "</div></div>",
        "<h2>Figures</h2>",
        f"<nav>{nav}</nav>" if nav else '<p class="empty">No figures yet.</p>',
    ]
    body += [_figure_html(p, captions.get(p.name), _anchor(p.name)) for p in figures]
    out = Path(out_path) if out_path is not None else run.path / "report.html"
    return write_text_atomic(out, _page(_run_title(run), "\n".join(body)))


COMPARISON_AE_VAE = (
    "Both models compress each image to a code and decode it back, and both reconstruct "
    "well. They differ in what lies between the codes. The plain autoencoder is trained only "
    "to reconstruct, so its encoder may put the codes anywhere, at any scale, with empty gaps "
    "between groups; nothing trains the decoder on those gaps, and nothing ties the codes to "
    "N(0, I). Drawing z ~ N(0, I) therefore lands in places the decoder has never seen: its "
    "'samples' are smudges. The VAE's KL term pulls every code distribution towards N(0, I), "
    "so the codes fill the prior's circles without gaps and each point of the latent space "
    "decodes to something plausible: the VAE can be sampled. Compare the latent scatter (how "
    "the codes fill the circles), the latent grid and prior-gap figures (what the space "
    "between them decodes to) and the prior samples."
)


def write_comparison_report(
    run_dirs: list[str | os.PathLike[str]] | list[Path], out_path: str | os.PathLike[str]
) -> Path:
    """Runs side by side: one column per run, matching figures on the same row."""
    if not run_dirs:
        raise RunError("a comparison report needs at least one run directory")
    runs = [Run.open(d) for d in run_dirs]
    for run in runs:
        ensure_loss_curves(run)
    title = "Comparison: " + " vs ".join(f"{family_name(r)} ({r.name})" for r in runs)
    body = [
        f"<header><h1>{esc(title)}</h1>",
        f'<p class="meta">{len(runs)} runs: '
        f"{esc(', '.join(str(r.path.resolve()) for r in runs))}</p></header>",
    ]
    if _is_ae_vs_vae(runs):
        body.append(
            "<h2>Why the autoencoder's latent space has gaps and the VAE's does not</h2>"
            f'<p class="note">{esc(COMPARISON_AE_VAE)}</p>'
        )
    body.append("<h2>What each run is</h2>" + _side_by_side_text(runs))
    body.append("<h2>Metrics</h2>" + _side_by_side_metrics(runs))
    body.append("<h2>Configuration differences</h2>" + _config_differences(runs))
    body.append("<h2>Figures</h2>" + _side_by_side_figures(runs))
    return write_text_atomic(Path(out_path), _page(title, "\n".join(body)))


def _is_ae_vs_vae(runs: list[Run]) -> bool:
    return {r.family for r in runs} == {"ae", "vae"} and len({r.data_name for r in runs}) == 1


def _run_header_cells(runs: list[Run]) -> str:
    return "".join(
        f'<th class="run">{esc(r.name)}<small>{esc(family_name(r))} · {esc(r.data_name)}</small></th>'
        for r in runs
    )


def _compare_table(runs: list[Run], rows: str, label: str = "", classes: str = "compare") -> str:
    """A table with one column per run, after a column of row names headed `label` (if any)."""
    first = '<col style="width: 22%">' if label else ""
    head = f"<th>{esc(label)}</th>" if label else ""
    return (
        f'<table class="{classes}"><colgroup>{first}{"<col>" * len(runs)}</colgroup><thead><tr>'
        f"{head}{_run_header_cells(runs)}</tr></thead><tbody>{rows}</tbody></table>"
    )


def _side_by_side_text(runs: list[Run]) -> str:
    cells = "".join(f"<td>{esc(describe_run(r))}</td>" for r in runs)
    return _compare_table(runs, f"<tr>{cells}</tr>")


def _side_by_side_metrics(runs: list[Run]) -> str:
    metrics = [run_metrics(r) for r in runs]
    keys = metric_rows({k: v for m in metrics for k, v in m.items()})
    if not keys:
        return '<p class="empty">No evaluation results (metrics.json) in these runs.</p>'
    rows = []
    for key in keys:
        cells = "".join(_metric_cell(m, key) for m in metrics)
        rows.append(f"<tr>{_metric_th(key, True)}{cells}</tr>")
    rows += _side_by_side_quality(runs)
    return _compare_table(runs, "".join(rows), label="Metric")


def _side_by_side_quality(runs: list[Run]) -> list[str]:
    """One row per (quality figure, feature space) that any run has, samples only."""
    per_run = []
    for run in runs:
        quality = run.read_evaluation().get("sample_quality")
        spaces = quality.get("spaces", {}) if isinstance(quality, dict) else {}
        per_run.append(spaces if isinstance(spaces, dict) else {})
    names = list(dict.fromkeys(name for spaces in per_run for name in spaces))
    rows = []
    for name in names:
        for row in QUALITY_ROWS:
            cells = [
                format_metric(spaces.get(name, {}).get("samples", {}), row.key)
                for spaces in per_run
            ]
            if all(cell == "—" for cell in cells):
                continue
            label = next(s[name].get("label", name) for s in per_run if name in s)
            tds = "".join(
                MISSING_CELL if c == "—" else f'<td class="num">{esc(c)}</td>' for c in cells
            )
            rows.append(f"<tr><th>{esc(row.label)} ({esc(label)})</th>{tds}</tr>")
    return rows


def _config_differences(runs: list[Run]) -> str:
    flat = [dict(flatten(r.config)) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    missing = object()
    differing = [
        k
        for k in keys
        if len({json.dumps(f.get(k, missing), default=str, sort_keys=True) for f in flat}) > 1
    ]
    if not differing:
        return '<p class="empty">The runs\' configurations are identical.</p>'
    rows = "".join(
        f'<tr><td class="key">{esc(k)}</td>'
        + "".join(_cell(f[k]) if k in f else MISSING_CELL for f in flat)
        + "</tr>"
        for k in differing
    )
    return _compare_table(runs, rows, label="Setting")


def _side_by_side_figures(runs: list[Run]) -> str:
    per_run = [{p.name: p for p in figure_files(r.figures_dir)} for r in runs]
    captions = [read_captions(r.figures_dir) for r in runs]
    names = sorted({n for figures in per_run for n in figures}, key=figure_sort_key)
    if not names:
        return '<p class="empty">No figures in these runs.</p>'
    rows = []
    for name in names:
        caps = [
            c.get(name, "") if name in f else "" for f, c in zip(per_run, captions, strict=True)
        ]
        shared = caps[0] if len(set(caps)) == 1 and all(name in f for f in per_run) else ""
        rows.append(
            f'<tr class="figrow"><th colspan="{len(runs)}">{esc(figure_title(name))}</th></tr><tr>'
        )
        for figures, cap in zip(per_run, caps, strict=True):
            path = figures.get(name)
            if path is None:
                rows.append('<td class="missing">not produced by this run</td>')
                continue
            own = f'<div class="cap">{esc(cap)}</div>' if cap and not shared else ""
            rows.append(f"<td>{_figure_content(path, figure_title(name))}{own}</td>")
        rows.append("</tr>")
        if shared:
            rows.append(
                f'<tr class="capt"><td colspan="{len(runs)}"><div class="cap">'
                f"{esc(shared)}</div></td></tr>"
            )
    return _compare_table(runs, "".join(rows), classes="compare figures")
