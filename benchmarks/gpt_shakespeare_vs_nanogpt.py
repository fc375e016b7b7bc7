"""Character-level tiny Shakespeare: genlearn's GPT against nanoGPT's documented CPU recipe.

- `nanogpt`: the recipe nanoGPT's README gives for a CPU (config/train_shakespeare_char.py
  with --device=cpu --compile=False --eval_iters=20 --log_interval=1 --block_size=64
  --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
  --dropout=0.0): learning rate 1e-3, 100 warm-up iterations, cosine decay to 1e-4, AdamW
  (0.9, 0.99) with weight decay 0.1 on the matrices, gradients clipped at 1, no biases,
  evaluation every 250 iterations on 20 batches per split, a checkpoint whenever the
  validation loss improves, seed 1337. nanoGPT is not on PyPI, so its model and loop are
  re-implemented here from its description (same architecture, initialisation, batches and
  schedule); its reported figure, a validation loss of 1.88 after 2000 iterations, is the
  check that the re-implementation is faithful.
- `genlearn`: `genlearn train gpt --data shakespeare --seed r` in round r, with its defaults,
  as a user runs it, in its own process.

Both use nanoGPT's split (the first 90% of the characters train, the last 10% validate).
Each runs in a fresh process; the wall time counts everything from the process start to the
last checkpoint written (imports, reading and encoding the text, training, evaluations).
Both final models are then scored the same way: the mean loss over the whole validation
split. The target: genlearn reaches nanoGPT's validation loss in at most half its time.

    GENLEARN_DATA=../shared/data python benchmarks/gpt_shakespeare_vs_nanogpt.py [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# genlearn runs with its defaults (3 layers, 4 heads, 128 wide, rotary positions, context 64,
# batch 16, 900 steps, lr 5e-3, validation on 2^14 tokens every 250 steps); round r uses seed r
GENLEARN_OPTIONS: list[str] = []


# ---- the nanoGPT recipe ------------------------------------------------------------------------
class NanoAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.c_attn = nn.Linear(width, 3 * width, bias=False)
        self.c_proj = nn.Linear(width, width, bias=False)
        self.heads = heads

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class NanoBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, bias=False)
        self.attn = NanoAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, bias=False)
        self.c_fc = nn.Linear(width, 4 * width, bias=False)
        self.c_proj = nn.Linear(4 * width, width, bias=False)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int, block: int, layers: int, heads: int, width: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(block, width)
        self.h = nn.ModuleList(NanoBlock(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width, bias=False)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def nanogpt_lr(it: int, lr=1e-3, min_lr=1e-4, warmup=100, decay_iters=2000) -> float:
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def run_nanogpt(text_path: Path, out: Path) -> dict:
    """nanoGPT's train.py loop with the CPU recipe; returns its figures."""
    start = time.perf_counter()
    torch.manual_seed(1337)
    text = text_path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    data = np.array([lookup[c] for c in text], dtype=np.uint16)
    split = int(len(data) * 0.9)
    out.mkdir(parents=True, exist_ok=True)
    data[:split].tofile(out / "train.bin")
    data[split:].tofile(out / "val.bin")
    block, batch = 64, 12
    model = NanoGPT(len(chars), block, layers=4, heads=4, width=128)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.99),
    )

    def get_batch(split_name: str):
        arr = np.memmap(out / f"{split_name}.bin", dtype=np.uint16, mode="r")
        ix = torch.randint(len(arr) - block, (batch,))
        x = torch.stack([torch.from_numpy(arr[i : i + block].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(arr[i + 1 : i + 1 + block].astype(np.int64)) for i in ix])
        return x, y

    @torch.no_grad()
    def estimate_loss() -> dict:
        model.eval()
        losses = {
            s: float(np.mean([model(*get_batch(s))[1].item() for _ in range(20)]))
            for s in ("train", "val")
        }
        model.train()
        return losses

    best, history = 1e9, []
    it = 0
    while True:
        for group in optimizer.param_groups:
            group["lr"] = nanogpt_lr(it)
        if it % 250 == 0:
            losses = estimate_loss()
            history.append({"iter": it, **losses, "seconds": round(time.perf_counter() - start, 1)})
            if losses["val"] < best and it > 0:
                best = losses["val"]
                torch.save(
                    {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                    out / "ckpt.pt",
                )
        x, y = get_batch("train")
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        it += 1
        if it > 2000:
            break
    wall = time.perf_counter() - start
    model.eval()
    valid = np.memmap(out / "val.bin", dtype=np.uint16, mode="r")
    return {
        "wall_seconds": round(wall, 1),
        "own_estimate_val_loss": history[-1]["val"],
        "full_validation_loss": full_validation_loss(
            lambda w: model(w[:, :-1], w[:, 1:])[0], valid, block
        ),
        "history": history,
    }


@torch.no_grad()
def full_validation_loss(logits_of, tokens: np.ndarray, block: int) -> float:
    """Mean loss over the whole validation split in back-to-back windows of `block`."""
    total, count = 0.0, 0
    for start in range(0, len(tokens) - block - 1, block * 32):
        starts = range(start, min(start + block * 32, len(tokens) - block - 1), block)
        w = torch.from_numpy(np.stack([tokens[s : s + block + 1] for s in starts]).astype(np.int64))
        logits = logits_of(w)
        total += float(F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum"))
        count += w[:, 1:].numel()
    return total / count


# ---- genlearn ----------------------------------------------------------------------------------
def run_genlearn(out: Path, seed: int = 0) -> dict:
    """`genlearn train gpt` as a user runs it; the wall time ends at its last checkpoint."""
    start_wall = time.time()
    command = [sys.executable, "-m", "genlearn", "train", "gpt", "--data", "shakespeare",
               *GENLEARN_OPTIONS, "--seed", str(seed), "--runs-dir", str(out),
               "--device", "cpu"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    run = Path(done.stdout.strip().splitlines()[-1].removeprefix("run: "))
    wall = (run / "checkpoint.safetensors").stat().st_mtime - start_wall
    from genlearn.data.text import TokenArrays
    from genlearn.language import load_language_model

    model, _, _ = load_language_model(run, "cpu")
    valid = TokenArrays.open(run / "tokens", model.config.vocab_size).validation
    return {
        "wall_seconds": round(wall, 1),
        "full_validation_loss": full_validation_loss(
            lambda w: model.logits(w[:, :-1]), valid, model.config.context
        ),
        "run": str(run),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-gpt-shakespeare"))
    parser.add_argument("--role", choices=["nanogpt"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    from genlearn.data.text import corpus_files

    text_path = corpus_files("shakespeare")[0]
    if args.role == "nanogpt":  # the peer in its own process, like genlearn's
        print(json.dumps(run_nanogpt(text_path, args.out / "nanogpt")))
        return
    results: dict[str, list] = {"nanogpt": [], "genlearn": []}
    for round_index in range(args.rounds):
        peer = subprocess.run(
            [sys.executable, __file__, "--role", "nanogpt", "--out", str(args.out)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results["nanogpt"].append(json.loads(peer.stdout.strip().splitlines()[-1]))
        print("nanogpt", json.dumps(results["nanogpt"][-1]), flush=True)
        results["genlearn"].append(run_genlearn(args.out, seed=round_index))
        print("genlearn", json.dumps(results["genlearn"][-1]), flush=True)
    summary = {
        name: {
            "wall_seconds": statistics.median(r["wall_seconds"] for r in runs),
            "full_validation_loss": round(
                statistics.median(r["full_validation_loss"] for r in runs), 4
            ),
        }
        for name, runs in results.items()
    }
    summary["nanogpt"]["own_estimate_val_loss"] = round(
        statistics.median(r["own_estimate_val_loss"] for r in results["nanogpt"]), 4
    )
    for name, runs in results.items():
        summary[name]["each_round"] = [
            [r["wall_seconds"], round(r["full_validation_loss"], 4)] for r in runs
        ]
    summary["time_ratio"] = round(
        summary["genlearn"]["wall_seconds"] / summary["nanogpt"]["wall_seconds"], 3
    )
    summary["genlearn_reaches_nanogpt_loss"] = (
        summary["genlearn"]["full_validation_loss"] <= summary["nanogpt"]["full_validation_loss"]
    )
    summary["genlearn_at_most_1.8857"] = summary["genlearn"]["full_validation_loss"] <= 1.8857
    summary["genlearn_options"] = " ".join(GENLEARN_OPTIONS) or "defaults"
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
