"""Mixed precision and memory layout of a training step.

* ``fp32``: plain float32.
* ``bf16``: the forward pass under :func:`torch.autocast` with bfloat16 (convolutions and
  matrix products in bf16, reductions and the loss in float32). Same exponent range as
  float32, so no loss scaling. CUDA GPUs from Ampere (compute capability 8.0) on, and CPUs
  (fast with AVX512-BF16/AMX; elsewhere emulated and slower than fp32).
* ``fp16``: autocast with float16 and :class:`torch.amp.GradScaler`, which multiplies the
  loss before ``backward`` so small gradients do not flush to zero, skips steps whose
  gradients overflowed and adapts the factor. For GPUs without bf16 (Volta, Turing, Pascal).

Weights, optimiser state and checkpoints stay float32 in every mode, so a checkpoint does
not depend on the precision it was trained in.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from dlmvi.errors import ConfigError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """How a training step computes on a device.

    Attributes:
        name: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device_type: ``"cpu"`` or ``"cuda"``.
    """

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    @property
    def autocasts(self) -> bool:
        return self.name != "fp32"

    @property
    def scales_loss(self) -> bool:
        return self.name == "fp16"

    def autocast(self):
        """Context manager for the forward pass (a no-op for fp32)."""
        if not self.autocasts:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled for fp16 only (disabled it passes everything through)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scales_loss)

    def to_dict(self) -> dict:
        return {"precision": self.name, "device_type": self.device_type,
                "autocast_dtype": str(self.dtype).replace("torch.", "") if self.autocasts else None,
                "grad_scaler": self.scales_loss}


def resolve_precision(name: str, device: torch.device) -> Precision:
    """Check that ``device`` can train in ``name`` and return the :class:`Precision`."""
    if name not in DTYPES:
        raise ConfigError(f"--precision must be one of {', '.join(DTYPES)}, got {name!r}")
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device}: dlmvi trains on 'cpu' or 'cuda'")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ConfigError(
            f"--precision bf16: the GPU {torch.cuda.get_device_name(device)} has no bfloat16 arithmetic "
            "(it needs compute capability 8.0, Ampere, or later); use --precision fp16 (loss-scaled) or fp32"
        )
    return Precision(name, device.type)


def prepare_model(model: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """Put the weights in channels-last layout and make the network hand its encoder
    channels-last batches (see :meth:`dlmvi.model.network.MultiSequenceNet.set_memory_format`)."""
    if channels_last:
        model.set_memory_format(torch.channels_last)
    return model


__all__ = ["Precision", "resolve_precision", "prepare_model", "DTYPES"]
