"""Neural style transfer: the PyTorch tutorial's Gatys recipe against genlearn's, same backbone.

Both stylise the same content photo with the same painting at `--size` px (longer side; the
painting is resized to the photo's size, as the tutorial requires), with VGG16-HED, content
at conv4_2, style at conv1_1..conv5_1, style weight 1e6, content weight 1, starting from the
content image:

- `reference`: benchmarks/reference/pytorch_tutorial_gatys.py, L-BFGS on the full-size image
  for about `--evaluations` objective evaluations (the tutorial's `num_steps`);
- `genlearn`: `genlearn.art.style_transfer.stylise` with the same number of evaluations in
  all, coarse to fine.

Both final images are scored with the reference's own loss at full size. The target:
genlearn's final total loss is at most the reference's, in at most half its wall time.
Prints a table, saves both images and a side-by-side figure, then one JSON line.

    GENLEARN_WEIGHTS=../shared/data/weights GENLEARN_DATA=../shared/data \
        python benchmarks/style_vs_pytorch_tutorial.py [--size 512] [--evaluations 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))

import pytorch_tutorial_gatys as reference  # noqa: E402

from genlearn.art.images import load_image, save_image  # noqa: E402
from genlearn.art.style_transfer import StyleConfig, stylise  # noqa: E402
from genlearn.backbones.catalog import BACKBONES  # noqa: E402
from genlearn.backbones.vgg import HED_BGR_MEAN  # noqa: E402
from genlearn.data.files import data_dir  # noqa: E402
from genlearn.report.figures import save_side_by_side  # noqa: E402


def warm_up(network, content: torch.Tensor) -> None:
    """One forward and backward pass at every size either contestant uses, before timing, so
    neither pays for the first-call set-up of the convolution kernels."""
    height, width = content.shape[-2:]
    for factor in (1, 2, 4):
        x = torch.rand(1, 3, height // factor, width // factor, requires_grad=True)
        network.features(x).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--evaluations", type=int, default=300)
    parser.add_argument("--content", type=Path, default=None)
    parser.add_argument("--style", type=Path, default=None)
    parser.add_argument("--scales", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmark-style"))
    args = parser.parse_args()
    images = data_dir() / "images" if data_dir() else Path("../shared/data/images")
    content_path = args.content or images / "photos" / "chelsea_cat.png"
    style_path = args.style or images / "paintings" / "vangogh_starry_night.jpg"
    torch.manual_seed(0)

    backbone = BACKBONES["vgg16-hed"]
    network = backbone.load()
    content = load_image(content_path, args.size)
    style = torch.nn.functional.interpolate(  # the tutorial needs both images the same size
        load_image(style_path, args.size * 2), size=content.shape[-2:], mode="bilinear",
        antialias=True, align_corners=False,
    ).clamp(0, 1)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    warm_up(network, content)

    ref_image, ref = reference.run_style_transfer(
        network.features, HED_BGR_MEAN, content, style, content.clone(),
        num_steps=args.evaluations,
    )  # fmt: skip
    ref.update(reference.final_losses(network.features, HED_BGR_MEAN, content, style, ref_image))

    config = StyleConfig(evaluations=args.evaluations, scales=args.scales, style_weight=1e6)
    start = time.perf_counter()
    ours_image = stylise(network, backbone.preprocess, content, [style], config)
    ours = {"seconds": time.perf_counter() - start, "evaluations": args.evaluations}
    ours.update(reference.final_losses(network.features, HED_BGR_MEAN, content, style, ours_image))

    save_image(ref_image.detach(), args.out / "reference.png")
    save_image(ours_image, args.out / "genlearn.png")
    save_side_by_side(
        [content, style, ref_image.detach(), ours_image],
        ["content", "style", f"PyTorch tutorial, {ref['seconds']:.0f} s",
         f"genlearn, {ours['seconds']:.0f} s"],
        args.out / "comparison.png",
    )  # fmt: skip
    print(f"{'':10} {'seconds':>8} {'evals':>6} {'content':>12} {'style':>12} {'total':>12}")
    for name, row in (("reference", ref), ("genlearn", ours)):
        print(
            f"{name:10} {row['seconds']:8.1f} {row['evaluations']:6d} {row['content']:12.5g} "
            f"{row['style']:12.5g} {row['total']:12.5g}"
        )
    figures = {
        "size": args.size,
        "content_shape": list(content.shape[-2:]),
        "reference": {k: round(v, 4) for k, v in ref.items()},
        "genlearn": {k: round(v, 4) for k, v in ours.items()},
        "time_ratio": round(ours["seconds"] / ref["seconds"], 3),
        "loss_ratio": round(ours["total"] / ref["total"], 4),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
