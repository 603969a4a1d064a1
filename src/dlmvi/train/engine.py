"""The training loop of one model: cross-entropy, best checkpoint, early stopping, resume.

:func:`fit` trains one network on a :class:`~dlmvi.train.data.CombinationDataset` and
writes into its own folder::

    DIR/log.csv                       one row per epoch: loss, accuracy, AUC (train, validation)
    DIR/model.{json,safetensors}      best checkpoint (lowest validation loss)
    DIR/last.{json,safetensors,optim.safetensors}
                                      state after the latest epoch, for resuming

Calling :func:`fit` again on the same folder resumes after the last finished epoch (every
random draw is seeded per epoch, so the resumed run follows the uninterrupted one exactly);
a finished folder is not retrained. Under ``torchrun`` (a process group is initialised, see
:func:`init_distributed`) the model is wrapped in DistributedDataParallel, every rank trains
on its own share of the patients, and only rank 0 writes.

One optimisation step (:class:`Stepper`) runs the forward pass in the configured precision
(:mod:`dlmvi.train.precision`), sums the gradients of ``accumulate`` micro-batches (weighted by
their sizes, so a step is the mean over its samples; DDP synchronises only on the last one),
optionally clips the gradient norm, and sets the learning rate of the schedule
(:func:`learning_rate`, a pure function of the step, so a resumed run follows the same
schedule). Batches come from :class:`~dlmvi.train.data.EpochLoader`: on a GPU with worker
processes and pinned memory, augmented on the GPU. Nothing in the step waits for the GPU: the
losses and probabilities of an epoch are read back once, at its end.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dlmvi.errors import ConfigError, ModelError
from dlmvi.io.atomic import write_csv
from dlmvi.model.checkpoint import (InconsistentCheckpointError, checkpoint_exists, load_checkpoint,
                                    save_checkpoint)
from dlmvi.model.inference import predict_arrays
from dlmvi.model.network import NetworkConfig, build_network
from dlmvi.train.config import EXECUTION_SETTINGS, TrainConfig, saved_training
from dlmvi.train.data import CombinationDataset
from dlmvi.train.precision import Precision, prepare_model, resolve_precision

LOG_COLUMNS = [
    "epoch", "train_loss", "train_acc", "train_auc", "val_loss", "val_acc", "val_auc",
    "best", "seconds",
]


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        model: the best network (eval mode, on CPU).
        best_epoch: epoch of the best checkpoint (1-based).
        best_val_loss: its validation loss (NaN without validation set).
        epochs_run: epochs trained in total (including those before a resume).
        log: the per-epoch log.
        folder: where it was written.
        resumed_from: epoch the run resumed after (0: fresh start).
    """

    model: torch.nn.Module
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    log: pd.DataFrame
    folder: Path
    resumed_from: int = 0


# --------------------------------------------------------------------------------------
# Devices and processes


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA GPU is available; use --device cpu")
    return dev


def init_distributed(device: str = "auto") -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK).

    Uses NCCL with CUDA (one GPU per local rank) and gloo on CPU. Returns (rank, world_size);
    (0, 1) when not launched by torchrun. Call it once, at the command line.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return dist_info()
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist_info()


def dist_info() -> tuple[int, int]:
    """(rank, world_size) of the current process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(obj, world: int):
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj, world: int):
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _average_buffers(model: torch.nn.Module):
    # Each rank updated its batch-norm statistics on its own patients; average them so that
    # every rank validates, saves and continues with the same model.
    import torch.distributed as dist

    world = dist.get_world_size()
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf /= world


# --------------------------------------------------------------------------------------
# Metrics


def classification_metrics(probs: np.ndarray, y: np.ndarray, weight=None) -> dict:
    """Cross-entropy loss, accuracy and AUC of MVI present (P(M1)+P(M2) for 3 classes)."""
    from sklearn.metrics import roc_auc_score

    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return {"loss": math.nan, "acc": math.nan, "auc": math.nan}
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)[y]
    loss = float(-(w * np.log(p_true)).sum() / w.sum())
    acc = float((probs.argmax(1) == y).mean())
    present = (y > 0).astype(int)
    auc = float(roc_auc_score(present, probs[:, 1:].sum(1))) if 0 < present.sum() < len(y) else math.nan
    return {"loss": loss, "acc": acc, "auc": auc}


def class_weights(labels, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (n_classes * n_c)`` (sklearn's "balanced")."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes)
    if (counts == 0).any():
        raise ConfigError(
            f"class weighting needs every class in the training patients; counts per class {counts.tolist()}"
        )
    return torch.tensor(len(labels) / (n_classes * counts), dtype=torch.float32)


# --------------------------------------------------------------------------------------
# Optimisation step


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW of a resolved configuration, at its peak learning rate."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def learning_rate(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate of optimisation step ``step`` (0-based) of ``total_steps``.

    Linear warm-up over ``cfg.warmup_epochs`` epochs (from ``lr / warm-up steps`` to ``lr``),
    then ``cfg.lr`` (constant) or a cosine decay from ``cfg.lr`` to 0 at ``total_steps``.
    """
    warm = int(cfg.warmup_epochs) * int(steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule != "cosine":
        return cfg.lr
    span = max(1, total_steps - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / span)))


@dataclass
class Stepper:
    """Optimisation steps from micro-batches: precision, loss scaling, accumulation, clipping.

    Attributes:
        net: what runs the forward pass (the model, or its DDP / compiled wrapper).
        model: the plain model (its parameters are clipped).
        optimizer: the optimiser.
        precision: see :mod:`dlmvi.train.precision`.
        grad_clip: largest gradient norm (0: no clipping).
        weight: class weights of the loss (``None``: unweighted).
        ddp: the DistributedDataParallel wrapper, whose ``no_sync`` skips the gradient
            all-reduce on all but the last micro-batch of a step.
    """

    net: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    precision: Precision
    grad_clip: float = 0.0
    weight: torch.Tensor | None = None
    ddp: torch.nn.Module | None = None

    def __post_init__(self):
        self.scaler = self.precision.grad_scaler()

    def micro_step(self, x: torch.Tensor, y: torch.Tensor, share: float, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one micro-batch; the optimiser steps after the ``last``.

        Args:
            share: the micro-batch's samples / the step's samples (1 without accumulation).

        Returns:
            (loss, logits), detached, float32, still on the device.
        """
        sync = self.ddp.no_sync() if (self.ddp is not None and not last) else contextlib.nullcontext()
        with sync:
            with self.precision.autocast():
                logits = self.net(x)
            loss = F.cross_entropy(logits.float(), y, weight=self.weight)
            self.scaler.scale(loss * share if share != 1 else loss).backward()
        if last:
            if self.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), logits.detach().float()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def step_groups(sizes: list[int], accumulate: int) -> list[list[int]]:
    """Batch sizes of an epoch grouped into optimisation steps of ``accumulate`` micro-batches."""
    return [sizes[i:i + accumulate] for i in range(0, len(sizes), accumulate)]


def auto_workers(device: torch.device, workers: int | None) -> int:
    """Loader processes: as configured, else 0 on a CPU and up to 4 per GPU process."""
    if workers is not None:
        return int(workers)
    if device.type != "cuda":
        return 0
    per_process = (os.cpu_count() or 2) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(4, per_process - 1))


def execution_doc(cfg: TrainConfig, device: torch.device, world: int, workers: int) -> dict:
    """How a model is trained (recorded in run.json and every checkpoint)."""
    return {"device": str(device), **resolve_precision(cfg.precision, device).to_dict(),
            "channels_last": cfg.channels_last, "compile": cfg.compile, "workers": workers,
            "pin_memory": device.type == "cuda", "world_size": world, "batch_size": cfg.batch_size,
            "accumulate": cfg.accumulate, "effective_batch": cfg.batch_size * cfg.accumulate * world,
            "torch": torch.__version__}


def compile_network(net: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` of the training network (its own function so that tests can swap the backend)."""
    return torch.compile(net)


# --------------------------------------------------------------------------------------
# The loop


def fit(
    train: CombinationDataset,
    val: tuple[np.ndarray, np.ndarray] | None,
    network: NetworkConfig,
    config: TrainConfig,
    folder,
    meta: dict | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    description: str = "training",
) -> FitResult:
    """Train one network, or resume it, or return it when already finished.

    Args:
        train: training samples (augmented slice combinations).
        val: validation (patches (N, k, n_slices, S, S), labels), evaluated on the first slice
            of each sequence as at test time, in float32; ``None``: no validation, the last
            epoch is kept.
        network: network configuration.
        config: training configuration (preset defaults are filled in here).
        folder: output folder of this model.
        meta: extra JSON saved in every checkpoint (sequences, classes, prepare config,
            normalisation, split, ...).
        seed: seed of the initial weights (default ``config.seed``).
        epochs: number of epochs (default ``config.epochs``); the learning-rate schedule
            spans them.
        on_epoch_end: called as ``f(epoch, log_row)`` after each epoch's checkpoint is saved
            (tests use it to simulate an interruption).
        description: label of the progress bar.
    """
    cfg = config.resolved()
    epochs = int(epochs or cfg.epochs)
    seed = cfg.seed if seed is None else int(seed)
    folder = Path(folder)
    rank, world = dist_info()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    _configure_torch(cfg, device)
    weight = class_weights(train.labels, network.n_classes) if cfg.class_weighting else None
    workers = auto_workers(device, cfg.workers)
    doc = {"network": network.to_dict(), "training": cfg.to_dict(), "epochs": epochs, "seed": seed,
           "sequences": list(train.sequences), "classes": network.n_classes,
           "execution": execution_doc(cfg, device, world, workers)}
    doc.update(meta or {})
    last, best = folder / "last", folder / "model"
    if val is not None:
        val = (np.asarray(val[0], dtype=np.float32), val[1])

    state = _start_or_resume(folder, last, best, doc, network, seed, description)
    if isinstance(state, FitResult):
        return state
    model, resumed_from = state.model, state.start
    model.to(device)
    prepare_model(model, cfg.channels_last)
    net, stepper = _build_stepper(model, cfg, device, world, precision, weight, state)
    if state.start:  # the best model so far, from its checkpoint when there is one
        state.best_state = (load_checkpoint(best).model.state_dict() if checkpoint_exists(best)
                            else {k: v.detach().clone() for k, v in model.state_dict().items()})
    loader = train.loader(cfg.batch_size, rank, world, workers=workers, pin_memory=device.type == "cuda")
    loop = _Loop(cfg, net, model, stepper, loader, step_groups(loader.sizes, cfg.accumulate), epochs,
                 device, rank, world, weight, val, doc, folder, precision, description)

    loop.run(state, on_epoch_end)
    model.load_state_dict(state.best_state)
    model.set_memory_format(torch.contiguous_format)
    model.cpu().eval()
    rows = state.rows
    return FitResult(model, state.best_epoch, state.best_loss if state.best_loss < math.inf else math.nan,
                     rows[-1]["epoch"] if rows else 0, pd.DataFrame(rows, columns=LOG_COLUMNS), folder,
                     resumed_from=resumed_from)


def _configure_torch(cfg: TrainConfig, device: torch.device) -> None:
    if device.type == "cuda":
        # fixed input shapes: let cuDNN time its convolution algorithms once and keep the fastest
        # (GPU results are reproducible to rounding, not bit for bit, with or without this)
        torch.backends.cudnn.benchmark = True
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)


@dataclass
class _State:
    """Where a training stands: its model, the epoch it starts after, the best so far, the log."""

    model: torch.nn.Module
    start: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad: int = 0
    rows: list = field(default_factory=list)
    opt_state: dict | None = None
    scaler_state: dict | None = None
    best_state: dict | None = None


def _start_or_resume(folder: Path, last: Path, best: Path, doc: dict, network: NetworkConfig, seed: int,
                     description: str) -> _State | FitResult:
    """The state to continue from ``last``, a new model, or the finished model's :class:`FitResult`."""
    resumable = checkpoint_exists(last)
    if resumable:
        try:
            ck = load_checkpoint(last, with_optimizer=True)
            if not ck.meta["progress"]["complete"] and checkpoint_exists(best):
                load_checkpoint(best)
        except InconsistentCheckpointError as exc:
            # Killed between writing weights and JSON: replaying exactly is impossible, so this
            # model starts again from scratch (slower, never wrong).
            import warnings

            # stacklevel 3: the warning names fit's caller, as when it was raised in fit
            warnings.warn(f"{description}: {exc}; restarting this model from epoch 1", stacklevel=3)
            resumable = False
    if not resumable:
        torch.manual_seed(seed)
        return _State(build_network(network))
    _check_same_run(ck.meta, doc, folder)
    prog = ck.meta["progress"]
    rows = _read_log(folder, prog["epoch"])
    if prog["complete"]:
        bck = load_checkpoint(best)
        return FitResult(bck.model, prog["best_epoch"], _nan(prog["best_val_loss"]), prog["epoch"],
                         pd.DataFrame(rows, columns=LOG_COLUMNS), folder, resumed_from=prog["epoch"])
    return _State(ck.model, start=prog["epoch"], best_loss=_nan(prog["best_val_loss"], default=math.inf),
                  best_epoch=prog["best_epoch"], bad=prog["bad_epochs"], rows=rows,
                  opt_state=ck.optimizer_state, scaler_state=ck.meta.get("grad_scaler"))


def _build_stepper(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, world: int,
                   precision: Precision, weight: torch.Tensor | None, state: _State):
    """(the network that runs the forward pass, its :class:`Stepper`), with a resumed optimiser."""
    optimizer = make_optimizer(model.parameters(), cfg)
    if state.opt_state is not None:
        optimizer.load_state_dict(state.opt_state)
    net = ddp = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = ddp = DDP(model, device_ids=[device.index or 0] if device.type == "cuda" else None)
    if cfg.compile:
        net = compile_network(net)
    stepper = Stepper(net, model, optimizer, precision, cfg.grad_clip,
                      weight.to(device) if weight is not None else None, ddp if world > 1 else None)
    if state.scaler_state and precision.scales_loss:
        stepper.scaler.load_state_dict(state.scaler_state)
    return net, stepper


@dataclass
class _Loop:
    """The epochs of :func:`fit`: their steps, metrics, log rows and checkpoints."""

    cfg: TrainConfig
    net: torch.nn.Module
    model: torch.nn.Module
    stepper: Stepper
    loader: object
    groups: list
    epochs: int
    device: torch.device
    rank: int
    world: int
    weight: torch.Tensor | None
    val: tuple | None
    doc: dict
    folder: Path
    precision: Precision
    description: str

    def run(self, state: _State, on_epoch_end) -> None:
        """Train the epochs after ``state.start`` (or until early stopping), updating ``state``."""
        description = self.description
        progress = _progress(self.cfg.progress and self.rank == 0)
        task = progress.add_task(description, total=self.epochs, completed=state.start) if progress else None
        try:
            for epoch in range(state.start + 1, self.epochs + 1):
                t0 = time.perf_counter()
                tr, va = self.train_epoch(epoch)
                improved, stop, row = self.record(epoch, state, tr, va, t0)
                self.save(epoch, state, improved, stop)
                if progress:
                    progress.update(task, completed=epoch, description=(
                        f"{description} loss {tr['loss']:.3f}" + (f" val {va['loss']:.3f} AUC {va['auc']:.2f}"
                                                                  if not math.isnan(va["loss"]) else "")))
                if on_epoch_end is not None:
                    on_epoch_end(epoch, row)
                if stop:
                    break
        finally:
            self.loader.close()
            if progress:
                progress.stop()

    def train_epoch(self, epoch: int) -> tuple[dict, dict]:
        """Train one epoch; returns its (training, validation) metrics."""
        cfg, groups = self.cfg, self.groups
        steps_per_epoch = len(groups)
        total_steps = steps_per_epoch * self.epochs
        self.net.train()
        probs, ys, losses = [], [], []
        for i, (x, y, _) in enumerate(self.loader.epoch(epoch, self.device)):
            g, pos = divmod(i, cfg.accumulate)
            group = groups[g]
            if pos == 0:
                self.stepper.set_lr(learning_rate(cfg, (epoch - 1) * steps_per_epoch + g, total_steps, steps_per_epoch))
            loss, logits = self.stepper.micro_step(x, y, len(y) / sum(group), last=pos == len(group) - 1)
            losses.append(loss)
            probs.append(torch.softmax(logits, 1))
            ys.append(y)
        losses_np = torch.stack(losses).cpu().numpy()  # one read-back per epoch
        if not np.isfinite(losses_np).all():
            raise ModelError(
                f"{self.description}: training diverged at epoch {epoch} (loss {losses_np[~np.isfinite(losses_np)][0]}); "
                f"lower the learning rate (--lr, now {cfg.lr})"
            )
        if self.world > 1:
            _average_buffers(self.model)
        parts = _gather((torch.cat(probs).cpu().numpy(), torch.cat(ys).cpu().numpy()), self.world)
        weight = None if self.weight is None else self.weight.numpy()
        tr = classification_metrics(np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts]),
                                    weight)
        val = self.val
        if val is not None and len(val[1]):
            vp, _ = predict_arrays(self.model, val[0], tta=False, batch_size=64, device=self.device)
            va = classification_metrics(vp, val[1], weight)
        else:
            va = {"loss": math.nan, "acc": math.nan, "auc": math.nan}
        return tr, va

    def record(self, epoch: int, state: _State, tr: dict, va: dict, t0: float) -> tuple[bool, bool, dict]:
        """Update the best model and the log; returns (improved, stop, log row)."""
        improved = (va["loss"] < state.best_loss) if not math.isnan(va["loss"]) else True
        improved = _broadcast(improved, self.world)  # one decision for every rank
        if improved:
            state.best_loss = va["loss"] if not math.isnan(va["loss"]) else math.inf
            state.best_epoch, state.bad = epoch, 0
            state.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            state.bad += 1
        stop = self.cfg.patience > 0 and state.bad >= self.cfg.patience
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "train_auc": tr["auc"],
               "val_loss": va["loss"], "val_acc": va["acc"], "val_auc": va["auc"],
               "best": int(improved), "seconds": round(time.perf_counter() - t0, 3)}
        state.rows.append(row)
        return improved, stop, row

    def save(self, epoch: int, state: _State, improved: bool, stop: bool) -> None:
        """Rank 0 writes the log and the checkpoints of an epoch; every rank waits for it."""
        if self.rank == 0:
            ck_meta = dict(self.doc)
            if self.precision.scales_loss:
                ck_meta["grad_scaler"] = self.stepper.scaler.state_dict()
            if improved:
                ck_meta["progress"] = _progress_doc(epoch, state.best_epoch, state.best_loss, state.bad, True, self.val)
                save_checkpoint(self.folder / "model", self.model, ck_meta)
            write_csv(self.folder / "log.csv", pd.DataFrame(state.rows, columns=LOG_COLUMNS))
            ck_meta["progress"] = _progress_doc(epoch, state.best_epoch, state.best_loss, state.bad,
                                                stop or epoch == self.epochs, self.val)
            save_checkpoint(self.folder / "last", self.model, ck_meta, self.stepper.optimizer)
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def is_finished(folder) -> bool:
    """True when :func:`fit` finished the model in ``folder`` (its last checkpoint says so)."""
    import json

    path = Path(folder) / "last.json"
    if not path.is_file() or not checkpoint_exists(Path(folder) / "model"):
        return False
    try:
        return bool(json.loads(path.read_text()).get("progress", {}).get("complete", False))
    except (json.JSONDecodeError, OSError):
        return False


def _progress_doc(epoch, best_epoch, best_loss, bad, complete, val) -> dict:
    return {"epoch": epoch, "best_epoch": best_epoch,
            "best_val_loss": None if (val is None or best_loss == math.inf) else best_loss,
            "bad_epochs": bad, "complete": bool(complete)}


def _nan(v, default=math.nan):
    return default if v is None else float(v)


def _read_log(folder: Path, upto: int) -> list[dict]:
    path = folder / "log.csv"
    if not path.is_file():
        return []
    log = pd.read_csv(path)
    return log[log["epoch"] <= upto].to_dict("records")


_SAME_KEYS = ("network", "training", "epochs", "seed", "sequences", "classes", "split")


def _check_same_run(saved: dict, now: dict, folder: Path):
    for key in _SAME_KEYS:
        a, b = saved.get(key), now.get(key)
        if key == "training" and a and b:
            # settings that do not change the result may differ on resume; a setting added by
            # a newer dlmvi counts as the value the older version used
            a, b = saved_training(a), saved_training(b)
            names = (set(a) | set(b)) - EXECUTION_SETTINGS
            a = {k: a.get(k) for k in names}
            b = {k: b.get(k) for k in names}
        if a != b:
            raise ModelError(
                f"{folder} holds an unfinished training with a different {key} setting; "
                "continue it with the same settings or choose another --out folder"
            )


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
                 TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
    p.start()
    return p
