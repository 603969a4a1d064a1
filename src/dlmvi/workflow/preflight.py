"""``dlmvi study``'s check of every input, in seconds, before the first expensive stage.

It checks the run folder against the cohort, the column map, the clinical table (read once, by
the reader every stage uses), the development cohort and its classes, the clinical
configuration's variables and nomogram predictors, the survival columns (absent: a note) and
the images. A mistake ends the study with one message before anything is trained.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from dlmvi.errors import ClinicalTableError, CohortError, ConfigError, DlmviWarning


def check_settings(cfg) -> None:
    """Settings no study can run with: fewer than 2 folds; ``--transport`` without a development cohort."""
    if cfg.train.folds < 2:
        raise ConfigError(f"--folds {cfg.train.folds}: a study needs cross-validation (--folds 2 or more); without "
                          "it no development patient has a prediction from a model that did not see it, and no "
                          "figure of the development cohort could be honest")
    if cfg.transport and cfg.develop_cohort is None:
        raise ConfigError("--transport compares remedies on external cohorts: give --develop-cohort (e.g. 2015); "
                          "with --develop-cohort none every cohort is development")


def check_output(cfg, layout) -> None:
    """The run folder is not, and does not lie inside, the cohort folder (the cohort may sit inside
    RUN, as ``dlmvi demo`` puts it, but not inside a stage's folder)."""
    from dlmvi.io.atomic import guard_output

    cohort = Path(cfg.cohort)
    guard_output(layout.root, [cohort, cfg.columns])
    own = [layout.cache, layout.cache_raw, layout.train.root, layout.final_predictions.parent, layout.evaluate,
           layout.ablation, layout.shift, layout.clinical, layout.survival]
    guard_output(own + [layout.predictions, layout.report], [cohort], replaces=True, label="the study's output")


def check_table(cfg, table_path: Path, column_map, log):
    """Read clinical.csv as every stage reads it and check the configured variables are columns."""
    from dlmvi.io.tables import read_clinical
    from dlmvi.stats.config import DEFAULT_VARIABLES

    wanted = [*(cfg.clinical.variables or ()), *(cfg.clinical.nomogram_predictors or ())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DlmviWarning)
        table = read_clinical(table_path, column_map, numeric=[w for w in wanted if w not in ("dl_prob", "dl_mvi")])
    table.check()
    frame = table.frame
    columns = set(frame.columns) | {"dl_prob", "dl_mvi"}  # DL-MVI comes from the predictions
    for what, names in (("variables", cfg.clinical.variables), ("nomogram predictors",
                                                               cfg.clinical.nomogram_predictors)):
        missing = [v for v in (names or ()) if v not in columns]
        if missing:
            raise ClinicalTableError(
                f"{table_path}: the clinical configuration's {what} {missing} are not columns of the table "
                f"(it has {', '.join(map(str, frame.columns))}); fix --clinical-config or map your column "
                "names with --columns")
    if cfg.clinical.variables is None and not any(v in frame.columns for v in DEFAULT_VARIABLES):
        log(f"[preflight] note: clinical.csv has none of the Table 1 variables {list(DEFAULT_VARIABLES)}; "
            "Table 1 will hold DL-MVI only")
    dev = cfg.develop_cohort
    cohorts = sorted(set(frame["cohort"]))
    if dev is not None and dev not in cohorts:
        raise CohortError(f"{table_path}: --develop-cohort {dev!r} is not a cohort of the table (cohorts: "
                          f"{', '.join(cohorts)}); give one of them, or 'none' to use every patient")
    return table


def check_images(cfg, table_path: Path, column_map):
    """The development patients with every sequence, their labels and classes; returns
    (labelled development patients, patients without every image, where)."""
    from dlmvi.cohort.cohort import Cohort
    from dlmvi.preprocess.cache import grade_to_label

    cohort_dir = Path(cfg.cohort)
    dev = cfg.develop_cohort
    seqs = cfg.train.sequences or cfg.prepare.sequences
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DlmviWarning)
        cohort = Cohort.from_folder(cohort_dir, column_map)
    with_images = [p for p in cohort if all(s in p.sources for s in seqs)]
    without = sorted(set(cohort.patients) - {p.patient_id for p in with_images})
    if not (cohort_dir / "images").is_dir():
        raise CohortError(f"{cohort_dir}: no images/ folder; put each patient's sequences in "
                          "images/<patient_id>/ (see README)")
    dev_patients = [p for p in with_images if dev is None or p.cohort == dev]
    where = f"cohort {dev}" if dev is not None else "all cohorts"
    if not dev_patients:
        raise CohortError(f"{cohort_dir}: no patient of {where} has every sequence {', '.join(seqs)} "
                          f"under images/<patient_id>/; run `dlmvi validate {cohort_dir}`")
    labelled = [p for p in dev_patients if p.mvi_grade]
    if not labelled:
        raise CohortError(f"{table_path}: no patient of {where} has an mvi_grade; the study trains on patients "
                          "with a pathology result (M0, M1, M2)")
    from dlmvi.train.run import check_classes  # imports torch: after the quick checks

    check_classes(grade_to_label([p.mvi_grade for p in labelled], cfg.train.classes), cfg.train.classes,
                  cfg.train.folds, where)
    return labelled, without, where


def survival_outcomes(frame) -> list[str]:
    """The survival outcomes clinical.csv holds values of."""
    from dlmvi.stats.survival import OUTCOMES

    return [o for o, (t, e) in OUTCOMES.items() if t in frame.columns and e in frame.columns
            and (frame[t].notna() & frame[e].notna()).any()]


def _some(ids) -> str:
    return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")


def preflight(cfg, layout, log=print) -> dict:
    """Check, in seconds, every input the stages of the study ``cfg`` writing into ``layout`` will
    need; log what will be left out.

    Returns:
        what was found: ``patients``, ``labelled``, ``unlabelled``, ``survival`` (outcomes
        available), ``without_images`` (patients prepare will exclude), ``survival_columns``
        (whether the survival stage has anything to analyse).

    Raises:
        OutputError: the run folder is, or lies inside, the cohort folder.
        ConfigError: an unreadable column map; fewer than 2 folds; ``--transport`` without a
            development cohort.
        ClinicalTableError: any error of clinical.csv (file, patient, column, row), a
            configured variable or nomogram predictor that is not a column.
        CohortError: the development cohort is not in the table, lacks a class, has too
            few patients of a class for the folds, or has no patient with every image.
    """
    from dlmvi.io.tables import ColumnMap

    check_settings(cfg)
    check_output(cfg, layout)
    table_path = Path(cfg.cohort) / "clinical.csv"
    column_map = ColumnMap.from_toml(cfg.columns) if cfg.columns else None
    table = check_table(cfg, table_path, column_map, log)
    frame = table.frame
    labelled, without, where = check_images(cfg, table_path, column_map)
    seqs = cfg.train.sequences or cfg.prepare.sequences
    unlabelled = table.unlabelled_ids
    if without:
        log(f"[preflight] note: {len(without)} patient(s) lack a sequence of {', '.join(seqs)} (or their "
            f"images/ folder) and will be excluded: {_some(without)}")
    if unlabelled:
        log(f"[preflight] note: {len(unlabelled)} patient(s) have no mvi_grade: predicted, but left out of "
            f"training, evaluation and the statistics: {_some(unlabelled)}")
    survival = survival_outcomes(frame)
    if not survival and "surgery_date" not in frame.columns:
        log("[preflight] note: clinical.csv has no os_months/os_event or rfs_months/rfs_event values "
            "(nor dates); the survival stage will be skipped")
    log(f"[preflight] {table_path}: {len(frame)} patients, {len(labelled)} labelled with images in {where}; "
        "inputs checked")
    return {"patients": len(frame), "labelled": len(labelled), "unlabelled": unlabelled, "survival": survival,
            "without_images": without, "survival_columns": bool(survival) or "surgery_date" in frame.columns}
