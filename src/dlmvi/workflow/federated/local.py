"""One site's local optimisation of a round: the network from the received weights, a few epochs
on its training patients (the augmentation and slice combinations of ``dlmvi train``), FedProx's
proximal term when ``mu > 0``; weights in and out as numpy arrays (what travels)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dlmvi.errors import ModelError


def state_arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The network's state dict as numpy arrays (weights and batch-norm statistics)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def weight_shapes(net_cfg) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the network's state dict (what a weights message must hold)."""
    from dlmvi.model.network import build_network

    with torch.device("meta"):
        model = build_network(net_cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def initial_weights(net_cfg, seed: int) -> dict[str, np.ndarray]:
    """The coordinator's round-0 global model (seeded, as ``dlmvi train`` initialises)."""
    from dlmvi.model.network import build_network

    torch.manual_seed(int(seed))
    return state_arrays(build_network(net_cfg))


def network_from(weights: dict, net_cfg) -> torch.nn.Module:
    """The network of ``net_cfg`` holding ``weights`` (eval mode, CPU)."""
    from dlmvi.model.network import build_network

    model = build_network(net_cfg)
    try:
        model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in weights.items()}, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"the received weights do not fit the federation's network: {exc}") from None
    return model.eval()


def local_train(weights: dict, net_cfg, x: np.ndarray, y: np.ndarray, sequences, cfg, seed: int,
                first_epoch: int, mu: float = 0.0) -> tuple[dict, float, int]:
    """Train from ``weights`` for ``cfg.epochs`` epochs; returns (weights, mean loss, samples).

    Args:
        weights: the global model received.
        x, y: the site's training patches (N, k, n_slices, S, S) and labels.
        cfg: a resolved :class:`~dlmvi.train.config.TrainConfig` (optimiser, lr, batch size).
        seed: the site's seed; ``first_epoch`` numbers this round's epochs in the site's
            sequence of epochs, so every round draws new slices and augmentations.
        mu: FedProx's proximal weight (0: FedAvg's plain local objective).
    """
    from dlmvi.train.data import CombinationDataset
    from dlmvi.train.engine import make_optimizer, resolve_device

    device = resolve_device(cfg.device)
    model = network_from(weights, net_cfg).to(device)
    anchor = [p.detach().clone() for p in model.parameters()] if mu > 0 else None
    ds = CombinationDataset(x, y, sequences, seed=seed, augment=True)
    loader = ds.loader(cfg.batch_size)
    opt = make_optimizer(model.parameters(), cfg)
    torch.manual_seed(seed + first_epoch)
    losses = []
    model.train()
    try:
        for epoch in range(first_epoch, first_epoch + int(cfg.epochs)):
            for xb, yb, _ in loader.epoch(epoch, device):
                loss = F.cross_entropy(model(xb), yb)
                if anchor is not None:
                    loss = loss + 0.5 * mu * sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
    finally:
        loader.close()
    if not losses or not all(math.isfinite(v) for v in losses):
        raise ModelError(f"local training diverged (loss {losses[-1] if losses else 'none'}); lower the lr")
    return state_arrays(model.cpu()), float(np.mean(losses)), int(len(ds))


__all__ = ["local_train", "network_from", "initial_weights", "state_arrays", "weight_shapes"]
