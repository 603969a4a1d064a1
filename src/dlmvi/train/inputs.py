"""The network input of each training unit (a fold's model, the final model).

Without a fitted harmonisation every unit sees the cache's patches as
:func:`dlmvi.preprocess.patches.load_patches` gives them. With one (``TrainConfig.harmonization``
= ``"nyul"`` or ``"global"`` on a raw cache), the harmonisation is fitted for each unit on that
unit's own training patients (its training and early-stopping patients, never its test
patients) and applied to every patient the unit touches, so that a fold's test patients never
shape the input of the model that scores them.
"""

from __future__ import annotations

import numpy as np

from dlmvi.errors import ConfigError


class TrainingInputs:
    """Patches of ``ids`` (in that order) for the units of one training run.

    Args:
        cache: the :class:`~dlmvi.preprocess.cache.PatchCache`.
        ids: the run's patients.
        sequences: the network's sequences, in input order.
        size: the network's input size.
        harmonization: ``None``, ``"nyul"`` or ``"global"`` (see the module docstring).

    Raises:
        ConfigError: a fitted harmonisation asked of a cache that is not raw.
    """

    def __init__(self, cache, ids, sequences, size: int, harmonization: str | None = None):
        from dlmvi.preprocess.patches import load_patches

        self.cache, self.ids, self.sequences, self.size = cache, list(ids), tuple(sequences), int(size)
        self.method = harmonization
        if harmonization is None:
            self._x = load_patches(cache, self.ids, self.sequences, self.size, dtype=cache.dtype)
            self._raw = None
            return
        if cache.meta.get("harmonization") or cache.config.normalization != "none":
            raise ConfigError(
                f"--harmonization {harmonization} fits the harmonisation inside each fold, from raw patches: "
                f"{cache.root} is {'already harmonised' if cache.meta.get('harmonization') else 'z-scored'}; "
                "prepare the cohort with `dlmvi prepare --normalization none`")
        self._raw = cache.stack(self.ids, self.sequences)
        self._x = None

    @property
    def nbytes(self) -> int:
        return int((self._x if self._x is not None else self._raw).nbytes)

    @property
    def dtype(self):
        return self.cache.dtype

    def for_unit(self, fit_ids) -> tuple[np.ndarray, dict | None]:
        """``(x, harmonization document)`` of the unit trained on ``fit_ids``: x of every patient
        (rows in ``ids`` order), harmonised with parameters fitted on ``fit_ids`` only."""
        if self._raw is None:
            return self._x, self.cache.meta.get("harmonization")
        from dlmvi.preprocess.patches import load_patches
        from dlmvi.preprocess.harmonize import Harmonizer

        pos = {pid: i for i, pid in enumerate(self.ids)}
        rows = np.array([pos[p] for p in fit_ids], dtype=np.int64)
        h = Harmonizer(self.method).fit_patches(self._raw[rows], self.sequences, patient_ids=fit_ids)
        doc = dict(h.document_, fit_on=f"{len(rows)} training patients of this model",
                   fit_patients=h.fit_patients_)
        # the same loader as prediction: what the model trains on is what it is later given
        x = load_patches(self.cache, self.ids, self.sequences, self.size, dtype=self.cache.dtype, harmonization=doc)
        return x, doc


__all__ = ["TrainingInputs"]
