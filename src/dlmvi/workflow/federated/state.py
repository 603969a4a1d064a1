"""The coordinator's resumable state: the global model after its last completed round.

``RUN/federation/`` holds ``state.json`` (round, the federation's harmonisation, the sites, the
history of every round) and ``global.safetensors`` (the weights), each written atomically, the
JSON last: a coordinator killed at any moment restarts (``dlmvi federated run`` on the same
``--out``) from the last round whose state was written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlmvi.errors import ConfigError
from dlmvi.io.atomic import atomic_path, write_json

#: What must not change between a run and its resumption.
SAME_KEYS = ("sites", "local_epochs", "algorithm", "mu", "seed", "preset", "sequences", "classes", "harmonization",
             "folds", "fold", "network", "batch_size", "lr")


@dataclass
class FederationState:
    """Attributes:
        round: last completed round (0: none).
        weights: the global model after it.
        harmonization: the federation's fitted harmonisation document (or None).
        history: one entry per completed round (sites, bytes, seconds, losses).
        config: the federation's configuration.
    """

    round: int
    weights: dict
    harmonization: dict | None
    config: dict
    history: list = field(default_factory=list)
    summaries: dict = field(default_factory=dict)


def state_dir(out) -> Path:
    return Path(out) / "federation"


def save_state(out, st: FederationState) -> None:
    """Write the weights, then the JSON (which names the weights' hash)."""
    import hashlib

    from safetensors.numpy import save_file

    folder = state_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v) for k, v in st.weights.items()}
    with atomic_path(folder / "global.safetensors") as tmp:
        save_file(arrays, str(tmp))
    digest = hashlib.sha256((folder / "global.safetensors").read_bytes()).hexdigest()
    write_json(folder / "state.json", {"round": st.round, "harmonization": st.harmonization, "config": st.config,
                                       "history": st.history, "summaries": st.summaries, "weights_sha256": digest})


def load_state(out, config: dict) -> FederationState | None:
    """The saved state of ``out``, or None; refused when the federation's settings changed."""
    import hashlib

    from safetensors.numpy import load_file

    folder = state_dir(out)
    if not (folder / "state.json").is_file():
        return None
    doc = json.loads((folder / "state.json").read_text())
    changed = [k for k in SAME_KEYS if doc["config"].get(k) != config.get(k)]
    if changed:
        raise ConfigError(f"{out} holds a federation run with other settings ({', '.join(changed)}); resume it with "
                          "the same fed.toml (only rounds and timeouts may change) or choose another --out")
    data = (folder / "global.safetensors").read_bytes()
    if hashlib.sha256(data).hexdigest() != doc["weights_sha256"]:
        raise ConfigError(f"{folder}: global.safetensors does not match state.json (an interrupted save); "
                          "remove the folder to start the federation again")
    return FederationState(doc["round"], load_file(str(folder / "global.safetensors")), doc["harmonization"],
                           doc["config"], doc["history"], doc.get("summaries", {}))


__all__ = ["FederationState", "save_state", "load_state", "state_dir"]
