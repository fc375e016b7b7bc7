"""Figure files and HTML reports: sizes, frame counts, captions, embedding and escaping."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlearn.errors import RunError
from genlearn.report.figures import (
    make_grid,
    plot_loss_curves,
    read_captions,
    record_caption,
    save_gif,
    save_image_grid,
    save_labelled_grid,
    smooth,
)
from genlearn.report.html import (
    COMPARISON_AE_VAE,
    figure_files,
    format_value,
    metric_label,
    metric_unit,
    write_comparison_report,
    write_report,
)

torch.set_num_threads(1)


# ---- grids and GIFs --------------------------------------------------------------------------
def test_grid_png_size_follows_tiles_scale_and_padding(tmp_path):
    path = save_image_grid(
        torch.rand(10, 1, 8, 8), tmp_path / "sub" / "grid.png", nrow=5, padding=2, scale=3
    )
    with Image.open(path) as image:
        assert image.mode == "L"
        assert image.size == (5 * 24 + 6 * 2, 2 * 24 + 3 * 2)


def test_grid_default_layout_is_square_and_small_images_are_upscaled(tmp_path):
    path = save_image_grid(torch.rand(9, 3, 28, 28), tmp_path / "grid.png")
    with Image.open(path) as image:
        assert image.mode == "RGB"
        assert image.size == (3 * 56 + 4 * 2, 3 * 56 + 4 * 2)  # 28 px tiles at 2x


def test_grid_upscales_with_nearest_neighbour_and_keeps_values():
    images = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    grid = make_grid(images, padding=0, scale=2)
    assert torch.equal(
        grid[0], torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]])
    )


def test_grid_accepts_uint8(tmp_path):
    images = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    path = save_image_grid(images, tmp_path / "g.png", padding=0, scale=1)
    with Image.open(path) as image:
        assert image.getpixel((0, 0)) == 255


def distinct_frames(count: int) -> list[torch.Tensor]:
    return [torch.full((1, 4, 4), i / (count - 1)) for i in range(count)]


def test_gif_bounces_without_repeating_the_end_frames(tmp_path):
    path = save_gif(distinct_frames(5), tmp_path / "a.gif", duration_ms=50, scale=2)
    with Image.open(path) as gif:
        assert gif.n_frames == 8
        assert gif.size == (8, 8)
        assert gif.info["loop"] == 0
        assert gif.info["duration"] == 50


def test_gif_without_bounce_keeps_the_frames(tmp_path):
    path = save_gif(distinct_frames(5), tmp_path / "a.gif", bounce=False)
    with Image.open(path) as gif:
        assert gif.n_frames == 5


def test_gif_labels_each_frame_above_it_and_holds_the_last(tmp_path):
    frames = [torch.zeros(1, 32, 32) for _ in range(3)]
    labels = ["step 1", "step 2", "step 3"]
    path = save_gif(
        frames,
        tmp_path / "a.gif",
        bounce=False,
        scale=1,
        labels=labels,
        duration_ms=40,
        hold_last_ms=900,
    )
    with Image.open(path) as gif:
        assert gif.size == (32, 32 + 14) and gif.n_frames == 3
        durations, bands = [], []
        for index in range(3):
            gif.seek(index)
            durations.append(gif.info["duration"])
            pixels = np.asarray(gif.convert("L"))
            bands.append(pixels[:14].max())
            assert pixels[14:].max() == 0  # the image itself is untouched
    assert durations == [40, 40, 900]
    assert min(bands) == 255  # white text on each band
    with pytest.raises(ValueError, match="2 labels for 3 frames"):
        save_gif(frames, tmp_path / "b.gif", labels=labels[:2])


def test_gif_of_rgb_grids(tmp_path):
    frames = [make_grid(torch.rand(4, 3, 6, 6), scale=1) for _ in range(3)]
    path = save_gif(frames, tmp_path / "grids.gif", bounce=False, caption="grids")
    with Image.open(path) as gif:
        assert gif.n_frames == 3
    assert read_captions(tmp_path) == {"grids.gif": "grids"}


# ---- captions, labelled grids, loss curves ---------------------------------------------------
def test_record_caption_keeps_earlier_captions(tmp_path):
    record_caption(tmp_path, "a.png", "first")
    save_image_grid(torch.rand(1, 1, 4, 4), tmp_path / "b.png", caption="second")
    record_caption(tmp_path, "a.png", "first, revised")
    assert read_captions(tmp_path) == {"a.png": "first, revised", "b.png": "second"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_labelled_grid_is_at_least_as_large_as_its_tiles(tmp_path):
    path = save_labelled_grid(
        torch.rand(2, 3, 1, 8, 8),
        tmp_path / "l.png",
        row_labels=["in", "out"],
        col_labels=["a", "b", "c"],
        title="t",
    )
    with Image.open(path) as image:
        width, height = image.size
    assert width >= 3 * 56 and height >= 2 * 56


def write_jsonl(path: Path, rows: list[dict], truncated_tail: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text + ('{"step": 9' if truncated_tail else ""))
    return path


def training_rows(kl: bool = True) -> list[dict]:
    rows = []
    for step in range(1, 41):
        loss = 200 / step + 90
        rows.append(
            {
                "step": step * 10,
                "epoch": step / 10,
                "split": "train",
                "loss": loss,
                "recon": loss - (5 if kl else 0),
                "kl": 5.0 if kl else 0.0,
            }
        )
        if step % 10 == 0:
            rows.append(
                {
                    "step": step * 10,
                    "epoch": step / 10,
                    "split": "test",
                    "loss": loss + 1,
                    "recon": loss - 4,
                    "kl": 5.0 if kl else 0.0,
                }
            )
    return rows


def test_loss_curves_skip_a_truncated_last_line(tmp_path):
    jsonl = write_jsonl(tmp_path / "metrics.jsonl", training_rows(), truncated_tail=True)
    path = plot_loss_curves(jsonl, tmp_path / "figures" / "loss_curves.png", caption="loss")
    with Image.open(path) as image:
        assert image.size[0] > 3 * image.size[1] / 2  # three panels: loss, recon, KL
    assert read_captions(tmp_path / "figures") == {"loss_curves.png": "loss"}


def test_loss_curves_of_an_autoencoder_have_one_panel(tmp_path):
    rows = [dict(r, recon=r["loss"]) for r in training_rows(kl=False)]
    jsonl = write_jsonl(tmp_path / "metrics.jsonl", rows)
    with Image.open(plot_loss_curves(jsonl, tmp_path / "loss.png")) as image:
        assert image.size[0] < 1.8 * image.size[1]


def test_step_counted_runs_plot_validation_against_the_step():
    from genlearn.report.figures import _series

    rows = [
        {"step": 25 * i, "epoch": i / 40, "split": "train", "loss": 3 - i / 10} for i in range(1, 9)
    ]
    rows += [{"step": 100, "epoch": 0.1, "split": "validation", "loss": 2.5}]
    x, y = _series(rows, "validation", "loss", by_step=True)
    assert x.tolist() == [100] and y.tolist() == [2.5]
    assert _series(rows, "validation", "loss")[0].tolist() == [0.1]


def test_smooth_leaves_short_series_alone_and_does_not_lag():
    assert smooth([1.0, 2.0]).tolist() == [1.0, 2.0]
    ramp = list(range(400))
    assert abs(smooth(ramp)[200] - 200) < 1e-9  # a centred average follows a straight line


# ---- metrics formatting ----------------------------------------------------------------------
def test_metric_units_and_labels():
    assert metric_unit("test_elbo_nats") == "nats/image"
    assert metric_unit("bits_per_dim") == "bits/dim"
    assert metric_unit("eval_seconds") == "s"
    assert metric_label("images_per_s") == "Images per second"
    assert metric_label("iwae_nll_nats").startswith("Negative log-likelihood")
    assert format_value(-98.12345) == "-98.12" and format_value(12345) == "12,345"


# ---- run directories -------------------------------------------------------------------------
class Images(HTMLParser):
    """Collects <img> sources and the cells of the figures table of a comparison report."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.figure_table = False
        self.run_headers = 0
        self.image_rows: list[int] = []  # per row of the figures table: cells of single runs

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.sources.append(attributes.get("src") or "")
        if tag == "table":
            self.figure_table = "figures" in (attributes.get("class") or "")
        if self.figure_table and tag == "th" and attributes.get("class") == "run":
            self.run_headers += 1
        if self.figure_table and tag == "tr":
            self.image_rows.append(0)
        if self.figure_table and tag == "td" and "colspan" not in attributes:
            self.image_rows[-1] += 1  # a cell of one run (captions shared by all span them)


def parse(html_text: str) -> Images:
    parser = Images()
    parser.feed(html_text)
    return parser


def make_run(
    root: Path,
    name: str,
    family: str,
    figures: dict[str, str] | None = None,
    metrics: dict | None = None,
    jsonl: bool = True,
    dataset: str = "digits",
) -> Path:
    run = root / name
    (run / "figures").mkdir(parents=True)
    config = {
        "family": family,
        "model": {"latent_dim": 2, "variational": family == "vae"},
        "data": {"name": dataset, "image_size": 16},
        "train": {"epochs": 4},
        "seed": 0,
    }
    (run / "config.json").write_text(json.dumps(config))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    if jsonl:
        write_jsonl(run / "metrics.jsonl", training_rows(kl=family == "vae"))
    for filename, caption in (figures or {}).items():
        if filename.endswith(".gif"):
            save_gif(distinct_frames(3), run / "figures" / filename, caption=caption)
        else:
            save_image_grid(torch.rand(4, 1, 4, 4), run / "figures" / filename, caption=caption)
    return run


FIGURES = {
    "interpolation.png": "an interpolation",
    "interpolation.gif": "the same, animated",
    "latent_scatter.png": "codes <script>alert('x')</script> & more",
    "prior_samples.png": "samples",
    "zz_extra.png": "something else",
}


def test_report_embeds_every_figure_in_order_and_escapes_captions(tmp_path):
    run = make_run(
        tmp_path,
        "vae-run",
        "vae",
        FIGURES,
        metrics={"test_elbo_nats": -98.1, "iwae_nll_nats": 93.0, "iwae_k": 1000},
    )
    path = write_report(run)
    text = path.read_text()
    assert path == run / "report.html"
    sources = parse(text).sources
    assert len(sources) == len(FIGURES) + 1  # + the loss curves drawn from metrics.jsonl
    assert all(s.startswith("data:image/") for s in sources)
    assert sum(s.startswith("data:image/gif;base64,") for s in sources) == 1
    assert "<script>" not in text
    assert "codes &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # no external resources
    order = [
        text.index(f'id="fig-{name}"')
        for name in (
            "loss-curves-png",
            "prior-samples-png",
            "latent-scatter-png",
            "interpolation-png",
            "interpolation-gif",
            "zz-extra-png",
        )
    ]
    assert order == sorted(order)
    assert "nats/image" in text and "-98.1<" in text
    assert "Variational autoencoder on digits: vae-run" in text


def test_report_without_metrics_or_figures_still_renders(tmp_path):
    run = make_run(tmp_path, "bare", "ae", jsonl=False)
    text = write_report(run, tmp_path / "out" / "r.html").read_text()
    assert "No evaluation results" in text and "No figures yet" in text
    assert parse(text).sources == []


def test_report_escapes_config_values(tmp_path):
    run = make_run(tmp_path, "r", "ae", jsonl=False)
    config = json.loads((run / "config.json").read_text())
    config["data"]["name"] = "<b>bold</b>"
    (run / "config.json").write_text(json.dumps(config))
    text = write_report(run).read_text()
    assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text


def test_missing_run_dir_or_config_raises_run_error(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no config.json"):
        write_report(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="cannot read"):
        write_report(tmp_path / "empty")
    with pytest.raises(RunError):
        write_comparison_report([tmp_path / "nope"], tmp_path / "c.html")


def test_comparison_has_one_column_per_run_and_explains_ae_vs_vae(tmp_path):
    shared = {k: v for k, v in FIGURES.items() if k != "zz_extra.png"}
    vae = make_run(
        tmp_path, "vae", "vae", shared | {"prior_gap.png": "gap"}, metrics={"test_elbo_nats": -98.1}
    )
    ae = make_run(tmp_path, "ae", "ae", shared)
    text = write_comparison_report([ae, vae], tmp_path / "compare.html").read_text()
    parsed = parse(text)
    assert parsed.run_headers == 2
    rows_with_cells = [cells for cells in parsed.image_rows if cells]
    assert rows_with_cells == [2] * (len(shared) + 2)  # + the loss curves and the prior gap
    assert "not produced by this run" in text  # the AE has no prior-gap figure
    assert AE_VAE_PHRASE in COMPARISON_AE_VAE
    assert note_paragraphs(text).count(COMPARISON_AE_VAE) == 1  # the explanation itself
    assert "Why the autoencoder" in text
    assert "&lt;script&gt;" in text and "<script>" not in text


def test_comparison_of_two_vaes_has_no_ae_vae_explanation(tmp_path):
    runs = [make_run(tmp_path, f"vae{i}", "vae", {"prior_samples.png": "s"}) for i in range(2)]
    text = write_comparison_report(runs, tmp_path / "c.html").read_text()
    assert parse(text).run_headers == 2
    assert COMPARISON_AE_VAE not in note_paragraphs(text)
    assert AE_VAE_PHRASE not in html.unescape(text)
    assert "Why the autoencoder" not in text


AE_VAE_PHRASE = "the VAE can be sampled"


def note_paragraphs(html_text: str) -> list[str]:
    """The text of every <p class="note"> of a report, unescaped."""
    found = re.findall(r'<p class="note">(.*?)</p>', html_text, flags=re.DOTALL)
    return [html.unescape(paragraph) for paragraph in found]


def test_comparison_of_three_runs_without_the_ae_vae_note(tmp_path):
    runs = [make_run(tmp_path, f"vae{i}", "vae", {"prior_samples.png": "s"}) for i in range(3)]
    text = write_comparison_report(runs, tmp_path / "c.html").read_text()
    assert parse(text).run_headers == 3
    assert "Why the autoencoder" not in text


def test_figure_files_ignore_captions_and_hidden_files(tmp_path):
    run = make_run(tmp_path, "r", "vae", {"prior_samples.png": "s"}, jsonl=False)
    (run / "figures" / ".partial.png").write_bytes(b"")
    assert [p.name for p in figure_files(run / "figures")] == ["prior_samples.png"]


def test_a_run_stopped_by_its_time_limit_says_so(tmp_path):
    from genlearn.report.html import describe_run
    from genlearn.train.runs import Run

    path = make_run(tmp_path, "timed", "dcgan", jsonl=False)
    config = json.loads((path / "config.json").read_text())
    config["train"]["max_seconds"] = 60
    (path / "config.json").write_text(json.dumps(config))
    rows = [{"step": 900, "epoch": 2.5, "split": "train", "loss_d": 0.4, "train_seconds": 60.02}]
    write_jsonl(path / "metrics.jsonl", rows)
    text = describe_run(Run.open(path))
    assert "Trained for 2.5 epochs (900 steps), when its time limit of 60 s ran out." in text
    rows[-1]["train_seconds"] = 31.0  # finished its epochs first
    write_jsonl(path / "metrics.jsonl", rows)
    assert "time limit" not in describe_run(Run.open(path))
