"""Checkpoints: safetensors weights plus a JSON file with the full configuration.

A checkpoint ``NAME`` is up to three files in one folder::

    NAME.json                 format, dlmvi/torch versions, network configuration (the
                              constructor arguments of :func:`build_network`), training
                              configuration, the cache's PrepareConfig, sequences, classes,
                              normalisation, the split (patient ids per partition), epoch
    NAME.safetensors          model weights (and batch-norm statistics)
    NAME.optim.safetensors    Adam state, for resuming (optional)

Loading never unpickles: tensors come from safetensors, everything else from JSON. A pickle
checkpoint (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from dlmvi.errors import ModelError
from dlmvi.io.atomic import atomic_path, write_json
from dlmvi.layout import TrainLayout
from dlmvi.model.network import MultiSequenceNet, NetworkConfig, build_network

CHECKPOINT_FORMAT = "dlmvi-checkpoint/1"
#: Suffixes of pickle-based files (PyTorch, scikit-learn): refused, since loading them runs code.
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar", ".joblib"})


def refuse_pickle(path, what: str) -> None:
    """Raise ModelError when ``path`` (a file, or a folder holding only pickles) is a pickle.

    Args:
        path: the file or folder the user gave.
        what: what a dlmvi model looks like instead, for the message.
    """
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(f"{path}: pickle files ({path.suffix}) are refused because loading them can run "
                         f"arbitrary code; {what}")
    if path.is_dir():
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles and not any(p.suffix == ".json" for p in path.iterdir()):
            raise ModelError(f"{path}: holds pickle file(s) {', '.join(pickles)} and no dlmvi model; pickle "
                             f"files are refused because loading them can run arbitrary code; {what}")


def read_network(net_cfg: NetworkConfig, weights: Path, doc: dict, json_path: Path) -> MultiSequenceNet:
    """Build the network of ``net_cfg`` and load its weights; the one loader of dlmvi.

    The network is built on the meta device (no wasted random initialisation) and adopts the
    tensors of the safetensors file (:func:`read_state`).

    Raises:
        InconsistentCheckpointError: the weights were saved with another JSON (interrupted save,
            mixed folders).
        ModelError: unreadable weights, or weights that do not fit the network.
    """
    return adopt(build_network, net_cfg, read_state(weights, doc, json_path), weights, json_path)


def adopt(builder, net_cfg: NetworkConfig, state: dict, weights: Path, json_path: Path, prefix: str = ""):
    """``builder(net_cfg)`` built on the meta device, adopting ``state`` (the tensors whose names
    start with ``prefix``, all of them), in eval mode.

    Raises:
        ModelError: the tensors do not fit the module.
    """
    import torch

    with torch.device("meta"):
        module = builder(net_cfg)
    try:
        module.load_state_dict({k: v for k, v in state.items() if k.startswith(prefix)}, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights}: the weights do not fit the network described in {json_path.name}: {exc}") from None
    return module.eval()


def read_state(weights: Path, doc: dict, json_path: Path) -> dict:
    """The tensors of a safetensors file that belongs to ``doc``: its content hash
    (``doc["weights_sha256"]``, stored in the file's metadata at save time) must match, and when
    ``doc["weights"]["file_sha256"]`` records the file's checksum (exported models; an integrity
    check of the bytes, not the weights' identity) so must that.

    Raises:
        InconsistentCheckpointError: the weights were saved with another JSON.
        ModelError: unreadable weights.
    """
    import hashlib

    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    try:
        data = weights.read_bytes()
        state = load_bytes(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights}: not a readable safetensors file ({exc})") from None
    file_info = doc.get("weights") or {}
    digest = file_info.get("file_sha256") or file_info.get("sha256")  # "sha256": model folders before 0.x
    if digest and hashlib.sha256(data).hexdigest() != digest:
        raise InconsistentCheckpointError(
            f"{weights}: the weights do not match {json_path.name} (checksum differs); the folder was "
            "modified or mixes two saves; re-export or retrain the model")
    _check_pair(json_path, weights, doc)
    return state


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network and everything needed to use or resume it.

    Attributes:
        model: the network (eval mode), on CPU.
        network: its configuration.
        meta: the whole JSON document (training config, prepare config, split, epoch, ...).
        optimizer_state: Adam's ``state_dict`` when saved and requested, else ``None``.
        path: the JSON file.
    """

    model: MultiSequenceNet
    network: NetworkConfig
    meta: dict
    optimizer_state: dict | None = None
    path: Path | None = None

    @property
    def sequences(self) -> tuple[str, ...]:
        return tuple(self.meta["sequences"])

    @property
    def classes(self) -> int:
        return int(self.network.n_classes)

    @property
    def prepare(self):
        """The :class:`~dlmvi.preprocess.cache.PrepareConfig` of the training cache (or None)."""
        from dlmvi.preprocess.cache import PrepareConfig

        p = self.meta.get("prepare")
        return PrepareConfig.from_dict(p) if p else None


def _stem(path) -> Path:
    """Checkpoint stem from a folder, ``NAME``, ``NAME.json`` or ``NAME.safetensors``."""
    path = Path(path)
    refuse_pickle(path, "dlmvi checkpoints are NAME.json + NAME.safetensors")
    if path.is_dir():
        for name in ("model", "best", "last"):
            if (path / f"{name}.json").is_file():
                return path / name
        final = TrainLayout(path).final
        if (final / "model.json").is_file():
            return final / "model"
        raise ModelError(f"{path}: no checkpoint (model.json) found in this folder; is it a training run?")
    name = path.name
    for suffix in (".optim.safetensors", ".safetensors", ".json"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path


def save_checkpoint(stem, model: torch.nn.Module, meta: dict, optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write ``stem.safetensors``, ``stem.optim.safetensors`` (if ``optimizer``) and ``stem.json``.

    Args:
        stem: path without extension (``RUN/fold_0/last``).
        model: the network (a DistributedDataParallel wrapper is unwrapped).
        meta: JSON-able description; must contain ``network`` (``NetworkConfig.to_dict()``)
            and ``sequences``. ``format`` and versions are added.
        optimizer: its state is saved for resuming.

    The JSON is written last, so a checkpoint whose JSON exists is complete.
    """
    from safetensors.torch import save_file

    import dlmvi

    stem = Path(stem)
    model = getattr(model, "module", model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # A content hash pairs the JSON with its weights: when an overwrite is interrupted between
    # the two renames, loading notices the mismatch instead of mixing two epochs.
    token = _state_hash(state)
    with atomic_path(stem.with_name(stem.name + ".safetensors")) as tmp:
        save_file(state, str(tmp), metadata={"dlmvi_weights_sha256": token})
    doc = {"format": CHECKPOINT_FORMAT, "dlmvi_version": dlmvi.__version__, "torch_version": torch.__version__,
           "weights_sha256": token}
    doc.update(meta)
    if optimizer is not None:
        tensors, groups = _flatten_optimizer(optimizer.state_dict())
        with atomic_path(stem.with_name(stem.name + ".optim.safetensors")) as tmp:
            save_file(tensors, str(tmp), metadata={"dlmvi_weights_sha256": token})
        doc["optimizer"] = {"type": type(optimizer).__name__, "param_groups": groups}
    write_json(stem.with_name(stem.name + ".json"), doc)
    return stem.with_name(stem.name + ".json")


def load_checkpoint(path, with_optimizer: bool = False) -> Checkpoint:
    """Load a checkpoint without unpickling anything.

    Args:
        path: a run folder (uses ``final/model``), a checkpoint folder, ``NAME``,
            ``NAME.json`` or ``NAME.safetensors``.
        with_optimizer: also load the optimizer state (for resuming).

    Raises:
        ModelError: missing files, a pickle file, an unknown format, or settings this
            version of dlmvi cannot honour.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    stem = _stem(path)
    jpath = stem.with_name(stem.name + ".json")
    wpath = stem.with_name(stem.name + ".safetensors")
    if not jpath.is_file() or not wpath.is_file():
        raise ModelError(
            f"checkpoint {stem}: expected {jpath.name} and {wpath.name} in {stem.parent}; "
            "train a model with `dlmvi train` first"
        )
    try:
        meta = json.loads(jpath.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{jpath}: not valid JSON ({exc})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(
            f"{jpath}: checkpoint format {meta.get('format')!r} is not {CHECKPOINT_FORMAT!r}; "
            "it was written by another version of dlmvi that this version cannot read"
        )
    if "network" not in meta or "sequences" not in meta:
        raise ModelError(f"{jpath}: the checkpoint lacks its network configuration or sequences")
    net_cfg = NetworkConfig.from_dict(meta["network"])
    if len(meta["sequences"]) != net_cfg.n_sequences:
        raise ModelError(f"{jpath}: {len(meta['sequences'])} sequences listed but the network fuses {net_cfg.n_sequences}")
    model = read_network(net_cfg, wpath, meta, jpath)
    opt_state = None
    if with_optimizer and "optimizer" in meta:
        opath = stem.with_name(stem.name + ".optim.safetensors")
        if not opath.is_file():
            raise ModelError(f"{opath}: optimizer state missing; cannot resume from {jpath}")
        try:
            tensors = load_file(str(opath))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{opath}: not a readable safetensors file ({exc})") from None
        _check_pair(jpath, opath, meta)
        opt_state = _unflatten_optimizer(tensors, meta["optimizer"]["param_groups"])
    return Checkpoint(model=model, network=net_cfg, meta=meta, optimizer_state=opt_state, path=jpath)


class InconsistentCheckpointError(ModelError):
    """The JSON and the weights of a checkpoint come from different saves (interrupted write)."""


def _state_hash(state: dict) -> str:
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].numpy().tobytes() if state[k].dtype != torch.bfloat16 else state[k].float().numpy().tobytes())
    return h.hexdigest()


def _check_pair(jpath: Path, tpath: Path, meta: dict) -> None:
    """Refuse weights that were not saved together with this JSON."""
    from safetensors import safe_open

    want = meta.get("weights_sha256")
    if want is None:  # checkpoints written before the pairing existed
        return
    with safe_open(str(tpath), framework="pt") as f:
        got = (f.metadata() or {}).get("dlmvi_weights_sha256")
    if got != want:
        raise InconsistentCheckpointError(
            f"{tpath} does not belong to {jpath.name} (a save was interrupted between the two files); "
            "this checkpoint cannot be used - retrain, or resume from an earlier one"
        )


def checkpoint_exists(stem) -> bool:
    """True when ``stem.json`` (written last) and ``stem.safetensors`` exist."""
    stem = Path(stem)
    return stem.with_name(stem.name + ".json").is_file() and stem.with_name(stem.name + ".safetensors").is_file()


def _flatten_optimizer(sd: dict) -> tuple[dict, list]:
    tensors = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            t = val if torch.is_tensor(val) else torch.tensor(val)
            tensors[f"state.{pid}.{key}"] = t.detach().cpu().contiguous()
    groups = []
    for g in sd["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return tensors, groups


def _unflatten_optimizer(tensors: dict, groups: list) -> dict:
    state: dict = {}
    for name, t in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = t
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}
