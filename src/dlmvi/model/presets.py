"""Named training presets: the published configuration, one that trains stably, and a fast one.

A preset fixes the network's shape and the default optimisation settings; a
:class:`dlmvi.train.config.TrainConfig` may override any optimisation setting.

* ``paper``: the published network and optimisation as written (Adam, lr 0.1, batch 2).
  An lr of 0.1 is 100x Adam's usual one; ``benchmarks/preset_curves.py`` shows what it does.
* ``recommended``: the same published network (320 px, 6 + 6 bottlenecks, batch norm) with an
  optimisation that trains stably: AdamW (decoupled weight decay), a linear warm-up, cosine
  decay, gradient clipping and a larger effective batch through gradient accumulation
  (micro-batches of 8 patients keep batch-norm statistics sensible and fit an 8 GB GPU).
* ``fast``: a small network (64 px) that trains in minutes on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlmvi.errors import ConfigError

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Preset:
    """Network shape and optimisation defaults.

    Attributes:
        name: preset name.
        input_size: side of the network's input patch, pixels.
        stem_width, widths, blocks: see :class:`dlmvi.model.network.NetworkConfig`.
        epochs: maximum training epochs.
        batch_size: patients (slice combinations) per forward pass (a micro-batch when
            ``accumulate > 1``).
        lr: the optimiser's peak learning rate.
        patience: epochs without improvement of the validation loss before stopping
            (0: never stop early).
        optimizer: ``"adam"`` or ``"adamw"`` (decoupled weight decay).
        weight_decay: weight decay of the optimiser.
        schedule: ``"constant"`` learning rate or ``"cosine"`` decay to 0 over the epochs.
        warmup_epochs: epochs of linear warm-up from ~0 to ``lr`` (0: none).
        accumulate: micro-batches whose gradients are summed before one optimiser step
            (effective batch = ``batch_size * accumulate``, times the processes under torchrun).
        grad_clip: largest gradient norm (clipped above it; 0: no clipping).
    """

    name: str
    input_size: int
    stem_width: int
    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    epochs: int
    batch_size: int
    lr: float
    patience: int
    description: str = ""
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: int = 0
    accumulate: int = 1
    grad_clip: float = 0.0


#: The study's network: 320 px input, 7x7 stem of 64 filters, 6 + 6 bottlenecks of width 64/128.
PUBLISHED_NETWORK = {"input_size": 320, "stem_width": 64, "widths": (64, 128), "blocks": (6, 6)}

PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        **PUBLISHED_NETWORK,
        epochs=200,
        batch_size=2,
        lr=0.1,  # as published; unusually high for Adam
        patience=0,
        description="the published configuration: 320 px, 6+6 bottlenecks, 200 epochs, batch 2, Adam lr 0.1",
    ),
    "recommended": Preset(
        name="recommended",
        **PUBLISHED_NETWORK,
        epochs=100,
        batch_size=8,
        lr=1e-3,
        patience=0,
        optimizer="adamw",
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=5,
        accumulate=2,
        grad_clip=1.0,
        description=("the published network with a stable optimisation: AdamW lr 1e-3, weight decay 0.05, "
                     "5 warm-up epochs then cosine decay, batch 8 x 2 accumulated (16), gradient clipping at 1, "
                     "100 epochs"),
    ),
    "fast": Preset(
        name="fast",
        input_size=64,
        stem_width=16,
        widths=(16, 32),
        blocks=(1, 1),
        epochs=30,
        batch_size=16,
        lr=1e-3,
        patience=10,
        description="small and quick for demos on a laptop CPU: 64 px, 1+1 narrow bottlenecks, 30 epochs",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (``"paper"``, ``"recommended"`` or ``"fast"``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
