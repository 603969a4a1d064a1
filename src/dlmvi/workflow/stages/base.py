"""What every stage of a study is: a name, a resume key, outputs and the work."""

from __future__ import annotations

from pathlib import Path


class Stage:
    """One stage of a study; its methods take the running :class:`~dlmvi.workflow.study.Study`.

    A rerun skips the stage when its :meth:`key` is the one recorded in ``RUN/stages.json`` and
    every one of its :meth:`outputs` exists (see :meth:`dlmvi.workflow.study.Study.run_stage`).
    Subclasses set :attr:`name` and implement :meth:`key`, :meth:`outputs` and :meth:`run`.
    """

    #: the stage's name in ``stages.json`` and in the log
    name: str = ""

    def enabled(self, study) -> bool:
        """Whether the study runs this stage (optional stages follow their setting)."""
        return True

    def key(self, study) -> list:
        """The settings and input keys that decide the stage's result."""
        raise NotImplementedError

    def outputs(self, study) -> list[Path]:
        """Files whose presence, with an unchanged key, lets a rerun skip the stage."""
        raise NotImplementedError

    def run(self, study) -> None:
        """Compute and write the stage's outputs."""
        raise NotImplementedError
