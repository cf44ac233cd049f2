"""The training loop: config file in, checkpoints, logs, validation and plots out.

Resumable: a checkpoint holds the model, optimizer, scheduler, step and the data
stream's position, so ``--resume`` continues where an interrupted run stopped (Ctrl-C or
SIGTERM write a checkpoint before exiting). Progress and losses go to stderr and to
``log.jsonl``; validation results to ``validation.jsonl``; ``curves.png`` plots both.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..core.errors import InputError
from ..core.merge import merge
from ..core.types import AnchorPair, Exposure, Frame, FrameGroup, Role
from ..data.dataset import SimulatedWindows
from ..models.location_io import target
from .checkpoint import load_into, read_checkpoint, save_checkpoint
from .tasks import LossWeights, make_task, sample_to_device

#: Procedural scene seeds of the validation windows, and of the training windows: disjoint
#: ranges, both above data.dataset.RESERVED_SEEDS (the evaluation scenes' seeds).
VALIDATION_SEEDS = (1_000_000, 1_000_100)
TRAINING_SEEDS = (1_100_000, 2**31 - 1)


@dataclass(frozen=True)
class DataConfig:
    seed: int = 0
    T: int = 5  # noqa: N815 - the papers' name
    crop: int = 96
    batch_size: int = 4
    windows_per_sequence: int = 2
    workers: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """A training run; every field can be set in the YAML config file."""

    model: str = "location"
    variant: str = "lite"
    overrides: dict = field(default_factory=dict)
    steps: int = 20000
    lr: float = 2e-4
    lr_min: float = 1e-6
    warmup_steps: int = 200
    grad_clip: float = 1.0
    loss: LossWeights = field(default_factory=LossWeights)
    data: DataConfig = field(default_factory=DataConfig)
    validate_every: int = 500
    validation_windows: int = 24
    checkpoint_every: int = 250
    threads: int = 0

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read training config {path}: {str(exc).splitlines()[0]}") from exc
        try:
            loss = LossWeights(**raw.pop("loss", {}))
            data = DataConfig(**raw.pop("data", {}))
            return cls(loss=loss, data=data, **raw)
        except TypeError as exc:
            raise InputError(f"training config {path}: {exc}") from exc


class Trainer:
    """Runs a TrainConfig into an output folder."""

    def __init__(self, config: TrainConfig, out: Path) -> None:
        self.config = config
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.data.seed)
        self.task = make_task(config.model, config.variant, config.overrides, config.loss)
        self.model = self.task.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.step = 0
        self._stop = False
        self._val_cache: list[dict[str, torch.Tensor]] | None = None
        self._classical_psnr: float | None = None

    # ------------------------------------------------------------------ schedule
    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay from lr to lr_min (the papers decay to 1e-6)."""
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        progress = min(1.0, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps))
        return c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * progress))

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "last.pt"

    def save(self) -> None:
        save_checkpoint(self.checkpoint_path, self.config.model, self.model, self.task.config,
                        optimizer=self.optimizer.state_dict(), step=self.step,
                        train_config=_jsonable(asdict(self.config)),
                        torch_rng=torch.get_rng_state())

    def resume(self) -> bool:
        if not self.checkpoint_path.is_file():
            return False
        blob = read_checkpoint(self.checkpoint_path)
        load_into(self.model, blob, self.checkpoint_path)
        self.optimizer.load_state_dict(blob["optimizer"])
        self.step = int(blob["step"])
        torch.set_rng_state(blob["torch_rng"])
        return True

    # ------------------------------------------------------------------ data
    def _stream(self) -> Any:
        d = self.config.data
        ds = SimulatedWindows(seed=d.seed, T=d.T, crop=d.crop, alt=self.config.loss.anchor_consistency > 0,
                              windows_per_sequence=d.windows_per_sequence, scene_seeds=TRAINING_SEEDS)
        # Resume exactly: skip the samples already used (sample k of the stream is a pure
        # function of (seed, k), so this costs nothing but index arithmetic).
        start = self.step * d.batch_size
        k = start
        while True:
            batch = [ds.sample(k + i) for i in range(d.batch_size)]
            k += d.batch_size
            yield {key: torch.stack([s[key] for s in batch]) for key in batch[0]}

    def validation_set(self) -> list[dict[str, torch.Tensor]]:
        if self._val_cache is None:
            d = self.config.data
            ds = SimulatedWindows(seed=12345, T=d.T, crop=128, alt=False, windows_per_sequence=1,
                                  scene_seeds=VALIDATION_SEEDS, flips=False, rotations=False)
            self._val_cache = [ds.sample(k) for k in range(self.config.validation_windows)]
        return self._val_cache

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        """Mean PSNR-mu (output domain, peak 1) of the model and of the classical merge."""
        self.model.eval()
        m = self.task.config.max_radiance
        psnrs = []
        with torch.no_grad():
            for sample in self.validation_set():
                batch = {k: v.unsqueeze(0) for k, v in sample.items()}
                y, gt = self.task.predict(batch)
                psnrs.append(_psnr(y.clamp(0, 1), gt))
        self.model.train()
        result = {"step": self.step, "psnr_mu": float(np.mean(psnrs))}
        if self._classical_psnr is None:
            self._classical_psnr = float(np.mean([_classical_psnr(s, m) for s in self.validation_set()]))
        result["classical_psnr_mu"] = self._classical_psnr
        return result

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False) -> dict[str, Any]:
        if resume and self.resume():
            print(f"resumed at step {self.step}", file=sys.stderr)
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def stop(signum: int, frame: Any) -> None:
            self._stop = True
            print("\nstopping after this step (checkpoint follows)", file=sys.stderr)

        for s in previous:
            signal.signal(s, stop)
        log = (self.out / "log.jsonl").open("a")
        val_log = (self.out / "validation.jsonl").open("a")
        stream = self._stream()
        start, start_step = time.perf_counter(), self.step
        last = {}
        try:
            while self.step < self.config.steps and not self._stop:
                lr = self.lr_at(self.step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = sample_to_device(next(stream), torch.device("cpu"))
                terms = self.task.losses(batch)
                self.optimizer.zero_grad(set_to_none=True)
                terms["total"].backward()
                grad = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
                self.optimizer.step()
                self.step += 1
                last = {k: float(v.detach()) for k, v in terms.items()}
                rate = (self.step - start_step) / (time.perf_counter() - start)
                log.write(json.dumps({"step": self.step, "lr": lr, "grad_norm": float(grad), **last}) + "\n")
                if self.step % 10 == 0 or self.step == 1:
                    eta = (self.config.steps - self.step) / max(rate, 1e-9)
                    print(f"step {self.step}/{self.config.steps} loss {last['total']:.4f} l1 {last['l1']:.4f} "
                          f"lr {lr:.2e} {rate:.2f} it/s eta {eta / 60:.0f} min", file=sys.stderr, flush=True)
                    log.flush()
                if self.step % self.config.checkpoint_every == 0:
                    self.save()
                if self.step % self.config.validate_every == 0 or self.step == self.config.steps:
                    val = self.validate()
                    val_log.write(json.dumps(val) + "\n")
                    val_log.flush()
                    print(f"validation at {self.step}: PSNR-mu {val['psnr_mu']:.2f} dB "
                          f"(classical {val['classical_psnr_mu']:.2f})", file=sys.stderr)
                    self.plot()
        finally:
            self.save()
            log.close()
            val_log.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        self.plot()
        return {"step": self.step, "finished": self.step >= self.config.steps, **last}

    def plot(self) -> None:
        """curves.png: training loss (smoothed) and validation PSNR-mu against steps."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [json.loads(line) for line in (self.out / "log.jsonl").read_text().splitlines() if line.strip()]
        vals = [json.loads(line) for line in (self.out / "validation.jsonl").read_text().splitlines()
                if line.strip()] if (self.out / "validation.jsonl").exists() else []
        if not rows:
            return
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
        steps = np.array([r["step"] for r in rows])
        total = np.array([r["total"] for r in rows])
        k = max(1, len(total) // 100)
        smooth = np.convolve(total, np.ones(k) / k, mode="valid")
        a.plot(steps[k - 1:], smooth)
        a.set_yscale("log")
        a.set_xlabel("step")
        a.set_ylabel("training loss")
        a.grid(alpha=0.3)
        if vals:
            b.plot([v["step"] for v in vals], [v["psnr_mu"] for v in vals], "o-", label=self.config.model)
            b.axhline(vals[-1]["classical_psnr_mu"], color="gray", linestyle="--", label="classical")
            b.legend()
        b.set_xlabel("step")
        b.set_ylabel("validation PSNR-mu (dB)")
        b.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.out / "curves.png")
        plt.close(fig)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 100.0 if mse == 0 else 10 * math.log10(1.0 / mse)


def _classical_psnr(sample: dict[str, torch.Tensor], max_radiance: float) -> float:
    """The classical merge of a validation window, scored like the model."""
    ref = sample["reference"].permute(0, 2, 3, 1).numpy()
    scales = sample["ref_scale"].numpy()
    low = Frame(sample["low"].permute(1, 2, 0).numpy().copy(), 0, Role.LOW, Exposure(float(sample["low_scale"])))
    high = Frame(sample["high"].permute(1, 2, 0).numpy().copy(), 0, Role.HIGH, Exposure(float(sample["high_scale"])))
    outs = []
    for t in range(ref.shape[0]):
        frame = Frame(np.ascontiguousarray(ref[t]), 0, Role.REFERENCE, Exposure(float(scales[t])))
        outs.append(merge(FrameGroup(frame, AnchorPair(low, high), 0.0)).hdr)
    hdr = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).unsqueeze(0)
    norm = sample["ref_scale"].mean().view(1)
    return _psnr(target(hdr, norm, max_radiance), target(sample["gt"].unsqueeze(0), norm, max_radiance))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
