"""Tests of src/dlmvi/train/data.py: combinations, seeding, augmentation, rank partition."""

import numpy as np
import pytest
import torch

from dlmvi.model.inference import all_combinations
from dlmvi.train.data import CombinationDataset

SEQ = ("T1", "T1V", "T1D")


def _data(n=12, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, 3, size, size)).astype(np.float32), np.arange(n) % 2


def test_same_seed_same_first_epoch_batches():
    x, y = _data()
    a = list(CombinationDataset(x, y, SEQ, seed=7).batches(1, 5))
    b = list(CombinationDataset(x, y, SEQ, seed=7).batches(1, 5))
    c = list(CombinationDataset(x, y, SEQ, seed=8).batches(1, 5))
    assert [len(t[2]) for t in a] == [5, 5, 2]
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and np.array_equal(ia, ib)
    assert not torch.equal(a[0][0], c[0][0])
    # an epoch can be replayed on its own (what resuming relies on)
    ds = CombinationDataset(x, y, SEQ, seed=7)
    list(ds.batches(1, 5))
    again = list(ds.batches(1, 5))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, again))


def test_combinations_drawn_afresh_each_epoch():
    x, y = _data(n=30)
    ds = CombinationDataset(x, y, SEQ, seed=0, augment=False)
    assert ds.n_combinations == 27
    seen = set()
    for epoch in range(1, 21):
        order, combos = ds.epoch_plan(epoch)
        assert sorted(order) == list(range(30)) and combos.shape == (30, 3)
        seen |= {tuple(c) for c in combos}
    assert seen == {tuple(c) for c in all_combinations(3, 3)}  # all 27 occur in 600 draws
    assert not np.array_equal(ds.epoch_plan(1)[1], ds.epoch_plan(2)[1])


def test_without_augmentation_batches_are_the_chosen_slices():
    x, y = _data()
    ds = CombinationDataset(x, y, SEQ, seed=0, augment=False)
    order, combos = ds.epoch_plan(1)
    xb, yb, idx = next(ds.batches(1, 4))
    assert xb.shape == (4, 3, 1, 32, 32)
    for b, i in enumerate(idx):
        for j in range(3):
            assert np.array_equal(xb[b, j, 0].numpy(), x[i, j, combos[i, j]])
    assert yb.tolist() == y[idx].tolist()


def test_augmentation_changes_images_but_keeps_shape():
    x, y = _data()
    xa, _, idx = next(CombinationDataset(x, y, SEQ, seed=0).batches(1, 12))
    xr, _, _ = next(CombinationDataset(x, y, SEQ, seed=0, augment=False).batches(1, 12))
    assert xa.shape == xr.shape == (12, 3, 1, 32, 32) and xa.dtype == torch.float32
    assert torch.isfinite(xa).all()
    changed = [(not torch.allclose(xa[b], xr[b])) for b in range(12)]
    assert sum(changed) >= 11  # the crop (p = 1) alters nearly every sample


def test_ranks_partition_patients():
    x, y = _data(n=11)
    ds = CombinationDataset(x, y, SEQ, seed=0)
    r0, _ = ds.epoch_plan(3, rank=0, world_size=2)
    r1, _ = ds.epoch_plan(3, rank=1, world_size=2)
    assert len(r0) == len(r1) == 6  # padded to equal length
    assert set(r0) | set(r1) == set(range(11))
    assert len(set(r0) & set(r1)) == 1  # only the one wrapped-around padding patient


def test_batch_augment_crop_and_flip_geometry():
    """A flipped, uncropped, unscaled batch is the mirror image; a crop zooms in on the centre region."""
    from dlmvi.train.data import AugmentConfig, batch_augment

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    flip_only = AugmentConfig(flip_prob=1.0, crop_prob=0.0, intensity_scale_prob=0.0, noise_prob=0.0)
    assert torch.equal(batch_augment(x, flip_only, g), x.flip(-1))
    ident = AugmentConfig(flip_prob=0.0, crop_prob=0.0, intensity_scale_prob=0.0, noise_prob=0.0)
    assert torch.equal(batch_augment(x, ident, g), x)
    ramp = torch.linspace(0, 1, 32).repeat(1, 1, 32, 1)  # values rise along x
    crop = AugmentConfig(flip_prob=0.0, crop_min=0.75, crop_prob=1.0, intensity_scale_prob=0.0, noise_prob=0.0)
    out = batch_augment(ramp.expand(16, 1, 32, 32).contiguous(), crop, g)
    span = out[..., -1] - out[..., 0]  # a crop of 0.75-1 of the side keeps 0.75-1 of the ramp
    assert span.min() > 0.70 and span.max() <= 1.0 + 1e-6


def test_strong_intensity_augmentation_differs_per_sequence():
    """'strong' draws scanner-like changes independently per sequence; 'standard' does not."""
    import pytest

    from dlmvi.errors import ConfigError
    from dlmvi.train.data import AugmentConfig

    x = np.ones((4, 3, 3, 16, 16), np.float32)  # identical flat images in every sequence
    y = np.array([0, 1, 0, 1])
    std = CombinationDataset(x, y, SEQ, seed=3, augment_config=AugmentConfig(crop_min=1.0, noise_prob=0.0))
    xb, _, _ = next(std.batches(1, 4))
    assert torch.allclose(xb[:, 0], xb[:, 1]) and torch.allclose(xb[:, 1], xb[:, 2])
    strong = CombinationDataset(x, y, SEQ, seed=3, augment_config=AugmentConfig(
        crop_min=1.0, noise_prob=0.0, strong_intensity=True))
    xs, _, _ = next(strong.batches(1, 4))
    per_seq_means = xs.mean(dim=(2, 3, 4))  # (B, k)
    assert (per_seq_means.max(1).values - per_seq_means.min(1).values).max() > 0.05
    with pytest.raises(ConfigError, match="intensity augmentation 'wild' unknown"):
        AugmentConfig.for_intensity("wild")


def test_sequence_dropout_blanks_whole_sequences_and_keeps_one():
    """p = 0.5 on 12 patients x 3 sequences: each dropped sequence is all zeros, no sample
    loses every sequence, the draw is seeded, and p = 0 gives exactly the batches of before."""
    from dlmvi.train.data import drop_sequences

    x, y = _data()
    plain = list(CombinationDataset(x, y, SEQ, seed=7).batches(1, 12))[0][0]
    off = list(CombinationDataset(x, y, SEQ, seed=7, sequence_dropout=0.0).batches(1, 12))[0][0]
    assert torch.equal(plain, off)
    on = list(CombinationDataset(x, y, SEQ, seed=7, sequence_dropout=0.5).batches(1, 12))[0][0]
    again = list(CombinationDataset(x, y, SEQ, seed=7, sequence_dropout=0.5).batches(1, 12))[0][0]
    assert torch.equal(on, again)
    blank = (on.flatten(2) == 0).all(dim=2)  # (B, k) sequence blanked
    assert blank.any() and not blank.all(dim=1).any()
    kept = ~blank
    assert torch.equal(on[kept], plain[kept])  # kept sequences untouched
    g = torch.Generator().manual_seed(0)
    many = drop_sequences(torch.ones(4000, 3, 2, 2), 0.3, g)
    dropped = (many.flatten(2) == 0).all(dim=2)
    assert not dropped.all(dim=1).any()
    # P(drop) = 0.3 except when all three are drawn (0.027): one of them is then kept
    assert dropped.float().mean().item() == pytest.approx(0.3 - 0.027 / 3, abs=0.01)
    assert not CombinationDataset(x, y, SEQ, seed=7, augment=False, sequence_dropout=0.5).make_batch(
        np.arange(3), np.zeros((3, 3), dtype=int)).flatten(2).eq(0).all(dim=2).any()  # never at validation


def test_loader_with_worker_processes_gives_the_same_batches():
    """Worker processes only gather; the standard augmentation runs in batch order where the batch
    trains and the strong one is seeded per batch: 2 workers give exactly the in-process batches."""
    from dlmvi.train.data import AugmentConfig

    x, y = _data(n=13)
    for cfg, augment in ((AugmentConfig(), True), (AugmentConfig(strong_intensity=True), True), (AugmentConfig(), False)):
        ds = CombinationDataset(x, y, SEQ, seed=4, augment=augment, augment_config=cfg)
        ref = [list(ds.batches(e, 5)) for e in (1, 2)]
        loader = ds.loader(5, workers=2, prefetch=2)
        try:
            for e, want in zip((1, 2), ref):  # persistent workers, two epochs
                got = list(loader.epoch(e))
                assert [len(b[2]) for b in got] == [5, 5, 3] == loader.sizes
                for (xa, ya, ia), (xb, yb, ib) in zip(got, want):
                    assert torch.equal(xa, xb) and torch.equal(ya, yb) and np.array_equal(ia, ib)
        finally:
            loader.close()
    assert ds.batch_sizes(5, rank=1, world_size=2) == [5, 2]  # 13 padded to 14, 7 per rank


def test_float16_patches_give_the_float32_batches_of_their_values():
    """A float16 cache in memory: batches are float32 and equal to those of the same values stored
    as float32 (float16 -> float32 is exact)."""
    x, y = _data()
    h = x.astype(np.float16)
    a = list(CombinationDataset(h, y, SEQ, seed=2).batches(1, 4))
    b = list(CombinationDataset(h.astype(np.float32), y, SEQ, seed=2).batches(1, 4))
    assert CombinationDataset(h, y, SEQ, seed=2).patches.dtype == np.float16
    for (xa, _, _), (xb, _, _) in zip(a, b):
        assert xa.dtype == torch.float32 and torch.equal(xa, xb)
