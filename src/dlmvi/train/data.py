"""Training samples: one random slice combination per patient per epoch, augmented.

Each patient has ``n_slices`` (3) key slices per sequence, hence ``n_slices ** k`` slice
combinations for ``k`` sequences (27 for 3). As in the study every combination is a valid
training sample with the patient's label; here each epoch draws one combination per patient
afresh (a seeded generator per epoch, so a resumed run replays exactly the same draws),
which keeps an epoch one pass over the *patients* and never lets one patient's combinations
land on both sides of a split (splits are made on patients before any sample exists).

Augmentation follows the study: random horizontal flip (p = 0.5), random crop of 0.75-1 of
the side then resize back to the input size, random intensity scaling and Gaussian noise,
applied to the whole batch at once in torch (:func:`batch_augment`); the optional strong
intensity augmentation uses MONAI dictionary transforms keyed by sequence name. Patches come
from :func:`dlmvi.preprocess.cache.load_patches`, normalised and resized as the network
expects. The crop-then-resize already rescales the image (zoom 1-1.33x), so "scaling" is
implemented as intensity scaling rather than a second resampling, which would double the
cost of the input pipeline.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from dlmvi.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (the study's list).

    Attributes:
        flip_prob: probability of a horizontal flip.
        crop_min: smallest crop side as a fraction of the patch side (then resized back).
        crop_prob: probability of cropping.
        intensity_scale: intensities are multiplied by ``1 + u``, ``u ~ U(-s, s)``.
        intensity_scale_prob: probability of intensity scaling.
        noise_std: standard deviation of the additive Gaussian noise (z-score units).
        noise_prob: probability of adding noise.
        strong_intensity: add scanner-like intensity changes, drawn independently per
            sequence (gain, offset, gamma, smooth bias field): harmonisation by augmentation.
    """

    flip_prob: float = 0.5
    crop_min: float = 0.75
    crop_prob: float = 1.0
    intensity_scale: float = 0.1
    intensity_scale_prob: float = 0.5
    noise_std: float = 0.1
    noise_prob: float = 0.5
    strong_intensity: bool = False

    @classmethod
    def for_intensity(cls, level: str) -> "AugmentConfig":
        """``"standard"`` (the study's) or ``"strong"`` (harmonisation by augmentation)."""
        if level not in ("standard", "strong"):
            raise ConfigError(f"intensity augmentation {level!r} unknown; use 'standard' or 'strong'")
        return cls(strong_intensity=level == "strong")

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def build_augmentation(sequences, size: int, cfg: AugmentConfig = AugmentConfig()):
    """MONAI dictionary transforms keyed by sequence name; each value is (1, H, W) -> (1, size, size)."""
    from monai.transforms import (
        Compose,
        RandFlipd,
        RandGaussianNoised,
        RandScaleCropd,
        RandScaleIntensityd,
        Resized,
    )

    keys = list(sequences)
    strong = []
    if cfg.strong_intensity:
        from monai.transforms import RandAdjustContrastd, RandBiasFieldd, RandShiftIntensityd

        for k in keys:  # one transform per sequence: scanners differ per sequence
            strong += [RandScaleIntensityd([k], factors=0.4, prob=0.8), RandShiftIntensityd([k], offsets=0.4, prob=0.8),
                       RandAdjustContrastd([k], gamma=(0.6, 1.6), prob=0.8),
                       RandBiasFieldd([k], degree=3, coeff_range=(0.0, 0.3), prob=0.5)]
    return Compose(
        [
            RandFlipd(keys, prob=cfg.flip_prob, spatial_axis=1),  # axis 1 of (H, W): left-right
            RandScaleCropd(keys, roi_scale=cfg.crop_min, max_roi_scale=1.0, random_size=True, random_center=True),
            Resized(keys, spatial_size=(size, size), mode="bilinear", anti_aliasing=False),
            RandScaleIntensityd(keys, factors=cfg.intensity_scale, prob=cfg.intensity_scale_prob),
            *strong,
            RandGaussianNoised(keys, prob=cfg.noise_prob, mean=0.0, std=cfg.noise_std),
        ]
    )


def batch_augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """The study's augmentation on a whole batch at once: (B, k, S, S) -> (B, k, S, S).

    Per sample (the same draw for all k co-registered sequences): horizontal flip with
    ``flip_prob``; a random square crop of ``crop_min``-1 of the side at a random position,
    resized back to S x S (bilinear, one ``grid_sample`` for the batch); intensity scaling by
    ``1 + U(-s, s)`` with ``intensity_scale_prob``; Gaussian noise with ``noise_prob``.
    Equivalent in distribution to MONAI's RandFlipd, RandScaleCropd + Resized,
    RandScaleIntensityd and RandGaussianNoised, which run sample by sample in Python and cost
    a quarter of a training step at 64 px (benchmarks/bench_training.py).
    """
    import torch.nn.functional as F

    B, k, S, _ = x.shape
    g = generator

    def u(n=B):
        return torch.rand(n, generator=g)

    ones = torch.ones(B)
    flip = u() < cfg.flip_prob
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    scale = torch.where(u() < cfg.crop_prob, cfg.crop_min + (1 - cfg.crop_min) * u(), ones)
    if (scale < 1).any():
        theta = torch.zeros(B, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = scale
        theta[:, 0, 2] = (1 - scale) * (2 * u() - 1)  # crop centre, kept inside the image
        theta[:, 1, 2] = (1 - scale) * (2 * u() - 1)
        grid = F.affine_grid(theta, [B, k, S, S], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    factor = torch.where(u() < cfg.intensity_scale_prob, 1 + cfg.intensity_scale * (2 * u() - 1), ones)
    x = x * factor[:, None, None, None]
    noisy = (u() < cfg.noise_prob).float()
    return x + cfg.noise_std * noisy[:, None, None, None] * torch.randn(x.shape, generator=g)


@contextlib.contextmanager
def _no_meta():
    # MONAI's MetaTensor bookkeeping costs more than the transforms themselves on small
    # patches; turn it off only while augmenting and restore the caller's setting.
    from monai.data import get_track_meta, set_track_meta

    old = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(old)


class CombinationDataset:
    """Patients' patches and labels, served as batches of slice combinations.

    Args:
        patches: (N, k, n_slices, S, S) float32 network input
            (see :func:`dlmvi.preprocess.cache.load_patches`).
        labels: (N,) class indices.
        sequences: names of the k sequences (the transforms' keys).
        seed: seed of every random draw; epoch ``e`` uses its own generator
            ``default_rng([seed, e, rank])``, so any epoch can be replayed on its own.
        augment: apply augmentation (training) or not (validation/inference).
        augment_config: augmentation settings.
        sequence_dropout: probability per sample and sequence of blanking that sequence's
            patch (set to 0, the input a missing sequence gets at prediction) while training,
            at least one sequence kept per sample (:func:`drop_sequences`).
    """

    def __init__(self, patches, labels, sequences, seed: int, augment: bool = True,
                 augment_config: AugmentConfig = AugmentConfig(), sequence_dropout: float = 0.0):
        patches = np.asarray(patches, dtype=np.float32)
        if patches.ndim != 5 or patches.shape[1] != len(sequences):
            raise ConfigError(
                f"patches of shape {patches.shape} do not match {len(sequences)} sequences "
                "(expected N, k, n_slices, size, size)"
            )
        self.patches = patches
        self.labels = np.asarray(labels, dtype=np.int64)
        self.sequences = tuple(sequences)
        self.seed = int(seed)
        self.augment = augment
        self.size = patches.shape[-1]
        self.n_slices = patches.shape[2]
        self.augment_config = augment_config
        self.sequence_dropout = float(sequence_dropout)
        # The study's augmentation runs batched in torch (see batch_augment); MONAI's
        # per-sample dictionary transforms are used for the strong intensity augmentation,
        # whose bias field and gamma have no cheap batched form.
        self._transform = (build_augmentation(self.sequences, self.size, augment_config)
                           if augment and augment_config.strong_intensity else None)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_combinations(self) -> int:
        """Slice combinations per patient (n_slices ** k)."""
        return self.n_slices ** len(self.sequences)

    def _rng(self, epoch: int, rank: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(epoch), int(rank)])

    def epoch_plan(self, epoch: int, rank: int = 0, world_size: int = 1):
        """The epoch's patient order (this rank's share) and slice combination per patient.

        Returns:
            order: patient indices this rank visits, in order. With ``world_size > 1`` the
                global shuffled order is padded by wrapping to a multiple of ``world_size``
                and rank ``r`` takes every ``world_size``-th patient from ``r`` (as
                :class:`torch.utils.data.DistributedSampler` does), so ranks see disjoint
                patients and the same number of steps.
            combos: (N, k) slice index per patient and sequence for this epoch.
        """
        g = self._rng(epoch)  # shared by all ranks: same order and combinations everywhere
        n = len(self)
        order = g.permutation(n)
        combos = g.integers(0, self.n_slices, size=(n, len(self.sequences)))
        if world_size > 1:
            pad = (-n) % world_size
            order = np.concatenate([order, order[:pad]])[rank::world_size]
        return order, combos

    def batches(self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        """Yield (x (B, k, 1, S, S), y (B,), patient indices) for one training epoch."""
        order, combos = self.epoch_plan(epoch, rank, world_size)
        # per-rank augmentation stream: ranks augment different patients differently
        aug_seed = int(self._rng(epoch, rank + 1).integers(2**31 - 1))
        gen = torch.Generator().manual_seed(aug_seed)
        if self._transform is not None:
            self._transform.set_random_state(seed=aug_seed)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield self.make_batch(idx, combos[idx], gen), torch.from_numpy(self.labels[idx]), idx

    def make_batch(self, idx, combos, generator: torch.Generator | None = None) -> torch.Tensor:
        """Input tensor (B, k, 1, S, S) for patients ``idx`` with slice ``combos[b, j]``."""
        idx = np.asarray(idx)
        combos = np.asarray(combos)
        k = len(self.sequences)
        x = self.patches[idx[:, None], np.arange(k)[None, :], combos]  # (B, k, S, S)
        if not self.augment:
            return torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(2)
        g = generator if generator is not None else torch.Generator().manual_seed(self.seed)
        if self._transform is None:
            out = batch_augment(torch.from_numpy(np.ascontiguousarray(x)), self.augment_config, g)
        else:
            arr = np.empty_like(x)
            with _no_meta():
                for b in range(len(idx)):
                    d = self._transform({s: x[b, j][None] for j, s in enumerate(self.sequences)})
                    for j, s in enumerate(self.sequences):
                        arr[b, j] = np.asarray(d[s])[0]
            out = torch.from_numpy(arr)
        if self.sequence_dropout > 0:
            out = drop_sequences(out, self.sequence_dropout, g)
        return out.unsqueeze(2)


def drop_sequences(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Sequence dropout: blank each sequence of each sample with probability ``p``.

    Args:
        x: (B, k, S, S) batch.
        p: probability per sample and sequence.
        generator: the batch's seeded generator.

    Returns:
        the batch with dropped sequences set to 0 (the patch a missing sequence gets at
        prediction, :func:`dlmvi.model.inference.blank_sequences`). When every sequence of a
        sample is drawn, one of them (chosen at random) is kept.
    """
    b, k = x.shape[:2]
    drop = torch.rand(b, k, generator=generator) < p
    keep = torch.randint(0, k, (b,), generator=generator)
    every = drop.all(dim=1)
    drop[every, keep[every]] = False
    return x * (~drop).to(x.dtype)[:, :, None, None]
