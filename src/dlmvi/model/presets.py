"""Named training presets: the published configuration and a fast one for demos and CPUs.

A preset fixes the network's shape and the default optimisation settings; a
:class:`dlmvi.train.config.TrainConfig` may override epochs, batch size and learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlmvi.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """Network shape and optimisation defaults.

    Attributes:
        name: preset name.
        input_size: side of the network's input patch, pixels.
        stem_width, widths, blocks: see :class:`dlmvi.model.network.NetworkConfig`.
        epochs: maximum training epochs.
        batch_size: patients (slice combinations) per optimisation step.
        lr: Adam's initial learning rate.
        patience: epochs without improvement of the validation loss before stopping
            (0: never stop early).
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


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        input_size=320,
        stem_width=64,
        widths=(64, 128),
        blocks=(6, 6),
        epochs=200,
        batch_size=2,
        lr=0.1,  # as published; unusually high for Adam
        patience=0,
        description="the published configuration: 320 px, 6+6 bottlenecks, 200 epochs, batch 2, Adam lr 0.1",
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
    """The preset called ``name`` (``"paper"`` or ``"fast"``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
