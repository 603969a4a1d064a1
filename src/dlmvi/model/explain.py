"""Explanations of the network's decision: Grad-CAM per sequence branch (MONAI)."""

from __future__ import annotations

import numpy as np


def gradcam_maps(net, slices: np.ndarray, class_idx: int) -> np.ndarray:
    """Grad-CAM of each sequence branch for one input (MONAI's GradCAM).

    The target layer is the shared encoder's last bottleneck block. The k sequences are fed as
    a batch of k images through the shared encoder, so MONAI computes one map per branch; the
    score is the class logit of the fused prediction. Maps are scaled by their common maximum
    (a faint branch contributed little), upsampled to the input size.

    Args:
        net: the :class:`~dlmvi.model.network.MultiSequenceNet`.
        slices: (k, S, S) network input (first key slice of each sequence).
        class_idx: class to explain (1 = MVI present for 2 classes).

    Returns:
        (k, S, S) float32 in [0, 1].
    """
    import copy

    import torch
    from monai.visualize import GradCAM

    class Fused(torch.nn.Module):
        """(k, 1, S, S) -> logits (1, n_classes): the k branches as one batch."""

        def __init__(self, inner):
            super().__init__()
            self.net = inner

        def forward(self, x):
            f = self.net.encoder(x).reshape(1, x.shape[0], -1)
            return self.net.classify(f)

    # MONAI's hooks stay on the module they wrap: work on a copy, keep the model clean.
    wrapped = Fused(copy.deepcopy(net)).eval()
    for p in wrapped.parameters():
        p.requires_grad_(True)
    n_stages = len(net.encoder.stages)
    last = len(net.encoder.stages[-1]) - 1
    layer = f"net.encoder.stages.{n_stages - 1}.{last}"
    cam = GradCAM(nn_module=wrapped, target_layers=layer, postprocessing=lambda m: m)
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
    with torch.enable_grad():
        maps = cam(x, class_idx=int(class_idx))
    maps = maps.detach().numpy()[:, 0].astype(np.float32)
    top = float(maps.max())
    return maps / top if top > 0 else maps


__all__ = ["gradcam_maps"]
