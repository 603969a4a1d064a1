"""Sequence ablation: which MRI sequences carry the signal (``dlmvi ablate``)?

The study chose its sequences from one 9:1 split of 149 patients (about 15 validation
patients per figure). Here every sequence combination is trained and tested with the same
patient-level, MVI-stratified k-fold cross-validation on the development cohort (same folds
for every combination, from the seed), through the training API
(:func:`dlmvi.train.engine.fit`; each fold's training part keeps the configuration's inner
validation share for checkpoint choice and early stopping). No final model is trained: the
ablation only compares combinations.

Per fold the out-of-fold patients give accuracy, AUC, sensitivity, specificity and F1 (MVI
present vs absent, ``dl_mvi`` at threshold 0.5); per combination the table holds the mean,
the standard deviation over folds (ddof 1) and a t-based 95 % CI of the mean:
``mean +- t(0.975, k - 1) * sd / sqrt(k)`` over the k folds where the figure is defined,
clipped to [0, 1] in the table (the per-combination result.json keeps the raw interval). The
folds share training patients, so this interval is somewhat too narrow (Nadeau & Bengio
2003); it is still far more honest than one 15-patient split.

Layout of ``OUT/``::

    combos/<T1+T1V+T1D>/fold_<i>/     one model per fold (resumable, see dlmvi.train.engine)
    combos/<T1+T1V+T1D>/result.json   written atomically once the combination is finished;
                                      a rerun skips every combination that has one
    combos/<...>/predictions.csv      out-of-fold predictions
    ablation.csv                      one row per combination: <metric>_mean/_sd/_ci_low/_ci_high
    ablation.md, ablation.html        the same, ranked by mean AUC
    ablation_chart.png/.csv           mean AUC and accuracy with 95 % CI per combination

Fan-out: the combinations are independent trainings (each with the seed's folds and seeds),
so ``dlmvi ablate --shard I/N`` trains every N-th combination from the I-th; N jobs of a job
array share the output folder. The tables are written by the share that finds every
combination finished, or by ``dlmvi ablate --merge``, from the result.json files alone: the
same ablation.csv as one process writes.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.constants import SEQUENCES
from dlmvi.errors import CacheError, ConfigError, DlmviWarning
from dlmvi.layout import ABLATION_CSV

METRICS = ("accuracy", "auc", "sensitivity", "specificity", "f1")
RESULT_FORMAT = "dlmvi-ablation-combo/1"

#: The study's sequence combinations with their published validation accuracy (%), as written.
#: "T1V+T1D+T1" (87.72 %) is the same set as "T1+T1D+T1V" (92.11 %): a second run, deduplicated.
STUDY_COMBINATIONS: tuple[tuple[str, float], ...] = (
    ("T1+T1D+T1V", 92.11),
    ("T1V+T1D+T1", 87.72),
    ("T1V+T1D", 85.96),
    ("T1+T1D+T2", 84.21),
    ("T1V+T1D+T2", 81.58),
    ("DWI+T1A+T2", 77.19),
    ("DWI+T1+T2", 74.56),
    ("T1+T1A+T2", 66.67),
)
#: Published single-sequence validation accuracy (%).
STUDY_SINGLE = {"T1V": 63.19, "T1D": 58.91, "T1": 66.66}


def canonical(combo) -> tuple[str, ...]:
    """Sequences of a combination in the package's order (T1, T1A, T1V, T1D, T2, DWI)."""
    seqs = combo.split("+") if isinstance(combo, str) else list(combo)
    seqs = [s.strip() for s in seqs if s.strip()]
    unknown = [s for s in seqs if s not in SEQUENCES]
    if unknown or not seqs:
        raise ConfigError(
            f"sequence combination {combo!r}: unknown sequence(s) {unknown or '(none)'}; "
            f"use names from {', '.join(SEQUENCES)} joined by '+' (e.g. T1+T1V+T1D)"
        )
    if len(set(seqs)) != len(seqs):
        raise ConfigError(f"sequence combination {combo!r} repeats a sequence")
    return tuple(s for s in SEQUENCES if s in seqs)


def combo_name(combo) -> str:
    return "+".join(canonical(combo))


def default_combos() -> list[tuple[str, ...]]:
    """The 6 single sequences plus the study's 7 distinct combinations (13 in all)."""
    out = [(s,) for s in SEQUENCES] + [canonical(c) for c, _ in STUDY_COMBINATIONS]
    return list(dict.fromkeys(out))


def all3_combos(sequences=SEQUENCES) -> list[tuple[str, ...]]:
    """Every set of 3 sequences (20 for the 6 sequences)."""
    return [canonical(c) for c in itertools.combinations(sequences, 3)]


def parse_combos(spec, available=SEQUENCES) -> list[tuple[str, ...]]:
    """Combinations from ``"default"``, ``"all3"`` or ``"T1+T1V,T1D"`` (',' between combinations).

    ``default`` and ``all3`` keep only combinations whose sequences are all in ``available``
    (a warning names the others); an explicit combination with a missing sequence is an error.
    Duplicate sets (in any order) are kept once.
    """
    available = tuple(available)
    if isinstance(spec, (list, tuple)):
        combos, explicit = [canonical(c) for c in spec], True
    elif spec in (None, "", "default"):
        combos, explicit = default_combos(), False
    elif spec == "all3":
        combos, explicit = all3_combos(available), False
    else:
        combos, explicit = [canonical(c) for c in str(spec).split(",") if c.strip()], True
    combos = list(dict.fromkeys(combos))
    missing = [c for c in combos if not set(c) <= set(available)]
    if missing and explicit:
        raise CacheError(
            f"combination(s) {', '.join('+'.join(c) for c in missing)} need sequences that the cache lacks "
            f"(it holds {', '.join(available)}); rerun `dlmvi prepare --sequences ...` with them"
        )
    if missing:
        warnings.warn(
            f"skipping {len(missing)} combination(s) with sequences not in the cache "
            f"({', '.join('+'.join(c) for c in missing)}); the cache holds {', '.join(available)}",
            DlmviWarning, stacklevel=2,
        )
    combos = [c for c in combos if c not in missing]
    if not combos:
        raise CacheError(f"no sequence combination can be trained from the cache's sequences {', '.join(available)}")
    return combos


def t_interval(values, level: float = 0.95) -> dict:
    """Mean, sd (ddof 1) and t-based CI of the mean over the finite values."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return {"mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 1}
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def fold_metrics(frame: pd.DataFrame) -> dict:
    """Accuracy, AUC, sensitivity, specificity and F1 of one fold's out-of-fold predictions."""
    from dlmvi.evaluate.metrics import binary_metrics

    y = frame["label"].astype(int).to_numpy()
    m = binary_metrics(y, frame["dl_mvi"].astype(int).to_numpy(), frame["dl_prob"].to_numpy())
    out = {k: m[k] for k in METRICS}
    out["n"] = m["n"]
    return out


def summarize(per_fold: list[dict]) -> dict:
    """Per metric: mean, sd and 95 % t CI over folds."""
    return {k: t_interval([f[k] for f in per_fold]) for k in METRICS}


def run_combo(cache, inputs, all_seqs, ids, labels, combo, folder: Path, base_config, folds: int, seed: int) -> dict:
    """Cross-validate one combination; returns (and writes) its result document.

    ``inputs`` is the run's :class:`~dlmvi.train.inputs.TrainingInputs`: each fold's model
    sees the patches harmonised (when ``--harmonization``) on that fold's training patients.
    """
    from dlmvi.io.atomic import write_csv, write_json
    from dlmvi.model.inference import predict_arrays, predictions_frame
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.data import AugmentConfig, CombinationDataset
    from dlmvi.train.engine import fit
    from dlmvi.train.run import CLASS_NAMES, network_config
    from dlmvi.train.splits import kfold_splits

    cfg = TrainConfig(**{**base_config.to_dict(), "sequences": tuple(combo), "folds": folds, "seed": seed}).resolved()
    net_cfg = network_config(cfg, len(combo))
    cols = [all_seqs.index(s) for s in combo]
    pos = {pid: i for i, pid in enumerate(ids)}
    split_labels = labels if cfg.classes == 2 else cache.labels(ids, cfg.classes)
    splits = kfold_splits(ids, split_labels, folds, seed, cfg.holdout)
    meta_base = {
        "sequences": list(combo), "classes": cfg.classes, "class_names": CLASS_NAMES[cfg.classes],
        "prepare": cache.meta["params"], "harmonization": cache.meta.get("harmonization"),
        "cache": {"path": str(cache.root), "format": cache.meta.get("format")},
        "synthetic": cache.synthetic, "develop_cohort": cfg.develop_cohort,
    }
    frames, per_fold = [], []
    for i, split in enumerate(splits):
        x_all, harmonization = inputs.for_unit(list(split.train) + list(split.val))
        x = x_all[:, cols]
        tr = np.array([pos[p] for p in split.train])
        ds = CombinationDataset(x[tr], split_labels[tr], combo, seed=seed * 1000 + i, augment=True,
                                augment_config=AugmentConfig.for_intensity(cfg.intensity_augmentation))
        val = None
        if split.val:
            va = np.array([pos[p] for p in split.val])
            val = (x[va], split_labels[va])
        res = fit(ds, val, net_cfg, cfg, folder / f"fold_{i}",
                  meta=dict(meta_base, split=split.to_dict(), harmonization=harmonization),
                  seed=seed * 1000 + i, description=f"{'+'.join(combo)} fold {i + 1}/{folds}")
        te = np.array([pos[p] for p in split.test])
        probs, _ = predict_arrays(res.model, x[te].astype(np.float32), tta=False)
        f = predictions_frame(split.test, cache.cohort_of(split.test), cache.grades(split.test), probs)
        f["fold"] = i
        frames.append(f)
        per_fold.append({"fold": i, **fold_metrics(f), "best_epoch": res.best_epoch, "epochs_run": res.epochs_run})
    pred = pd.concat(frames, ignore_index=True)
    write_csv(folder / "predictions.csv", pred)
    doc = {
        "format": RESULT_FORMAT,
        "combination": "+".join(combo),
        "sequences": list(combo),
        "training": cfg.to_dict(),
        "network": net_cfg.to_dict(),
        "folds": per_fold,
        "summary": summarize(per_fold),
        "n_patients": len(ids),
        "synthetic": cache.synthetic,
        "harmonization": cfg.harmonization or (cache.meta.get("harmonization") or {}).get("method"),
    }
    write_json(folder / "result.json", doc)  # last: marks the combination finished
    return doc


def _load_result(path: Path, config_dict: dict, folds: int, seed: int) -> dict | None:
    import json

    from dlmvi.train.config import EXECUTION_SETTINGS, saved_training

    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if doc.get("format") != RESULT_FORMAT:
        return None
    # a setting added by a newer dlmvi counts as the value the older one used
    t = saved_training(doc.get("training", {}))
    want = saved_training(config_dict)
    same = all(t.get(k) == v for k, v in want.items() if k not in EXECUTION_SETTINGS | {"sequences"})
    if not same or t.get("folds") != folds or t.get("seed") != seed:
        raise ConfigError(
            f"{path.parent} was trained with other settings (folds, seed or training configuration); "
            "use another --out folder or delete that combination's folder to retrain it"
        )
    return doc


def _clip01(v) -> float:
    return float(min(max(v, 0.0), 1.0)) if np.isfinite(v) else math.nan


def ablation_table(results: list[dict]) -> pd.DataFrame:
    """One row per combination, ranked by mean AUC (then mean accuracy); CIs clipped to [0, 1]."""
    published = {combo_name(c): a for c, a in STUDY_COMBINATIONS}
    published.update(STUDY_SINGLE)
    rows = []
    for r in results:
        row = {"combination": r["combination"], "n_sequences": len(r["sequences"]),
               "n_patients": r["n_patients"], "folds": len(r["folds"])}
        for k in METRICS:
            s = r["summary"][k]
            # every figure is a proportion: a t interval reaching past 0 or 1 is clipped there
            row.update({f"{k}_mean": s["mean"], f"{k}_sd": s["sd"], f"{k}_ci_low": _clip01(s["ci_low"]),
                        f"{k}_ci_high": _clip01(s["ci_high"])})
        row["study_val_accuracy_pct"] = published.get(r["combination"], math.nan)
        rows.append(row)
    t = pd.DataFrame(rows)
    t = t.sort_values(["auc_mean", "accuracy_mean"], ascending=False, na_position="last").reset_index(drop=True)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    return t


def _fmt(m, lo, hi) -> str:
    if not np.isfinite(m):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{m:.3f}"
    return f"{m:.3f} ({lo:.3f}-{hi:.3f})"


def ranked_text_table(table: pd.DataFrame) -> pd.DataFrame:
    """The ranked table as strings: 'mean (95 % CI)' per metric."""
    out = pd.DataFrame({"rank": table["rank"], "combination": table["combination"]})
    for k in METRICS:
        out[k] = [_fmt(m, lo, hi) for m, lo, hi in zip(table[f"{k}_mean"], table[f"{k}_ci_low"], table[f"{k}_ci_high"])]
    out["study val. accuracy"] = [f"{v:.2f} %" if np.isfinite(v) else "" for v in table["study_val_accuracy_pct"]]
    return out


def to_markdown(text: pd.DataFrame, title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(text.columns) + " |", "|" + "---|" * len(text.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in text.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def plot_ablation(table: pd.DataFrame, ax=None):
    """Horizontal bars of mean AUC and accuracy with 95 % CI per combination (ranked)."""
    from dlmvi.evaluate.display import subplots

    if ax is None:
        _, ax = subplots(figsize=(7, 0.45 * len(table) + 1.5))
    y = np.arange(len(table))[::-1]
    h = 0.38
    for off, k, color in ((h / 2, "auc", "C0"), (-h / 2, "accuracy", "C1")):
        m = table[f"{k}_mean"].to_numpy(dtype=float)
        lo = m - table[f"{k}_ci_low"].to_numpy(dtype=float)
        hi = table[f"{k}_ci_high"].to_numpy(dtype=float) - m
        err = np.vstack([np.nan_to_num(lo), np.nan_to_num(hi)])
        ax.barh(y + off, np.nan_to_num(m), height=h, color=color, xerr=err, capsize=2,
                label=f"{'AUC' if k == 'auc' else 'accuracy'} (mean, 95 % CI)")
    ax.axvline(0.5, color="0.5", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels(table["combination"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("cross-validated figure (out-of-fold, development cohort)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)  # outside: never hides a bar
    return ax


@dataclass
class AblationResult:
    """The ablation's tables, computed once (:func:`analyse_ablation`); :meth:`write` writes them.

    Attributes:
        table: one row per combination, ranked (ablation.csv).
        title: the tables' and the chart's title.
        note: how the intervals are computed (under every table).
        synthetic: the cache holds synthetic data (every output says so).
        doc: ablation.json.
    """

    table: pd.DataFrame
    title: str
    note: str
    synthetic: bool
    doc: dict

    @property
    def text(self) -> pd.DataFrame:
        """The ranked table as text (ablation.md, ablation.html)."""
        return ranked_text_table(self.table)

    @property
    def chart(self) -> pd.DataFrame:
        """What the chart shows (ablation_chart.csv)."""
        return self.table[["rank", "combination"]
                          + [f"{k}_{s}" for k in ("auc", "accuracy") for s in ("mean", "ci_low", "ci_high")]]

    def write(self, folder) -> None:
        """ablation.csv, .md, .html, ablation_chart.csv/.png and ablation.json in ``folder``."""
        from dlmvi.constants import SYNTHETIC_NOTICE
        from dlmvi.io.atomic import save_figure, write_csv, write_json, write_text

        out = Path(folder)
        title, note, text = self.title, self.note, self.text
        write_csv(out / ABLATION_CSV, self.table)
        syn = f"\n\n**{SYNTHETIC_NOTICE}**\n" if self.synthetic else ""
        write_text(out / "ablation.md", to_markdown(text, title) + "\n" + note + syn)
        html = (f"<html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>"
                + text.to_html(index=False, escape=True) + f"<p>{note}</p>"
                + (f"<p><strong>{SYNTHETIC_NOTICE}</strong></p>" if self.synthetic else "") + "</body></html>\n")
        write_text(out / "ablation.html", html)
        write_csv(out / "ablation_chart.csv", self.chart)
        ax = plot_ablation(self.table)
        ax.set_title(title + (" - synthetic data" if self.synthetic else ""), fontsize=9)
        save_figure(ax.figure, out / "ablation_chart.png")
        write_json(out / "ablation.json", self.doc)


def analyse_ablation(results: list[dict], *, cache, base, cfg_key: dict, combo_list, n_patients: int,
                     folds: int, seed: int) -> AblationResult:
    """The ablation's tables from the finished combinations' result.json documents.

    Args:
        results: one result.json document per combination.
        cache: the patch cache (its root, synthetic flag and harmonisation are recorded).
        base: the resolved base :class:`~dlmvi.train.config.TrainConfig`.
        cfg_key: the training settings every combination was trained with.
        combo_list: the combinations, in the order asked.
        n_patients: development patients (the same for every combination).
        folds, seed: the cross-validation's folds and seed.
    """
    table = ablation_table(results)
    title = f"Sequence ablation: {folds}-fold cross-validation by patient" + (
        f" on cohort {base.develop_cohort}" if base.develop_cohort else "") + f" (n = {n_patients})"
    note = ("Mean over folds with t-based 95 % CI (mean +- t(0.975, k-1) sd / sqrt(k)); out-of-fold "
            "predictions, first slice of each sequence, MVI present vs absent at dl_prob >= 0.5. "
            "'study val. accuracy' = the published single 9:1 split, for comparison.")
    doc = {
        "cache": str(cache.root), "folds": folds, "seed": seed, "training": cfg_key,
        "patients": n_patients, "combinations": ["+".join(c) for c in combo_list],
        "deduplicated_note": "T1V+T1D+T1 of the study is the same set as T1+T1D+T1V and is trained once",
        "ci_method": note, "synthetic": cache.synthetic,
        "harmonization": base.harmonization or (cache.meta.get("harmonization") or {}).get("method"),
    }
    return AblationResult(table, title, note, cache.synthetic, doc)


def run_ablation(cache_dir, out_dir, combos=None, base_config=None, folds: int = 5, seed: int = 0,
                 preset: str | None = None, develop_cohort: str | None = None, shard=None,
                 merge: bool = False) -> pd.DataFrame | None:
    """Cross-validate every sequence combination on the development cohort.

    Args:
        cache_dir: patch cache (see :mod:`dlmvi.preprocess.cache`) holding every needed sequence.
        out_dir: output folder (see the module docstring); rerunning skips finished combinations.
        combos: ``"default"`` (6 single sequences + the study's 7 distinct combinations),
            ``"all3"``, a ``"T1+T1V,T1D"`` string or a list of sequence tuples.
        base_config: :class:`~dlmvi.train.config.TrainConfig` (preset, epochs, classes,
            ``develop_cohort``, ...); its ``sequences``, ``folds`` and ``seed`` are replaced.
        folds: cross-validation folds (>= 2).
        seed: seed of the folds and of every model.
        preset, develop_cohort: shortcuts that replace those fields of ``base_config`` (default
            ``TrainConfig()``) when given.
        shard: a :class:`~dlmvi.train.shard.Shard` (or ``"I/N"``): train only every N-th
            combination from the I-th (a job of a job array). The share that finds every
            combination finished writes the tables.
        merge: write the tables from the finished combinations (of any number of shares);
            an unfinished combination is an error naming it.

    Returns:
        the ranked table written to ablation.csv, or ``None`` for a share whose partners
        have not finished yet.
    """
    from dlmvi.preprocess.cache import PatchCache
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.shard import Shard

    if folds < 2:
        raise ConfigError(f"--folds must be at least 2 for an ablation, got {folds}")
    if isinstance(shard, str):
        shard = Shard.parse(shard)
    if shard is not None and merge:
        raise ConfigError("--shard and --merge exclude each other: run the shares, then one --merge")
    base = base_config or TrainConfig()
    overrides = {k: v for k, v in (("preset", preset), ("develop_cohort", develop_cohort)) if v is not None}
    if overrides:
        base = TrainConfig(**{**base.to_dict(), **overrides})
    base = base.resolved()
    cache = PatchCache(cache_dir)
    combo_list = parse_combos(combos, cache.sequences)
    out = Path(out_dir)
    needed = tuple(s for s in SEQUENCES if any(s in c for c in combo_list))
    # the same patients for every combination, so that the folds are identical
    ids = cache.patient_ids(cohort=base.develop_cohort, sequences=needed)
    ids = [p for p, g in zip(ids, cache.grades(ids)) if g]  # unlabelled patients cannot be trained on
    if not ids:
        raise CacheError(
            f"no included patient with {', '.join(needed)}"
            + (f" in cohort {base.develop_cohort}" if base.develop_cohort else "")
            + f" in {cache.root} (its cohorts: {', '.join(cache.cohorts)})"
        )
    cfg_key = {k: v for k, v in TrainConfig(**{**base.to_dict(), "folds": folds, "seed": seed}).to_dict().items()}
    mine = set(combo_list if shard is None else shard.select(combo_list))
    results, missing = _train_combinations(cache, out, combo_list, mine, needed, ids, base, cfg_key, folds, seed,
                                           train=not merge)
    if missing and merge:
        raise ConfigError(
            f"{out}: cannot merge, combination(s) {', '.join(missing)} are not finished; run every share "
            "(`dlmvi ablate ... --shard I/N` for I = 1..N) to the end first"
        )
    if missing:
        return None  # other shares are still training; the last one to finish writes the tables
    result = analyse_ablation(results, cache=cache, base=base, cfg_key=cfg_key, combo_list=combo_list,
                              n_patients=len(ids), folds=folds, seed=seed)
    result.write(out)
    return result.table


def _train_combinations(cache, out: Path, combo_list, mine: set, needed: tuple, ids: list, base, cfg_key: dict,
                        folds: int, seed: int, train: bool) -> tuple[list[dict], list[str]]:
    """(result.json of every finished combination, names of the unfinished ones), training
    those of ``mine`` that are not finished when ``train``."""
    from dlmvi.train.inputs import TrainingInputs
    from dlmvi.train.run import network_config

    labels = cache.labels(ids, 2)
    input_size = network_config(base, 1).input_size
    inputs = None
    results, missing = [], []
    for combo in combo_list:
        folder = out / "combos" / "+".join(combo)
        doc = _load_result(folder / "result.json", cfg_key, folds, seed)
        if doc is None and combo in mine and train:
            if inputs is None:
                inputs = TrainingInputs(cache, ids, needed, input_size, base.harmonization)
            doc = run_combo(cache, inputs, needed, ids, labels, combo, folder, base, folds, seed)
        if doc is None:
            missing.append("+".join(combo))
        else:
            results.append(doc)
    return results, missing
