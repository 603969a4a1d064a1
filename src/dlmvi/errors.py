"""Exceptions and warnings of dlmvi.

User mistakes raise a subclass of :class:`DlmviError`; the command line prints its message
without a traceback. Anything else is a bug and keeps its traceback.
Messages name the patient, sequence and file and say how to fix the problem.
"""


class DlmviError(Exception):
    """Base class of every error caused by the user's input or configuration."""


class CohortError(DlmviError, ValueError):
    """The cohort folder, an image, a mask or the clinical table is unusable."""


class ImageError(CohortError):
    """An image or mask file cannot be read or is inconsistent."""


class ClinicalTableError(CohortError):
    """The clinical table is malformed."""


class CacheError(DlmviError):
    """The patch cache is missing, incomplete or was built with other parameters."""


class ConfigError(DlmviError, ValueError):
    """A configuration value or file is invalid."""


class ModelError(DlmviError):
    """A checkpoint or exported model cannot be loaded or honoured."""


class StatisticsError(DlmviError, ValueError):
    """Data cannot support the requested statistical analysis."""


class PredictionsTableError(ClinicalTableError, StatisticsError):
    """A predictions table (``dl_prob``/``dl_mvi`` per patient) is malformed."""


class OutputError(DlmviError):
    """An output path cannot be written: it is an input, a file where a folder is needed (or
    the reverse), a read-only place, or the disk is full."""


class PacsError(DlmviError):
    """A PACS or DICOM node cannot be reached, refuses the credentials, or lacks what was asked
    (an unknown study, a series that no rule maps); the message names the PACS, the study and
    the fix, never a credential."""


class DlmviWarning(UserWarning):
    """Base class of dlmvi's warnings."""


class CohortWarning(DlmviWarning):
    """Something in the cohort is suspicious but usable."""


class StatisticsWarning(DlmviWarning):
    """A model fit or test is unreliable (separation, few events, dropped rows)."""


class NotEstimableWarning(StatisticsWarning):
    """A figure could not be estimated from these data (the predictions separate the outcome, a
    fit did not converge) and is reported as NaN; the message names the figure and why."""
