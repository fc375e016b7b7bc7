"""The training engine: schedule, checkpoints written atomically, exact resume, run files."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from genlearn.errors import ConfigError, RunError
from genlearn.models.autoencoder import Autoencoder, AutoencoderConfig
from genlearn.train import runs as runs_module
from genlearn.train.engine import TrainConfig, Trainer, epoch_order, learning_rate, pick_device
from genlearn.train.runs import (
    Run,
    flatten_optimizer_state,
    load_tensors,
    save_tensors_atomic,
    unflatten_optimizer_state,
)


def tiny_images(n: int = 96) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=generator, dtype=torch.uint8)


def tiny_model(channels: tuple[int, ...] = (8,)) -> Autoencoder:
    torch.manual_seed(0)
    return Autoencoder(AutoencoderConfig(latent_dim=2, image_size=8, conv_channels=list(channels)))


def test_learning_rate_warms_up_then_follows_the_cosine():
    config = TrainConfig(lr=1.0, warmup_steps=10, lr_final_fraction=0.1)
    assert learning_rate(config, 0, 110) == pytest.approx(0.1)
    assert learning_rate(config, 9, 110) == pytest.approx(1.0)
    assert learning_rate(config, 60, 110) == pytest.approx(0.1 + 0.9 * 0.5)
    assert learning_rate(config, 110, 110) == pytest.approx(0.1)
    assert learning_rate(TrainConfig(lr=0.5, lr_schedule="constant"), 77, 100) == 0.5


def test_epoch_order_shards_a_permutation_between_processes():
    shards = [epoch_order(10, seed=3, epoch=1, rank=r, world=2) for r in range(2)]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    assert not torch.equal(epoch_order(10, 3, 1, 0, 1), epoch_order(10, 3, 2, 0, 1))


def test_bad_train_config_is_a_user_error():
    with pytest.raises(ConfigError):
        TrainConfig(epochs=0).validate()
    with pytest.raises(ConfigError):
        TrainConfig(precision="fp8").validate()
    with pytest.raises(ConfigError, match="time limit"):
        TrainConfig(max_seconds=-5).validate()
    with pytest.raises(ConfigError):
        pick_device("tpu")


def test_batch_larger_than_data_is_a_user_error(tmp_path):
    trainer = Trainer(
        tiny_model(),
        Run.create(tmp_path, "vae", "t"),
        TrainConfig(batch_size=500),
        device="cpu",
        show_progress=False,
    )
    with pytest.raises(ConfigError, match="batch size"):
        trainer.fit(tiny_images())


def train_run(
    tmp_path: Path,
    name: str,
    *,
    stop_at: int | None = None,
    resume: bool = False,
    run: Run | None = None,
    channels: tuple[int, ...] = (8,),
) -> Trainer:
    config = TrainConfig(
        epochs=3, batch_size=16, lr=3e-3, checkpoint_every_steps=4, log_every_steps=2
    )
    run = run or Run.create(tmp_path, "vae", name)
    model = tiny_model(channels)
    trainer = Trainer(model, run, config, seed=5, device="cpu", show_progress=False)

    def kill(step: int) -> None:  # a crash: no checkpoint is written on the way out
        if stop_at is not None and step >= stop_at:
            raise SystemExit("killed")

    with contextlib.suppress(SystemExit):
        trainer.fit(tiny_images(), tiny_images(32), resume=resume, on_step=kill)
    return trainer


@pytest.mark.parametrize("channels", [(8,), (8, 8)])
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path, channels):
    # (8, 8): a convolution with 8 input channels, whose channels-last weights the fused Adam
    # pairs with its moments by memory layout, which the checkpoint must restore
    straight = train_run(tmp_path, "straight", channels=channels)
    killed = train_run(tmp_path, "killed", stop_at=10, channels=channels)  # checkpoint at 8
    assert killed.step == 10
    resumed = train_run(tmp_path, "unused", resume=True, run=killed.run, channels=channels)
    assert resumed.step == straight.step == 18
    for (name, a), (_, b) in zip(
        straight.unwrapped_model.state_dict().items(),
        resumed.unwrapped_model.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(a, b), name
    # the resumed log has no duplicated steps and matches the uninterrupted one
    steps = [r["step"] for r in killed.run.read_log() if r["split"] == "train"]
    assert steps == sorted(set(steps))
    assert [r["step"] for r in straight.run.read_log()] == [
        r["step"] for r in killed.run.read_log()
    ]


def test_training_writes_metrics_and_the_loss_falls(tmp_path):
    trainer = train_run(tmp_path, "log")
    records = trainer.run.read_log()
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < train_losses[0]
    assert all(
        "images_per_s" in r and r["images_per_s"] > 0 for r in records if r["split"] == "train"
    )
    assert [r["epoch"] for r in records if r["split"] == "test"] == [1.0, 2.0, 3.0]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    save_tensors_atomic(path, {"w": torch.ones(3)}, {"step": 1})

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(runs_module, "save_file", broken_save)
    with pytest.raises(OSError):
        save_tensors_atomic(path, {"w": torch.zeros(3)}, {"step": 2})
    tensors, metadata = load_tensors(path)  # the old checkpoint is intact
    assert torch.equal(tensors["w"], torch.ones(3)) and metadata == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"\x00" * 20)
    with pytest.raises(RunError, match="not a readable safetensors"):
        load_tensors(path)


def test_optimizer_state_round_trips_through_tensors_and_json():
    model = tiny_model()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(4, 1, 8, 8))["loss"].backward()
    optimiser.step()
    tensors, structure = flatten_optimizer_state(optimiser.state_dict(), "opt")
    json.dumps(structure)  # the non-tensor part must be JSON
    restored = unflatten_optimizer_state(tensors, json.loads(json.dumps(structure)), "opt")
    fresh = torch.optim.Adam(model.parameters(), lr=1e-3)
    fresh.load_state_dict(restored)
    for key, state in optimiser.state_dict()["state"].items():
        for name, value in state.items():
            assert torch.equal(fresh.state_dict()["state"][key][name], value)


def test_open_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        Run.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="not a genlearn run"):
        Run.open(tmp_path / "empty")


def test_bf16_precision_trains_on_cpu(tmp_path):
    config = TrainConfig(epochs=1, batch_size=16, precision="bf16", log_every_steps=1)
    trainer = Trainer(
        tiny_model(), Run.create(tmp_path, "vae", "bf16"), config, device="cpu", show_progress=False
    )
    metrics = trainer.fit(tiny_images(), tiny_images(32))
    assert trainer.step == 6 and all(math.isfinite(v) for v in metrics.values())


def test_fp16_on_a_cpu_is_a_user_error(tmp_path):
    with pytest.raises(ConfigError, match="bf16"):
        Trainer(
            tiny_model(),
            Run.create(tmp_path, "vae", "fp16"),
            TrainConfig(precision="fp16"),
            device="cpu",
            show_progress=False,
        )


def test_tensorboard_logging_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    config = TrainConfig(epochs=1, batch_size=32, tensorboard=True, log_every_steps=1)
    run = Run.create(tmp_path, "vae", "tb")
    Trainer(tiny_model(), run, config, device="cpu", show_progress=False).fit(tiny_images())
    assert list((run.path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("where", ["between_steps", "inside_a_step"])
def test_ctrl_c_then_resume_matches_an_uninterrupted_run(tmp_path, where):
    """Ctrl-C stops after the step in progress, saves, and the resumed run ends identically."""
    straight = train_run(tmp_path, "straight")
    config = TrainConfig(
        epochs=3, batch_size=16, lr=3e-3, checkpoint_every_steps=4, log_every_steps=2
    )
    run = Run.create(tmp_path, "vae", "interrupted")
    trainer = Trainer(tiny_model(), run, config, seed=5, device="cpu", show_progress=False)
    interrupt = lambda: os.kill(os.getpid(), signal.SIGINT)  # noqa: E731
    if where == "inside_a_step":  # the signal arrives during the forward pass of step 7
        calls = {"n": 0}

        def pre_hook(module, args):
            calls["n"] += module.training  # count training steps, not the test passes
            if calls["n"] == 7:
                interrupt()

        trainer.unwrapped_model.register_forward_pre_hook(pre_hook)
        on_step = None
    else:

        def on_step(step):
            if step == 7:
                interrupt()

    with pytest.raises(RunError, match="--resume"):
        trainer.fit(tiny_images(), tiny_images(32), on_step=on_step)
    assert load_tensors(run.checkpoint_path)[1]["step"] == 7
    resumed = train_run(tmp_path, "unused", resume=True, run=run)
    for (name, a), (_, b) in zip(
        straight.unwrapped_model.state_dict().items(),
        resumed.unwrapped_model.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(a, b), name


def test_resume_with_another_process_count_is_refused(tmp_path):
    trainer = train_run(tmp_path, "short", stop_at=5)
    tensors, metadata = load_tensors(trainer.run.checkpoint_path)
    metadata["steps_per_epoch"] = 3  # as if trained with more processes
    save_tensors_atomic(trainer.run.checkpoint_path, tensors, metadata)
    with pytest.raises(RunError, match="steps per epoch"):
        train_run(tmp_path, "unused", resume=True, run=trainer.run)


def test_autocast_really_runs_in_bf16(tmp_path):
    model = tiny_model()
    seen = []
    model.decoder.net[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    config = TrainConfig(epochs=1, batch_size=32, precision="bf16")
    Trainer(
        model, Run.create(tmp_path, "vae", "bf"), config, device="cpu", show_progress=False
    ).fit(tiny_images())
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)


class TwoPlayerToy(torch.nn.Module):
    """The smallest model with its own training step and two optimisers (a GAN's shape):
    `a` and `b` take turns, `b` every second step, and the labels are used."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(64, 1)
        self.b = torch.nn.Linear(64, 1)

    def make_optimizers(self, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        return {
            "a": torch.optim.Adam(self.a.parameters(), lr=config.lr),
            "b": torch.optim.SGD(self.b.parameters(), lr=config.lr * 10, momentum=0.9),
        }

    def _losses(self, x, labels, generator):
        flat = x.flatten(1) + 0.01 * torch.randn(x.flatten(1).shape, generator=generator)
        target = labels.float() if labels is not None else torch.ones(len(x))
        loss_a = (self.a(flat).squeeze(1) - target).pow(2).mean()
        loss_b = (self.b(flat).squeeze(1) + target).pow(2).mean()
        return loss_a, loss_b

    def training_step(self, batch, labels, optimizers, *, generator, backward, step):
        loss_a, loss_b = self._losses(batch, labels, generator)
        for name, loss in (("a", loss_a), ("b", loss_b)):
            if name == "b" and step % 2:
                continue
            optimizers[name].zero_grad(set_to_none=True)
            backward(loss)
            optimizers[name].step()
        return {"loss_a": loss_a.detach(), "loss_b": loss_b.detach()}

    def forward(self, x, generator=None):
        loss_a, loss_b = self._losses(x, None, generator)
        return {"loss": loss_a + loss_b, "loss_a": loss_a, "loss_b": loss_b}


def train_toy(tmp_path: Path, name: str, *, stop_at=None, resume=False, run=None) -> Trainer:
    config = TrainConfig(epochs=3, batch_size=16, lr=1e-2, checkpoint_every_steps=4)
    run = run or Run.create(tmp_path, "toy", name)
    trainer = Trainer(TwoPlayerToy(), run, config, seed=5, device="cpu", show_progress=False)
    labels = torch.arange(96) % 3

    def kill(step: int) -> None:
        if stop_at is not None and step >= stop_at:
            raise SystemExit("killed")

    with contextlib.suppress(SystemExit):
        trainer.fit(
            tiny_images(), tiny_images(32), train_labels=labels, resume=resume, on_step=kill
        )
    return trainer


def test_a_model_with_its_own_step_and_two_optimisers_trains_and_resumes_exactly(tmp_path):
    straight = train_toy(tmp_path, "straight")
    log = [r for r in straight.run.read_log() if r["split"] == "train"]
    assert {"loss_a", "loss_b"} <= set(log[0]) and log[-1]["loss_a"] < log[0]["loss_a"]
    assert straight.optimizers["b"].state_dict()["state"]  # the second player was stepped
    killed = train_toy(tmp_path, "killed", stop_at=10)
    resumed = train_toy(tmp_path, "unused", resume=True, run=killed.run)
    assert resumed.step == straight.step == 18
    for (name, a), (_, b) in zip(
        straight.unwrapped_model.state_dict().items(),
        resumed.unwrapped_model.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(a, b), name
    momentum = [
        s["momentum_buffer"] for s in resumed.optimizers["b"].state_dict()["state"].values()
    ]
    expected = [
        s["momentum_buffer"] for s in straight.optimizers["b"].state_dict()["state"].values()
    ]
    assert all(torch.equal(x, y) for x, y in zip(momentum, expected, strict=True))


def test_a_time_limit_ends_training_early_as_finished(tmp_path):
    config = TrainConfig(epochs=1000, batch_size=16, max_seconds=0.5)
    run = Run.create(tmp_path, "vae", "timed")
    trainer = Trainer(tiny_model(), run, config, seed=0, device="cpu", show_progress=False)
    trainer.fit(tiny_images())  # returns normally: no RunError as for an interruption
    assert 0 < trainer.step < 1000 * 6
    assert 0.5 <= trainer.train_seconds < 30
    assert load_tensors(run.checkpoint_path)[1]["step"] == trainer.step
    # resuming a run that used up its time trains nothing more
    again = Trainer(tiny_model(), run, config, seed=0, device="cpu", show_progress=False)
    again.fit(tiny_images(), resume=True)
    assert again.step == trainer.step


@pytest.mark.parametrize(
    ("change", "message"),
    [({"grad_clip": 1.0}, "--grad-clip"), ({"precision": "fp16"}, "GANs do not train in fp16")],
)
def test_options_a_model_with_its_own_step_cannot_use_are_refused(tmp_path, change, message):
    run = Run.create(tmp_path, "toy", "two-player")
    with pytest.raises(ConfigError, match=message):
        Trainer(TwoPlayerToy(), run, TrainConfig(**change), device="cpu", show_progress=False)
