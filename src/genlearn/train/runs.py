"""Run directories: everything a training run leaves behind, and how it is read back.

    runs/<family>-<data>-<timestamp>/
        config.json               what was trained, on what, how (enough to rebuild the model)
        metrics.jsonl             one JSON object per logged step / evaluation
        checkpoint.safetensors    full training state (weights, optimiser, step), written atomically
        model.safetensors         final weights, for sampling and evaluation
        metrics.json              evaluation results
        figures/                  PNGs and GIFs
        report.html

Checkpoints are safetensors plus JSON metadata: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from genlearn.atomic import atomic_path, write_json_atomic, write_text_atomic
from genlearn.errors import RunError

CONFIG = "config.json"
METRICS_LOG = "metrics.jsonl"
CHECKPOINT = "checkpoint.safetensors"
WEIGHTS = "model.safetensors"
EVALUATION = "metrics.json"
FIGURES = "figures"


class Run:
    """A run directory and the files in it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._config: dict[str, Any] | None = None

    @classmethod
    def create(cls, root: str | Path, family: str, data_name: str) -> Run:
        """A new, uniquely named run directory under `root`."""
        safe_data = "".join(c if c.isalnum() or c in "-_" else "-" for c in data_name).strip("-")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(root) / f"{family}-{safe_data}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        path.mkdir(parents=True)
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """An existing run; a clear error if `path` is not one (or its config is unreadable)."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunError(f"run directory {run.path} does not exist: pass a folder under runs/")
        if not run.config_path.is_file():
            raise RunError(f"{run.path} is not a genlearn run: it has no {CONFIG}")
        run._config = run.read_config()  # a broken config.json fails here, not halfway on
        return run

    # ---- paths -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_log_path(self) -> Path:
        return self.path / METRICS_LOG

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS

    @property
    def best_weights_path(self) -> Path:
        """The weights of the lowest evaluation loss (for runs that evaluate as they train)."""
        return self.path / "best.safetensors"

    @property
    def evaluation_path(self) -> Path:
        return self.path / EVALUATION

    @property
    def figures_dir(self) -> Path:
        directory = self.path / FIGURES
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    # ---- config and metrics ---------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.config_path, config)
        self._config = None  # the kept copy is stale now

    def read_config(self) -> dict[str, Any]:
        try:
            config = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise RunError(f"cannot read {self.config_path}: {error}") from None
        if not isinstance(config, dict):
            raise RunError(f"{self.config_path} must hold a JSON object")
        return config

    @property
    def config(self) -> dict[str, Any]:
        """config.json, read once and kept (`read_config` reads it afresh)."""
        if self._config is None:
            self._config = self.read_config()
        return self._config

    @property
    def family(self) -> str:
        """The model family ("vae", "ae", ...) from config.json; "model" when it does not say."""
        return str(self.config.get("family", "model"))

    @property
    def data_name(self) -> str:
        """The dataset's name from config.json; "unknown data" when it does not say."""
        data = self.config.get("data")
        return str(data.get("name", "unknown data")) if isinstance(data, dict) else "unknown data"

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl (flushed at once, so a killed run keeps it)."""
        with self.metrics_log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl ([] before the first one; a cut-short line is skipped)."""
        return read_jsonl(self.metrics_log_path)

    def truncate_log(self, after_step: int) -> None:
        """Drop records logged after `after_step`: a resumed run logs those steps again."""
        kept = [r for r in self.read_log() if r.get("step", 0) <= after_step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        write_text_atomic(self.metrics_log_path, text)

    def write_evaluation(self, results: dict[str, Any]) -> None:
        """Merge `results` into metrics.json."""
        current = self.read_evaluation()
        current.update(results)
        write_json_atomic(self.evaluation_path, current)

    def read_evaluation(self) -> dict[str, Any]:
        """metrics.json ({} when it is missing or unreadable: it never stops a report)."""
        try:
            results = json.loads(self.evaluation_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return results if isinstance(results, dict) else {}


# ---- files --------------------------------------------------------------------------------
def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, one per line ([] if it does not exist).

    Blank lines, other JSON values and a last line cut short by a kill (or by a run still
    writing it) are skipped.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def save_tensors_atomic(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None
) -> None:
    """safetensors file + JSON metadata, written atomically (a kill mid-write loses nothing).

    A tensor stored under two names (a language model's tied embedding and read-out) is
    written once; the file's metadata names the alias and `load_tensors` restores it.
    """
    contiguous, aliases, seen = {}, {}, {}
    for key, value in tensors.items():
        identity = (value.data_ptr(), value.shape, value.stride(), value.dtype)
        if value.numel() and identity in seen:
            aliases[key] = seen[identity]
            continue
        seen[identity] = key
        contiguous[key] = value.detach().contiguous().cpu()
    metadata = {**(metadata or {}), **({"aliases": aliases} if aliases else {})}
    with atomic_path(path) as tmp:
        save_file(contiguous, tmp, metadata={"genlearn": json.dumps(metadata)})


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a file written by `save_tensors_atomic`."""
    if not path.is_file():
        raise RunError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = json.loads((f.metadata() or {}).get("genlearn", "{}"))
        tensors = load_file(str(path))
        for alias, key in metadata.pop("aliases", {}).items():
            tensors[alias] = tensors[key]
        return tensors, metadata
    except (SafetensorError, json.JSONDecodeError, OSError) as error:
        raise RunError(f"{path} is not a readable safetensors file ({error})") from None


# ---- optimiser state as tensors + JSON --------------------------------------------------
def flatten_optimizer_state(state: dict[str, Any], prefix: str) -> tuple[dict, dict]:
    """Split an optimiser state_dict into tensors (for safetensors) and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(
    tensors: dict[str, torch.Tensor], structure: dict[str, Any], prefix: str
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    start = f"{prefix}.state."
    for name, value in tensors.items():
        if name.startswith(start):
            param_id, key = name[len(start) :].split(".", 1)
            state.setdefault(int(param_id), {})[key] = value
    for param_id, values in structure["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": structure["param_groups"]}


def model_state_from_checkpoint(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's weights inside a training checkpoint (stored under `model.`)."""
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
