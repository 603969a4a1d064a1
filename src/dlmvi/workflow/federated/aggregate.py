"""Aggregation of the sites' updates: FedAvg (McMahan et al. 2017) and FedProx's server side.

FedProx (Li et al. 2020) changes only the sites' objective (a proximal term
``mu / 2 * ||w - w_global||^2``, see :func:`dlmvi.workflow.federated.site.local_train`); the
server averages as FedAvg does. Weights are averaged in proportion to each site's number of
training samples; batch-norm statistics too; integer counters (``num_batches_tracked``) take
the largest value.
"""

from __future__ import annotations

import numpy as np

from dlmvi.errors import DlmviError


def fedavg(updates: list[tuple[dict, float]]) -> dict:
    """The sample-weighted mean of ``[(weights, n_samples), ...]``.

    Args:
        updates: each site's state dict (name -> array) and its number of training samples.

    Returns:
        The averaged state dict (float arrays keep their dtype).

    Raises:
        DlmviError: no update, a site without samples, or sites with different tensors.
    """
    if not updates:
        raise DlmviError("no site sent an update this round; nothing to aggregate")
    names = list(updates[0][0])
    total = float(sum(n for _, n in updates))
    if total <= 0 or any(n <= 0 for _, n in updates):
        raise DlmviError("every update needs a positive number of training samples")
    out = {}
    for name in names:
        arrays = []
        for w, _ in updates:
            if name not in w or np.shape(w[name]) != np.shape(updates[0][0][name]):
                raise DlmviError(f"the sites' networks differ at {name!r}: every site must train the same network")
            arrays.append(np.asarray(w[name]))
        if arrays[0].dtype.kind in "iub":
            out[name] = np.max(np.stack(arrays), axis=0).astype(arrays[0].dtype)
        else:
            acc = sum(a.astype(np.float64) * (n / total) for a, (_, n) in zip(arrays, updates))
            out[name] = acc.astype(arrays[0].dtype)
    return out


__all__ = ["fedavg"]
