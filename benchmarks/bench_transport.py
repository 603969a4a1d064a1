"""The phantom comparison of issue 17: taking the 2015 model to the 2018 cohort (SYNTHETIC).

Runs ``dlmvi study`` on the 321-patient phantom (2015 development, 2018 external,
``--normalization global`` = no image harmonisation, fast preset, seed 0) with
``--transport``: external AUC, calibration intercept and slope without harmonisation, with
Nyul, with ComBat on the features, with recalibration on half of 2018 (evaluated on the other
half, halves swapped). Then it cross-validates the same training with sequence dropout 0.2 to
measure what dropout costs on the development cohort when nothing is missing.

Not part of ``make test`` (about 75 minutes for the study and 15-60 for the dropout
cross-validation on 2 CPU cores, depending on what else runs). The numbers measured are in the
README ("Taking the model to another hospital"). Usage::

    .venv/bin/python benchmarks/bench_transport.py [--out runs/bench_transport] [--dropout 0.2]

Writes ``OUT/transport_benchmark.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import load_average  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/bench_transport")
    ap.add_argument("--patients", type=int, default=321)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=0.2)
    args = ap.parse_args(argv)

    import dataclasses

    import pandas as pd

    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.train.run import run_training
    from dlmvi.workflow.study import Study, StudyConfig

    out = Path(args.out)
    t0 = time.perf_counter()
    load0 = load_average()
    cohort = out / "cohort"
    if not (cohort / "clinical.csv").is_file():
        make_phantom(cohort, n_patients=args.patients, seed=args.seed, progress=False)
    cfg = StudyConfig.from_options(cohort, preset="fast", develop_cohort="2015", seed=args.seed,
                                   normalization="global", transport=True)
    Study(cfg, out / "run", log=print).run()
    t_study = time.perf_counter() - t0
    transport = json.loads((out / "run" / "transport" / "transport.json").read_text())
    cv_plain = json.loads((out / "run" / "train" / "cv_metrics.json").read_text())

    # the same cross-validation with sequence dropout
    tcfg = dataclasses.replace(cfg.train, sequence_dropout=args.dropout, progress=False)
    res = run_training(out / "run" / "cache", out / f"train_dropout_{args.dropout:g}", tcfg)
    cv_drop = res.cv_metrics
    # the same patients, the same folds: DeLong's test for the paired out-of-fold AUCs
    from dlmvi.evaluate.roc import delong_test

    plain = pd.read_csv(out / "run" / "train" / "cv_predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    drop = res.cv_predictions.set_index("patient_id").loc[plain.index]
    paired = delong_test(plain["label"].astype(int).to_numpy(), plain["dl_prob"].to_numpy(float),
                         drop["dl_prob"].to_numpy(float))
    doc = {
        "synthetic": True,
        "command": f"python benchmarks/bench_transport.py --out {args.out} --patients {args.patients} "
                   f"--seed {args.seed} --dropout {args.dropout:g}",
        "transport": transport["rows"],
        "combat_shift": pd.read_csv(out / "run" / "transport" / "combat_shift.csv").to_dict("records"),
        "sequence_dropout": {
            "p": args.dropout,
            "cv_auc_without_dropout": cv_plain["pooled_auc"], "cv_auc_with_dropout": cv_drop["pooled_auc"],
            "cv_auc_mean_without": cv_plain["auc_mean"], "cv_auc_mean_with": cv_drop["auc_mean"],
            "cost_pooled": cv_plain["pooled_auc"] - cv_drop["pooled_auc"],
            "cost_fold_mean": cv_plain["auc_mean"] - cv_drop["auc_mean"],
            "delong_paired": {k: float(v) for k, v in paired.items()},
            "sequence_removed_without_dropout": cv_plain.get("sequence_removed"),
            "sequence_removed_with_dropout": cv_drop.get("sequence_removed"),
        },
        "seconds": round(time.perf_counter() - t0, 1), "seconds_study": round(t_study, 1),
        "load_average": [load0, load_average()],
    }
    (out / "transport_benchmark.json").write_text(json.dumps(doc, indent=2, default=float))
    print(f"{'cohort':7s} {'remedy':38s} {'n':>4s} {'AUC':>6s} {'95% CI':>13s} {'cal.int':>8s} {'slope':>7s} {'Brier':>6s}")
    for r in transport["rows"]:
        print(f"{r['cohort']:7s} {r['remedy']:38s} {r['n']:4d} {r['auc']:6.3f} {r['auc_ci_low']:6.3f}-{r['auc_ci_high']:6.3f} "
              f"{r['calibration_intercept']:8.3f} {r['calibration_slope']:7.3f} {r['brier']:6.3f}")
    sd = doc["sequence_dropout"]
    print(f"sequence dropout {sd['p']}: pooled out-of-fold AUC {sd['cv_auc_without_dropout']:.3f} without, "
          f"{sd['cv_auc_with_dropout']:.3f} with (cost {sd['cost_pooled']:+.3f}); fold mean "
          f"{sd['cv_auc_mean_without']:.3f} vs {sd['cv_auc_mean_with']:.3f}; paired DeLong difference "
          f"{paired['diff']:.3f} (95 % CI {paired['ci_low']:.3f} to {paired['ci_high']:.3f}, p = {paired['p']:.2f})")
    print(f"total {doc['seconds']} s (load average {load0} -> {doc['load_average'][1]})")
    return doc


if __name__ == "__main__":
    main()
