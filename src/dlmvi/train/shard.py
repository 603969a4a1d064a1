"""Shares of independent trainings, for job arrays: ``--shard I/N``.

Cross-validation folds (plus the final model) and the combinations of a sequence ablation are
independent trainings with their own seeds. Share ``I`` of ``N`` (1-based) takes every
``N``-th of them starting at the ``I``-th, in their fixed order, so ``N`` jobs (a Slurm job
array, any scheduler, several machines sharing a file system) cover every training exactly
once and produce, model for model, what one process would. A merge step reads the finished
trainings back and writes the tables of a single run.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlmvi.errors import ConfigError


@dataclass(frozen=True)
class Shard:
    """Share ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self):
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ConfigError(
                f"--shard {self.index}/{self.count}: the share must be I/N with 1 <= I <= N "
                "(e.g. --shard 2/5; in a Slurm array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
            )

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"2/5"`` -> Shard(2, 5)."""
        try:
            i, n = (int(p) for p in str(text).split("/"))
        except ValueError:
            raise ConfigError(f"--shard {text!r}: write the share as I/N, e.g. --shard 2/5") from None
        return cls(i, n)

    def owns(self, position: int) -> bool:
        """True when the training at ``position`` (0-based, in the fixed order) is in this share."""
        return position % self.count == self.index - 1

    def select(self, items) -> list:
        """The items of this share, in order."""
        return [it for j, it in enumerate(items) if self.owns(j)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


__all__ = ["Shard"]
