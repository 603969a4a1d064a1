"""The study's multi-branch CNN (DL-MVI).

One encoder, shared by every MRI sequence, turns a single-slice patch into a feature vector:
7x7 convolution (stride 2) -> normalisation -> ReLU -> 3x3 max pooling (stride 2), then
``blocks[0]`` ResNet bottleneck blocks of width ``widths[0]``, ``blocks[1]`` of width
``widths[1]`` (stride 2 at the start of every stage after the first), expansion 4, and global
average pooling. The per-sequence vectors are concatenated and one fully connected layer gives
the class logits (softmax over 2 or 3 classes).

The bottleneck block is MONAI's :class:`monai.networks.nets.resnet.ResNetBottleneck`
(``spatial_dims=2``), not a copy. :func:`build_network` is the only constructor used by
training and inference; checkpoints store the :class:`NetworkConfig` it takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from dlmvi.errors import ConfigError, ModelError

#: Channel expansion of MONAI's bottleneck block (``ResNetBottleneck.expansion``; checked when
#: the encoder is built). A constant here so that the configuration, and the fusion layer that
#: the ONNX backends use, need not import MONAI (seconds of a command's start-up).
EXPANSION = 4


@dataclass(frozen=True)
class NetworkConfig:
    """Constructor arguments of the network (saved in every checkpoint).

    Attributes:
        in_channels: channels of one sequence's input image (1: one slice).
        stem_width: filters of the 7x7 stem convolution (64 in the study).
        widths: bottleneck width of each stage (64, 128 in the study); a stage outputs
            ``4 * width`` channels, so the feature vector has ``4 * widths[-1]`` entries.
        blocks: bottleneck blocks per stage (6, 6 in the study).
        n_sequences: number of MRI sequences fused (branches sharing the encoder).
        n_classes: 2 (MVI absent/present) or 3 (M0/M1/M2).
        input_size: side of the square input patch in pixels (320 in the study).
        norm: normalisation layer (MONAI name: ``"batch"``, ``"instance"``, ``"group"``).
    """

    in_channels: int = 1
    stem_width: int = 64
    widths: tuple[int, ...] = (64, 128)
    blocks: tuple[int, ...] = (6, 6)
    n_sequences: int = 3
    n_classes: int = 2
    input_size: int = 320
    norm: str = "batch"

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ConfigError(
                f"network widths {self.widths} and blocks {self.blocks} must be non-empty and of equal length"
            )
        if min(self.widths) < 1 or min(self.blocks) < 1 or self.stem_width < 1:
            raise ConfigError("network widths, blocks and stem_width must be positive")
        if self.n_classes not in (2, 3):
            raise ConfigError(f"n_classes must be 2 or 3, got {self.n_classes}")
        if self.n_sequences < 1:
            raise ConfigError("n_sequences must be >= 1")
        if self.input_size < 16:
            raise ConfigError(f"input_size {self.input_size} is too small; use at least 16 pixels")

    @property
    def feature_dim(self) -> int:
        """Length of one sequence's feature vector (512 for the study's network)."""
        return EXPANSION * self.widths[-1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        from dlmvi.settings import strict_from_dict

        return strict_from_dict(cls, d, "network configuration")


class SequenceEncoder(nn.Module):
    """Encoder applied to every sequence: (B, C, H, W) -> (B, 4 * widths[-1])."""

    def __init__(self, cfg: NetworkConfig):
        from monai.networks.nets.resnet import ResNetBottleneck

        if ResNetBottleneck.expansion != EXPANSION:
            raise ModelError(f"MONAI's bottleneck expands {ResNetBottleneck.expansion}x, dlmvi expects {EXPANSION}x; "
                             "install the MONAI version of constraints.txt")
        super().__init__()
        norm = cfg.norm
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem_width, kernel_size=7, stride=2, padding=3, bias=False),
            _norm(norm, cfg.stem_width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages = []
        in_planes = cfg.stem_width
        for i, (width, n) in enumerate(zip(cfg.widths, cfg.blocks)):
            stride = 1 if i == 0 else 2
            out_planes = width * EXPANSION
            downsample = None
            if stride != 1 or in_planes != out_planes:
                downsample = nn.Sequential(
                    nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                    _norm(norm, out_planes),
                )
            layers = [
                ResNetBottleneck(in_planes, width, spatial_dims=2, stride=stride, downsample=downsample, norm=norm)
            ]
            layers += [
                ResNetBottleneck(out_planes, width, spatial_dims=2, norm=norm) for _ in range(n - 1)
            ]
            stages.append(nn.Sequential(*layers))
            in_planes = out_planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


class MultiSequenceNet(nn.Module):
    """Shared-weight encoder per sequence, concatenation, one fully connected layer.

    Input: (B, n_sequences, in_channels, H, W), or (B, n_sequences, H, W) when
    ``in_channels == 1``. Output: logits (B, n_classes); softmax gives class probabilities.
    """

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.config = cfg
        self.encoder = SequenceEncoder(cfg)  # one encoder: weights shared across sequences
        self.classifier = nn.Linear(cfg.n_sequences * cfg.feature_dim, cfg.n_classes)
        # Layout of the batches the encoder sees in forward(); not a weight, not saved.
        self.memory_format = torch.contiguous_format
        for m in self.modules():
            # on the meta device (a network about to adopt saved weights) there is nothing to
            # initialise, and torch's meta kernel of normal_ imports torch._dynamo (seconds)
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.ndim == 4 and cfg.in_channels == 1:
            x = x.unsqueeze(2)
        if x.ndim != 5 or x.shape[1] != cfg.n_sequences or x.shape[2] != cfg.in_channels:
            raise ModelError(
                f"input of shape {tuple(x.shape)} does not fit the network: expected "
                f"(batch, {cfg.n_sequences} sequences, {cfg.in_channels} channel(s), H, W)"
            )
        return x

    def sequence_features(self, x: torch.Tensor, memory_format=torch.contiguous_format) -> torch.Tensor:
        """Per-sequence feature vectors, (B, n_sequences, feature_dim) (512-d in the study).

        ``memory_format=torch.channels_last`` hands the encoder a channels-last batch.
        """
        x = self._check(x)
        b, k = x.shape[:2]
        # all sequences through the same encoder at once
        f = self.encoder(x.flatten(0, 1).contiguous(memory_format=memory_format))
        return f.view(b, k, -1)

    def set_memory_format(self, memory_format=torch.channels_last) -> "MultiSequenceNet":
        """Keep the weights in ``memory_format`` and give forward()'s encoder batches in it.

        ``torch.channels_last`` (NHWC) is the layout of tensor cores and of oneDNN; the values
        are unchanged, so the same weights give the same outputs up to floating-point rounding.
        """
        self.memory_format = memory_format
        return self.to(memory_format=memory_format)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from per-sequence features (B, n_sequences, feature_dim)."""
        return self.classifier(features.flatten(1))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        f = self.sequence_features(x, memory_format=self.memory_format)
        logits = self.classify(f)
        return (logits, f) if return_features else logits


class Fusion(nn.Module):
    """The network's fully connected fusion layer alone (``classifier``, the same weights' names),
    for a backend that runs the encoder elsewhere (ONNX Runtime): it needs neither the encoder
    nor MONAI."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.config = cfg
        self.classifier = nn.Linear(cfg.n_sequences * cfg.feature_dim, cfg.n_classes)

    classify = MultiSequenceNet.classify


def build_network(cfg: NetworkConfig) -> MultiSequenceNet:
    """Build the network from its configuration (the one builder for training and inference)."""
    if not isinstance(cfg, NetworkConfig):
        raise ConfigError(f"build_network needs a NetworkConfig, got {type(cfg).__name__}")
    return MultiSequenceNet(cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_sample(cfg: NetworkConfig) -> int:
    """Forward floating-point operations for one patient (all sequences), counted by torch.

    Counts multiply and add separately (2 per multiply-accumulate), as
    :class:`torch.utils.flop_counter.FlopCounterMode` does.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = build_network(cfg).eval()
        x = torch.zeros(1, cfg.n_sequences, cfg.in_channels, cfg.input_size, cfg.input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def _norm(name: str, channels: int) -> nn.Module:
    from monai.networks.layers.utils import get_norm_layer

    return get_norm_layer(name=name, spatial_dims=2, channels=channels)
