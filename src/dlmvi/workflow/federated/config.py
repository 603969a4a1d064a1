"""``fed.toml``: the federation's configuration, read once and validated with clear messages.

Example::

    [federation]
    name = "hcc_mvi"             # project name (certificates, job)
    coordinator = "fl.hospital-a.org"   # host name the sites reach (the server certificate's name)
    port = 8002                  # FLARE's federated-learning port; the admin port is port + 1
    rounds = 10
    local_epochs = 1             # epochs each site trains per round
    algorithm = "fedavg"         # or "fedprox"
    mu = 0.01                    # FedProx: weight of the proximal term
    min_sites = 2                # a round needs this many sites' updates
    round_timeout = 3600         # seconds a round waits for a site before going on without it
    seed = 0

    [study]
    preset = "fast"              # the network every site trains (dlmvi presets)
    sequences = ["T1", "T1V", "T1D"]
    classes = 2
    harmonization = "nyul"       # federated Nyul landmarks, "global" scales, or "none" (z-score)
    folds = 4                    # each site splits its patients into 4 stratified folds ...
    fold = 1                     # ... and holds this one out (never trains the model that scores it)
    min_cell = 5                 # table cells under this count are suppressed
    local_models = true          # also train each site's local-only model (cross-site comparison)

    [network]                    # optional: a smaller network than the preset (quick trials)
    input_size = 32

    [sites.hospital_a]
    [sites.hospital_b]
    [sites.hospital_c]
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dlmvi.constants import SEQUENCES
from dlmvi.errors import ConfigError

ALGORITHMS = ("fedavg", "fedprox")
HARMONIZATIONS = ("nyul", "global", "none")
#: FLARE participant names: a letter, then letters, digits, ``_`` or ``-`` (FLARE reads a name of
#: digits only as a number).
SITE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
NETWORK_KEYS = ("input_size", "stem_width", "widths", "blocks")


@dataclass(frozen=True)
class FedConfig:
    """A federation (see the module docstring for the meaning of each field).

    Attributes:
        sites: site names, in ``fed.toml`` order.
        network: overrides of the preset's network shape (``input_size``, ``stem_width``,
            ``widths``, ``blocks``).
        batch_size, lr: optional overrides of the preset's optimisation.
    """

    sites: tuple[str, ...]
    name: str = "dlmvi_federation"
    coordinator: str = "localhost"
    port: int = 8002
    rounds: int = 10
    local_epochs: int = 1
    algorithm: str = "fedavg"
    mu: float = 0.01
    min_sites: int = 2
    round_timeout: int = 3600
    seed: int = 0
    preset: str = "fast"
    sequences: tuple[str, ...] = ("T1", "T1V", "T1D")
    classes: int = 2
    harmonization: str = "nyul"
    min_cell: int = 5
    folds: int = 4
    fold: int = 1
    local_models: bool = True
    batch_size: int | None = None
    lr: float | None = None
    network: dict = field(default_factory=dict)
    source: str = "fed.toml"

    def __post_init__(self):
        _validate(self)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sites"], d["sequences"] = list(self.sites), list(self.sequences)
        d.pop("source")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FedConfig":
        return cls(**{**d, "sites": tuple(d["sites"]), "sequences": tuple(d["sequences"])})

    def with_sites(self, sites) -> "FedConfig":
        return replace(self, sites=tuple(sites), min_sites=min(self.min_sites, len(tuple(sites))))

    def network_config(self):
        """The network every site trains: the preset's, with ``[network]``'s overrides."""
        from dlmvi.model.network import NetworkConfig
        from dlmvi.model.presets import get_preset

        p = get_preset(self.preset)
        shape = {"input_size": p.input_size, "stem_width": p.stem_width, "widths": p.widths, "blocks": p.blocks,
                 **self.network}
        return NetworkConfig(in_channels=1, n_sequences=len(self.sequences), n_classes=self.classes, **shape)

    def train_config(self):
        """The local optimisation of one round (the preset's, ``local_epochs`` epochs, on the CPU
        or the site's GPU, quiet)."""
        from dlmvi.train.config import TrainConfig

        return TrainConfig(preset=self.preset, sequences=self.sequences, classes=self.classes, folds=0,
                           seed=self.seed, epochs=self.local_epochs, batch_size=self.batch_size, lr=self.lr,
                           holdout=0.0, patience=0, progress=False).resolved()

    def prepare_config(self):
        """How every site prepares its cohort: raw intensities when the federation fits a
        harmonisation, per-image z-score otherwise."""
        from dlmvi.preprocess.cache import PrepareConfig

        return PrepareConfig(sequences=tuple(self.sequences), size=self.network_config().input_size,
                             normalization="zscore" if self.harmonization == "none" else "none")

    @property
    def admin_port(self) -> int:
        return self.port + 1

    @property
    def address(self) -> str:
        return f"{self.coordinator}:{self.port}"

    def check_sites(self, found, where: str) -> None:
        """Refuse sites in ``found`` that ``fed.toml`` does not name, and named sites not found.

        Args:
            found: site names present (a cohort's site column, the sites that connected).
            where: what ``found`` is, for the message.
        """
        found = [str(s) for s in found]
        unknown = sorted(set(found) - set(self.sites))
        missing = [s for s in self.sites if s not in set(found)]
        if unknown:
            raise ConfigError(
                f"{self.source}: {where} has site(s) {', '.join(unknown)} that [sites] does not name "
                f"(it names {', '.join(self.sites)}); add a [sites.NAME] table for each or fix the site names")
        if missing:
            raise ConfigError(
                f"{self.source}: site(s) {', '.join(missing)} of [sites] not found in {where} "
                f"(found: {', '.join(sorted(set(found))) or 'none'}); remove them from fed.toml or fix the site names")


_SECTIONS = {
    "federation": ("name", "coordinator", "port", "rounds", "local_epochs", "algorithm", "mu", "min_sites",
                   "round_timeout", "seed"),
    "study": ("preset", "sequences", "classes", "harmonization", "folds", "fold", "min_cell", "local_models",
              "batch_size", "lr"),
    "network": NETWORK_KEYS,
    "sites": None,
}
#: what a site's own table may state (each must agree with the federation)
_SITE_KEYS = ("preset", "sequences", "classes")


def load_config(path) -> FedConfig:
    """Read and validate ``fed.toml``.

    Raises:
        ConfigError: one message naming the file, the key and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such fed.toml file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return config_from_toml(doc, str(path))


def config_from_toml(doc: dict, source: str = "fed.toml") -> FedConfig:
    """A :class:`FedConfig` from a parsed ``fed.toml`` document (see :func:`load_config`)."""
    for section, value in doc.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}]; the sections are "
                              f"{', '.join('[' + s + ']' for s in _SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {section} must be a table ([{section}])")
        allowed = _SECTIONS[section]
        for key in value if allowed is not None else ():
            if key not in allowed:
                raise ConfigError(f"{source}: unknown key {key!r} in [{section}]; allowed: {', '.join(allowed)}")
    sites = doc.get("sites") or {}
    if not sites:
        raise ConfigError(f"{source}: no site; add one [sites.NAME] table per hospital")
    kw = {**doc.get("federation", {}), **doc.get("study", {})}
    kw["network"] = dict(doc.get("network", {}))
    for name, table in sites.items():
        _check_site_table(name, table, kw, source)
    if "sequences" in kw:
        kw["sequences"] = tuple(kw["sequences"]) if isinstance(kw["sequences"], list) else kw["sequences"]
    return FedConfig(sites=tuple(sites), source=source, **kw)


def _check_site_table(name: str, table, kw: dict, source: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: sites.{name} must be a table ([sites.{name}])")
    for key, value in table.items():
        if key not in _SITE_KEYS:
            raise ConfigError(f"{source}: unknown key {key!r} in [sites.{name}]; a site may only restate "
                              f"{', '.join(_SITE_KEYS)} (which must equal the federation's)")
        want = kw.get(key, getattr(FedConfig, key, None))
        if (list(value) if isinstance(value, list) else value) != (list(want) if isinstance(want, tuple) else want):
            raise ConfigError(
                f"{source}: [sites.{name}] {key} = {value!r} differs from the federation's {key} = {want!r} "
                f"([study]); every site trains the same network on the same inputs: make them equal")


def _validate(c: FedConfig) -> None:  # noqa: C901 - one check per field, in order
    from dlmvi.model.presets import get_preset

    src = c.source

    def bad(key, value, want):
        raise ConfigError(f"{src}: {key} = {value!r} is invalid; {want}")

    for s in c.sites:
        if not SITE_NAME.match(str(s)):
            bad(f"[sites.{s}]", s, "a site name starts with a letter, then letters, digits, '_' or '-' (it names the site's certificate)")
    if not SITE_NAME.match(str(c.name)):
        bad("name", c.name, "start with a letter, then letters, digits, '_' or '-'")
    for key, lo in (("rounds", 1), ("local_epochs", 1), ("min_sites", 1), ("round_timeout", 1), ("port", 1),
                    ("min_cell", 1), ("classes", 2)):
        v = getattr(c, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            bad(key, v, f"an integer >= {lo}")
    if c.port > 65534:
        bad("port", c.port, "a TCP port up to 65534 (the admin port is port + 1)")
    if c.classes not in (2, 3):
        bad("classes", c.classes, "2 (MVI absent/present) or 3 (M0/M1/M2)")
    if c.min_sites > len(c.sites):
        bad("min_sites", c.min_sites, f"at most the number of sites ({len(c.sites)})")
    if c.algorithm not in ALGORITHMS:
        bad("algorithm", c.algorithm, f"one of {', '.join(ALGORITHMS)}")
    if not isinstance(c.mu, (int, float)) or c.mu < 0:
        bad("mu", c.mu, "a number >= 0 (FedProx's proximal weight)")
    if c.harmonization not in HARMONIZATIONS:
        bad("harmonization", c.harmonization, f"one of {', '.join(HARMONIZATIONS)}")
    if not isinstance(c.folds, int) or c.folds < 2:
        bad("folds", c.folds, "an integer >= 2 (each site's patients in stratified folds, one held out)")
    if not isinstance(c.fold, int) or not 1 <= c.fold <= c.folds:
        bad("fold", c.fold, f"the held-out fold, 1 to folds ({c.folds})")
    seqs = list(c.sequences) if isinstance(c.sequences, (list, tuple)) else None
    if not seqs or any(s not in SEQUENCES for s in seqs) or len(set(seqs)) != len(seqs):
        bad("sequences", c.sequences, f"a list of distinct sequences out of {', '.join(SEQUENCES)}")
    try:
        get_preset(c.preset)
    except ConfigError as exc:
        raise ConfigError(f"{src}: preset: {exc}") from None
    for key, value in c.network.items():
        ok = (isinstance(value, int) and value >= 1) if key in ("input_size", "stem_width") else \
            (isinstance(value, list) and value and all(isinstance(v, int) and v >= 1 for v in value))
        if not ok:
            bad(f"[network] {key}", value, "a positive integer (input_size, stem_width) or a list of them "
                                           "(widths, blocks)")
    if "input_size" in c.network and c.network["input_size"] < 16:
        bad("[network] input_size", c.network["input_size"], "at least 16 pixels")


__all__ = ["FedConfig", "load_config", "config_from_toml", "ALGORITHMS", "HARMONIZATIONS"]
