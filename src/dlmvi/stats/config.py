"""Settings of the clinical analysis (``dlmvi clinical --config variables.toml``).

Example ``variables.toml`` (every key optional)::

    variables = ["age", "afp", "alt", "ast", "ggt", "tumor_size_cm"]  # Table 1 rows
    p_threshold = 0.05        # univariate p below which a variable enters the multivariate model
    bootstrap = 200           # bootstrap repetitions for optimism correction
    seed = 0                  # seed of the bootstrap
    bins = 10                 # groups in the calibration plot
    method = "ml"             # "ml" (R glm) or "firth" (penalised, R logistf; for separation)

    [cutoffs]                 # value > cut-off -> 1 (units of clinical.csv)
    afp = 20
    alt = 40

    [nomogram]
    predictors = ["afp", "dl_mvi"]

    [labels]                  # names printed in tables and figures
    afp = "AFP (ng/mL)"
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dlmvi.constants import CUTOFFS
from dlmvi.errors import ConfigError

__all__ = ["ClinicalConfig", "load_config", "DEFAULT_VARIABLES"]

#: Table 1 variables when none are configured (those present in the table are used).
DEFAULT_VARIABLES: tuple[str, ...] = (
    "age", "sex", "afp", "ascites", "hepatitis", "cirrhosis", "alt", "ast", "ggt", "tb",
    "cb", "alb", "plt", "inr", "pt", "capsule", "edmondson", "tumor_size_cm",
)


@dataclass(frozen=True)
class ClinicalConfig:
    """Typed settings of :func:`dlmvi.stats.clinical.run_clinical`.

    Attributes:
        variables: Table 1 / univariate variables; None = :data:`DEFAULT_VARIABLES` present
            in the table (a missing configured variable is an error).
        cutoffs: {column: cut-off}; ``value > cut-off`` is level 1.
        p_threshold: univariate p-value below which a variable enters the multivariate model.
        nomogram_predictors: nomogram inputs; None = AFP and DL-MVI (those present).
        n_bootstrap: bootstrap repetitions (optimism correction). seed: their seed.
        n_bins: groups of the calibration plot. level: confidence level.
        labels: display names {column: label}.
        method: logistic regression of Table 1, the multivariate model and the nomogram:
            ``"ml"`` (maximum likelihood, R ``glm``; separated variables are reported as not
            estimable) or ``"firth"`` (Firth's penalised likelihood, R ``logistf``).
    """

    variables: tuple[str, ...] | None = None
    cutoffs: dict[str, float] = field(default_factory=lambda: dict(CUTOFFS))
    p_threshold: float = 0.05
    nomogram_predictors: tuple[str, ...] | None = None
    n_bootstrap: int = 200
    seed: int = 0
    n_bins: int = 10
    level: float = 0.95
    labels: dict[str, str] = field(default_factory=dict)
    method: str = "ml"

    def __post_init__(self):
        if self.method not in ("ml", "firth"):
            raise ConfigError(f"method must be 'ml' or 'firth', got {self.method!r}")
        if not 0 < self.p_threshold <= 1:
            raise ConfigError(f"p_threshold must be in (0, 1], got {self.p_threshold}")
        if self.n_bootstrap < 0:
            raise ConfigError(f"bootstrap must be >= 0, got {self.n_bootstrap}")
        if not 0 < self.level < 1:
            raise ConfigError(f"level must be in (0, 1), got {self.level}")
        if self.n_bins < 2:
            raise ConfigError(f"bins must be >= 2, got {self.n_bins}")

    def to_dict(self) -> dict:
        """Plain dict (saved with the outputs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClinicalConfig":
        """Read back :meth:`to_dict` (e.g. from a study's ``study.json``)."""
        from dlmvi.settings import strict_from_dict

        d = dict(d)
        for key in ("variables", "nomogram_predictors"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return strict_from_dict(cls, d, "clinical configuration")


_KEYS = {"variables", "p_threshold", "bootstrap", "seed", "bins", "level", "cutoffs",
         "nomogram", "labels", "method"}


def load_config(path: str | Path) -> ClinicalConfig:
    """Read a ``variables.toml`` (see the module docstring).

    Raises:
        ConfigError: the file is missing, not TOML, or has unknown keys or wrong types.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    try:
        cutoffs = dict(CUTOFFS)
        cutoffs.update({str(k): float(v) for k, v in raw.get("cutoffs", {}).items()})
        nomo = raw.get("nomogram", {})
        variables = raw.get("variables")
        preds = nomo.get("predictors")
        return ClinicalConfig(
            variables=tuple(str(v) for v in variables) if variables is not None else None,
            cutoffs=cutoffs,
            p_threshold=float(raw.get("p_threshold", 0.05)),
            nomogram_predictors=tuple(str(v) for v in preds) if preds is not None else None,
            n_bootstrap=int(raw.get("bootstrap", 200)),
            seed=int(raw.get("seed", 0)),
            n_bins=int(raw.get("bins", 10)),
            level=float(raw.get("level", 0.95)),
            labels={str(k): str(v) for k, v in raw.get("labels", {}).items()},
            method=str(raw.get("method", "ml")),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path}: {exc}") from exc
