"""The training loop every model family uses, on Hugging Face Accelerate.

The engine does plumbing only: devices, distributed data parallelism and mixed
precision (Accelerate), batches, the learning-rate schedule, gradient clipping,
logging, checkpoints and resume. What is learned, and how its loss is computed, is
the model's business: the engine calls `model(images, generator=g)` and minimises
the `"loss"` entry of the dict it returns.

Determinism: the batch order of epoch e comes from a generator seeded with
(seed, e), and the noise of step s (the VAE's epsilon, dynamic binarisation) from one
seeded with (seed, s). A resumed run therefore replays exactly the steps an
uninterrupted run would have taken, and ends with the same weights on CPU.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from genlearn.errors import ConfigError, RunError
from genlearn.train.runs import (
    Run,
    flatten_optimizer_state,
    load_tensors,
    model_state_from_checkpoint,
    save_tensors_atomic,
    unflatten_optimizer_state,
)

console = Console(stderr=True)


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # "cosine" (to lr_final_fraction * lr) or "constant"
    lr_final_fraction: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # 0: no clipping
    precision: str = "no"  # "no", "bf16", "fp16"
    eval_every_epochs: int = 1  # 0: never
    checkpoint_every_steps: int = 0  # 0: only at epoch ends (and when interrupted)
    log_every_steps: int = 50
    tensorboard: bool = False
    max_seconds: float = 0.0  # stop (as finished) after this much training time; 0: no limit
    max_steps: int = 0  # train this many steps (the schedule spans them); 0: epochs decide
    eval_every_steps: int = 0  # also evaluate every this many steps; 0: at epoch ends only
    grad_accumulation: int = 1  # split each batch into this many passes (same maths, less memory)

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(
                f"lr schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}"
            )
        if self.precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"precision must be no, bf16 or fp16, got {self.precision!r}")
        if self.max_steps < 0 or self.eval_every_steps < 0:
            raise ConfigError("step counts must be 0 (off) or positive")
        if self.grad_accumulation < 1 or self.batch_size % self.grad_accumulation:
            raise ConfigError(
                f"--grad-accumulation ({self.grad_accumulation}) must divide the batch size "
                f"({self.batch_size})"
            )
        if not self.max_seconds >= 0:
            raise ConfigError(
                f"the time limit must be 0 (none) or a number of seconds, got {self.max_seconds}"
            )


def pick_device(name: str = "auto") -> torch.device:
    """'auto' prefers cuda, then Apple's mps, then the CPU; naming a missing device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is visible: use --device cpu"
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for but Apple's MPS is not available")
    if name.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return torch.device(name)


def make_accelerator(device: str, precision: str) -> Accelerator:
    chosen = pick_device(device)
    if precision == "fp16" and chosen.type == "cpu":
        raise ConfigError("fp16 needs a GPU: use --precision bf16 on a CPU, or no")
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", precision) != precision:
        # Accelerate keeps one state per process; a notebook or test that trains once in
        # fp32 and then in bf16 needs it renewed (a distributed launch never changes it)
        if int(state.get("num_processes", 1)) > 1:
            raise ConfigError("the precision cannot change inside a distributed launch")
        AcceleratorState._reset_state()
    if chosen.type == "cuda" and chosen.index is not None:
        torch.cuda.set_device(chosen)  # Accelerate trains on the current CUDA device
    return Accelerator(cpu=chosen.type == "cpu", mixed_precision=precision)


def make_adam(parameters, config: TrainConfig) -> torch.optim.Adam:
    """Adam with the fused kernel, which updates every parameter in one pass (a large win
    for small models on a CPU), or the plain one where this torch or device lacks it."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(
            parameters, lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)


def step_generator(seed: int, step: int, device: torch.device, rank: int = 0) -> torch.Generator:
    """The noise source of one step on one process, a pure function of (seed, step, rank)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step + rank * 999_983_111)


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> torch.Tensor:
    """This process's share of the shuffled indices of epoch `epoch`."""
    generator = torch.Generator().manual_seed(seed * 7_919 + epoch)
    return torch.randperm(n, generator=generator)[rank::world]


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """Linear warm-up, then constant or cosine decay to lr * lr_final_fraction."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    floor = config.lr * config.lr_final_fraction
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def as_float_images(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,C,H,W] -> float [0, 1], channels-last (the fast layout for CPU convolutions)."""
    images = batch_uint8.float().div_(255.0)
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images


class BatchSource(Protocol):
    """What the engine trains on: the batch of any step, as a pure function of the step (so
    a resumed run sees the batches an uninterrupted one would have)."""

    steps_per_epoch: int
    unit: str  # what the throughput counts: "images", "tokens"
    tokens_per_item: int  # units in each row of a batch (1 image; a window's tokens)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class ImageBatches:
    """In-memory uint8 images (and labels), reshuffled each epoch: the order of epoch e comes
    from (seed, e), and each process takes every world-th image of it."""

    unit, tokens_per_item = "images", 1

    def __init__(self, images, labels, batch_size, seed, rank, world, device):
        self.steps_per_epoch = (len(images) // world) // batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"batch size {batch_size} is larger than the training set "
                f"({len(images)} images per process): lower --batch-size"
            )
        self.images = images.to(device)
        self.labels = None if labels is None else labels.to(device)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self._epoch, self._order = -1, None

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        epoch, index = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            order = epoch_order(len(self.images), self.seed, epoch, self.rank, self.world)
            self._epoch, self._order = epoch, order.to(self.images.device)
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        labels = None if self.labels is None else self.labels[rows]
        return as_float_images(self.images[rows]), labels


class StopOnInterrupt:
    """Within the block, Ctrl-C asks for a stop instead of raising at once, so training
    stops between steps: a checkpoint never holds weights one step ahead of its step
    count. A second Ctrl-C interrupts immediately. Off the main thread, and in a
    distributed launch (where processes could stop at different steps and wait for each
    other forever), Ctrl-C keeps its usual effect: resume from the last checkpoint."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnInterrupt:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """Fits a model to an in-memory image tensor, writing into a run directory."""

    def __init__(
        self,
        model: nn.Module,
        run: Run,
        config: TrainConfig,
        *,
        seed: int = 0,
        device: str = "auto",
        show_progress: bool = True,
    ):
        config.validate()
        # a model with its own training step (a GAN: two networks, two optimisers) brings its
        # optimisers; every other model minimises out["loss"] with one Adam
        self.custom_step = hasattr(model, "training_step")
        if self.custom_step:
            _check_custom_step_config(config)
        self.config, self.run, self.seed = config, run, seed
        self.accelerator = make_accelerator(device, config.precision)
        self.device = self.accelerator.device
        torch.manual_seed(seed)  # anything the model draws outside our generators
        self.model = model.to(self.device, memory_format=torch.channels_last)
        if self.custom_step and self.accelerator.num_processes > 1:
            # its networks are stepped outside DDP's forward, so gradients would not be synced
            raise ConfigError(
                "models with their own training step (GANs) train on one process for now: "
                "launch without accelerate/torchrun"
            )
        if self.custom_step:
            optimizers = model.make_optimizers(config)
        elif hasattr(model, "configure_optimizer"):  # a model that knows its own (a GPT)
            optimizers = {"optimizer": model.configure_optimizer(config.lr, config.weight_decay)}
        else:
            optimizers = {"optimizer": make_adam(self.model.parameters(), config)}
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:  # the schedule scales each group's own rate
                group.setdefault("base_lr", group["lr"])
        self.model, *prepared = self.accelerator.prepare(self.model, *optimizers.values())
        self.optimizers = dict(zip(optimizers, prepared, strict=True))
        self.show_progress = show_progress and self.accelerator.is_main_process
        self.step = 0
        self.train_seconds = 0.0  # time spent in training steps, across resumes
        self.steps_per_epoch = 0
        self._out_of_time = False  # max_seconds of training reached: finish as if done
        self.best_loss = math.inf  # the lowest evaluation loss so far (its weights are kept)
        self._tensorboard = None
        # a conditional model is given its labels (a GAN through its own step); one may want a call after each
        # update (a diffusion model moves its moving average)
        unwrapped = self.unwrapped_model
        self._uses_labels = self.custom_step or bool(getattr(unwrapped, "uses_labels", False))
        self._after_step = getattr(unwrapped, "after_optimizer_step", None)

    # ---- public ----------------------------------------------------------------------------
    def fit(
        self,
        train_images: torch.Tensor,
        test_images: torch.Tensor | None = None,
        *,
        train_labels: torch.Tensor | None = None,
        test_labels: torch.Tensor | None = None,
        resume: bool = False,
        on_step: Callable[[int], None] | None = None,
    ) -> dict[str, float]:
        """Train on in-memory images (uint8), testing at epoch ends: see `train_on`."""
        batches = ImageBatches(
            train_images,
            train_labels if self._uses_labels else None,
            self.config.batch_size,
            self.seed,
            self.accelerator.process_index,
            self.accelerator.num_processes,
            self.device,
        )
        evaluate = None
        if test_images is not None:

            def evaluate() -> dict[str, float]:
                return self.evaluate_loss(test_images, test_labels)

        return self.train_on(batches, evaluate, resume=resume, on_step=on_step)

    def train_on(
        self,
        batches: BatchSource,
        evaluate: Callable[[], dict[str, float]] | None = None,
        *,
        split: str = "test",
        resume: bool = False,
        on_step: Callable[[int], None] | None = None,
    ) -> dict[str, float]:
        """Train for `config.max_steps` steps, or else `config.epochs` epochs of `batches`
        (continuing from the checkpoint when `resume`).

        `evaluate()` runs at epoch ends (every `eval_every_epochs`), every `eval_every_steps`
        steps and at the end; its metrics are logged under `split`, and whenever its "loss"
        is the lowest so far the weights are also saved as the run's best.
        Ctrl-C stops after the step in progress, saves a checkpoint and raises RunError
        saying how to resume. Returns the last evaluation's metrics ({} without one).
        """
        self.steps_per_epoch = batches.steps_per_epoch
        total_steps = self.config.max_steps or self.steps_per_epoch * self.config.epochs
        if resume:
            self.load_checkpoint()
        # a run that stopped on its time limit has nothing left to train; raising
        # config.max_seconds and calling fit again trains on (the benchmarks do, in slices)
        self._out_of_time = 0 < self.config.max_seconds <= self.train_seconds
        self._evaluate, self._split, self._last = evaluate, split, {}
        progress = self._progress()
        task = progress.add_task("train", total=total_steps, completed=self.step, info="")
        self._tensorboard = self._open_tensorboard() if self.config.tensorboard else None
        world = self.accelerator.num_processes
        try:
            with progress, StopOnInterrupt(enabled=world == 1) as stop:
                while self.step < total_steps and not stop.requested and not self._out_of_time:
                    epoch_end = self._stretch_end(total_steps)
                    end = min(epoch_end, total_steps)
                    self._train_until(batches, end, total_steps, progress, task, on_step, stop)
                    if stop.requested or self._out_of_time:
                        break
                    epoch_done = self.step // self.steps_per_epoch
                    finished = self.step == total_steps
                    if self.step == epoch_end and self._should_evaluate(epoch_done) or finished:
                        when = (
                            f"step {self.step}" if self._counted_in_steps else f"epoch {epoch_done}"
                        )
                        self._run_evaluation(when)
                    self.save_checkpoint()
        finally:
            if self._tensorboard is not None:
                self._tensorboard.close()
        if self._out_of_time:
            self.save_checkpoint()
            if self.show_progress:
                console.print(
                    f"time limit of {self.config.max_seconds:g} s reached at step {self.step}"
                )
        if stop.requested:
            self.save_checkpoint()
            raise RunError(
                f"interrupted at step {self.step}; checkpoint saved: continue with "
                f"genlearn train --resume {self.run.path}"
            )
        return self._last

    @torch.no_grad()
    def evaluate_loss(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 1000
    ) -> dict[str, float]:
        """Mean of the model's loss entries over `images`, with fixed noise (and the labels,
        for models with their own step: a conditional GAN needs them)."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        generator = step_generator(self.seed, -1, self.device)
        totals: dict[str, float] = {}
        for start in range(0, len(images), batch_size):
            batch = as_float_images(images[start : start + batch_size].to(self.device))
            extra = {}
            if self._uses_labels and labels is not None:
                extra["labels"] = labels[start : start + batch_size].to(self.device)
            with self.accelerator.autocast():
                out = model(batch, generator=generator, **extra)
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(batch)
        model.train()
        return {key: value / len(images) for key, value in totals.items()}

    @property
    def unwrapped_model(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    # ---- the steps -------------------------------------------------------------------------
    def _train_until(self, batches, end, total_steps, progress, task, on_step, stop) -> None:
        """Train from self.step up to step `end` (within one epoch)."""
        # the losses are summed on the device: reading them (a sync) happens only when logging
        sums: dict[str, torch.Tensor] = {}
        count, window_start, window_images = 0, time.perf_counter(), 0
        epoch_last = self._stretch_end(total_steps)
        while self.step < end:
            lr = learning_rate(self.config, self.step, total_steps)
            for optimizer in self.optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * lr / self.config.lr
            inputs, labels = batches(self.step)
            out = self._train_step(inputs, labels)
            self.step += 1
            count += 1
            window_images += len(inputs) * batches.tokens_per_item * self.accelerator.num_processes
            for key, value in out.items():
                sums[key] = sums[key] + value if key in sums else value
            checkpoint_now = bool(self.config.checkpoint_every_steps) and (
                self.step % self.config.checkpoint_every_steps == 0
            )
            evaluate_now = bool(self.config.eval_every_steps) and (
                self.step % self.config.eval_every_steps == 0 and self.step < total_steps
            )
            # a run without epoch ends keeps a checkpoint at each evaluation instead
            checkpoint_now |= evaluate_now and self._counted_in_steps
            # windows end at multiples of log_every_steps, so a resumed run logs the same steps
            end_of_window = self.step % self.config.log_every_steps == 0 or self.step in (
                end,
                epoch_last,
            )
            if self.config.max_seconds > 0:
                spent = self.train_seconds + time.perf_counter() - window_start
                self._out_of_time = spent >= self.config.max_seconds
            if (
                end_of_window
                or checkpoint_now
                or evaluate_now
                or stop.requested
                or self._out_of_time
            ):
                means = self._window_means(sums, count)  # raises if the loss went non-finite
                elapsed = time.perf_counter() - window_start
                self.train_seconds += elapsed
                rate = window_images / max(elapsed, 1e-9)
                epoch = self.step / self.steps_per_epoch
                self._log(
                    {
                        "epoch": round(epoch, 4),
                        "split": "train",
                        **means,
                        f"{batches.unit}_per_s": round(rate, 1),
                        "lr": lr,
                        "train_seconds": round(self.train_seconds, 2),
                    }
                )
                info = f"epoch {epoch:5.2f}  {_loss_summary(means)}  {rate:7.0f} {batches.unit}/s"
                progress.update(task, info=info)
                sums, count, window_images = {}, 0, 0
                if evaluate_now:
                    self._run_evaluation(f"step {self.step}")
                window_start = time.perf_counter()  # evaluation is not training time
            progress.update(task, completed=self.step)
            if checkpoint_now:
                self.save_checkpoint()
            if on_step is not None:
                on_step(self.step)
            if stop.requested or self._out_of_time:
                return

    def _run_evaluation(self, when: str) -> None:
        """Evaluate, log, and keep the weights when the loss is the best so far."""
        if self._evaluate is None:
            return
        metrics = self._evaluate()
        self._last = metrics
        self._log(
            {"epoch": round(self.step / self.steps_per_epoch, 4), "split": self._split, **metrics}
        )
        if self.show_progress:
            parts = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            console.print(f"{when}  {self._split}  {parts}")
        loss = metrics.get("loss")
        if loss is not None and loss < self.best_loss:
            self.best_loss = loss
            if self.accelerator.is_main_process:
                save_tensors_atomic(
                    self.run.best_weights_path,
                    self.unwrapped_model.state_dict(),
                    {"step": self.step, f"{self._split}_loss": loss},
                )

    def _window_means(self, sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
        """Means of a logging window; every process stops together if any loss is not finite
        (one process raising alone would leave the others waiting in an all-reduce)."""
        stacked = torch.stack([value.float() for value in sums.values()])
        bad = (~torch.isfinite(stacked)).any().float().reshape(1)
        if self.accelerator.reduce(bad, reduction="sum").item() > 0:
            raise RunError(
                f"the loss stopped being finite before step {self.step}: lower --lr "
                f"(now {self.config.lr}) or use --grad-clip 1.0; the last checkpoint is intact"
            )
        return {
            key: float(value) / count for key, value in zip(sums, stacked.tolist(), strict=True)
        }

    def _train_step(
        self, batch: torch.Tensor, labels: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        generator = step_generator(
            self.seed, self.step, self.device, self.accelerator.process_index
        )
        if self.custom_step:
            with self.accelerator.autocast():
                out = self.unwrapped_model.training_step(
                    batch,
                    labels,
                    self.optimizers,
                    generator=generator,
                    backward=self.accelerator.backward,
                    step=self.step,
                )
            return {key: value.detach() for key, value in out.items()}
        optimizer = self.optimizers["optimizer"]
        optimizer.zero_grad(set_to_none=True)
        # gradient accumulation: the batch in k parts, each loss divided by k, so the summed
        # gradients are those of the whole batch; processes sync only on the last part
        parts = self.config.grad_accumulation
        pieces = batch.chunk(parts)
        label_pieces = labels.chunk(parts) if labels is not None else [None] * len(pieces)
        totals: dict[str, torch.Tensor] = {}
        for index, (piece, piece_labels) in enumerate(zip(pieces, label_pieces, strict=True)):
            extra = {"labels": piece_labels} if self._uses_labels else {}
            last = index == len(pieces) - 1
            with contextlib.ExitStack() as context:
                if not last:
                    context.enter_context(self.accelerator.no_sync(self.model))
                with self.accelerator.autocast():
                    out = self.model(piece, generator=generator, **extra)
                self.accelerator.backward(
                    out["loss"] / len(pieces) if len(pieces) > 1 else out["loss"]
                )
            for key, value in out.items():
                value = value.detach() / len(pieces)
                totals[key] = totals[key] + value if key in totals else value
        if self.config.grad_clip > 0:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        optimizer.step()
        if self._after_step is not None:  # e.g. a moving average of the weights
            self._after_step()
        return totals

    # ---- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Weights + optimiser state + step, in one atomically replaced safetensors file."""
        if not self.accelerator.is_main_process:
            return
        model = self.unwrapped_model
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        # each optimiser's state under its own prefix ("optimizer" alone for one-loss models,
        # the layout of earlier checkpoints, which therefore still resume)
        structure = {}
        for name, optimizer in self.optimizers.items():
            optimizer_tensors, structure[name] = flatten_optimizer_state(
                optimizer.state_dict(), _prefix(name)
            )
            tensors.update(optimizer_tensors)
        save_tensors_atomic(
            self.run.checkpoint_path,
            tensors,
            {
                "step": self.step,
                "steps_per_epoch": self.steps_per_epoch,
                "num_processes": self.accelerator.num_processes,
                "train_seconds": self.train_seconds,
                "best_loss": self.best_loss,
                **_optimizer_metadata(structure),
            },
        )

    def load_checkpoint(self) -> None:
        tensors, metadata = load_tensors(self.run.checkpoint_path)
        model_state = model_state_from_checkpoint(tensors)
        try:
            self.unwrapped_model.load_state_dict(model_state)
        except RuntimeError as error:
            raise RunError(f"checkpoint does not fit this model: {str(error)[:200]}") from None
        structures = metadata.get("optimizers") or {"optimizer": metadata["optimizer"]}
        if set(structures) != set(self.optimizers):
            raise RunError(
                f"checkpoint holds optimisers {sorted(structures)}, this model has "
                f"{sorted(self.optimizers)}: it belongs to another kind of model"
            )
        for name, optimizer in self.optimizers.items():
            state = unflatten_optimizer_state(tensors, structures[name], _prefix(name))
            optimizer.load_state_dict(state)
            match_parameter_layouts(optimizer)
        saved = (metadata.get("num_processes", 1), metadata.get("steps_per_epoch"))
        now = (self.accelerator.num_processes, self.steps_per_epoch)
        if saved[1] is not None and saved != now:
            raise RunError(
                f"this run was trained with {saved[0]} process(es) and {saved[1]} steps per "
                f"epoch; resume it the same way (now {now[0]} and {now[1]})"
            )
        self.step = int(metadata["step"])
        self.train_seconds = float(metadata.get("train_seconds", 0.0))
        self.best_loss = float(metadata.get("best_loss", math.inf))
        if self.accelerator.is_main_process:
            self.run.truncate_log(after_step=self.step)
        self.accelerator.wait_for_everyone()

    def save_weights(self, path) -> None:
        if self.accelerator.is_main_process:
            save_tensors_atomic(path, self.unwrapped_model.state_dict(), {"step": self.step})

    # ---- logging ---------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if not self.accelerator.is_main_process:
            return
        record = {"step": self.step, **record}
        self.run.log(record)
        if self._tensorboard is not None:
            split = record.get("split", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self._tensorboard.add_scalar(f"{split}/{key}", value, self.step)

    @property
    def _counted_in_steps(self) -> bool:
        """A run of max_steps with no epoch evaluations: a language model's, whose "epoch"
        of random windows is nominal."""
        return bool(self.config.max_steps) and not self.config.eval_every_epochs

    def _stretch_end(self, total_steps: int) -> int:
        """Where the stretch of training in progress ends: the epoch's end, or the run's for
        runs counted in steps (a nominal epoch end would only cut a logging window short)."""
        if self._counted_in_steps:
            return total_steps
        return (self.step // self.steps_per_epoch + 1) * self.steps_per_epoch

    def _should_evaluate(self, epoch_done: int) -> bool:
        every = self.config.eval_every_epochs
        return every > 0 and (epoch_done % every == 0 or epoch_done == self.config.epochs)

    def _progress(self) -> Progress:
        return training_progress(self.show_progress)

    def _open_tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "TensorBoard logging needs the tensorboard package: pip install 'genlearn[tensorboard]'"
            ) from None
        return SummaryWriter(log_dir=str(self.run.path / "tensorboard"))


def _check_custom_step_config(config: TrainConfig) -> None:
    """What the engine does for one loss but not (yet) for a model's own step: say so."""
    if config.grad_clip > 0:
        raise ConfigError(
            "--grad-clip does not apply to models with their own training step (GANs): their "
            "recipes keep the critic in check instead (weight clipping, gradient penalty)"
        )
    if config.grad_accumulation > 1:
        raise ConfigError("--grad-accumulation does not apply to GANs (two players, two steps)")
    if config.precision == "fp16":
        # one loss scaler for two players, and wgan-gp's input gradients, would need care
        raise ConfigError(
            "GANs do not train in fp16: use --precision bf16 (no loss scaling needed) or no"
        )


def _prefix(name: str) -> str:
    return "optimizer" if name == "optimizer" else f"optimizer.{name}"


def _optimizer_metadata(structure: dict[str, Any]) -> dict[str, Any]:
    if set(structure) == {"optimizer"}:
        return {"optimizer": structure["optimizer"]}
    return {"optimizers": structure}


def _loss_summary(means: dict[str, float]) -> str:
    """ "loss 93.412", or for a GAN "loss_d 0.690  loss_g 0.702"."""
    keys = ["loss"] if "loss" in means else [k for k in means if k.startswith("loss")][:2]
    return "  ".join(f"{key} {means[key]:8.3f}" for key in keys)


def match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each loaded moment its parameter's memory layout.

    Checkpoints store tensors contiguous, but the model's convolution weights are
    channels-last; the fused Adam kernel walks parameter and moment memory in step, so a
    moment in another layout would pair its values with the wrong weights after a resume.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.shape == param.shape:
                    optimizer.state[param][key] = torch.empty_like(param).copy_(value)


def training_progress(show: bool) -> Progress:
    """The bar of a training loop: steps, a free "info" field (loss, images/s), time, eta."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=20),  # leaves an 80-column terminal room for the losses
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
        refresh_per_second=4,
    )
