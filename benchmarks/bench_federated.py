"""Federated vs pooled training on the phantom split into 3 sites (issue 30; SYNTHETIC).

Sites: ``site_a`` and ``site_b`` = the two halves of the 2015 cohort (scanner A), ``site_c`` = the
2018 cohort (scanner B). ``dlmvi federated simulate`` trains the global model (FedAvg, ``--rounds``
rounds of ``--local-epochs`` epochs, fast preset, federated Nyul harmonisation, each site's fold 1
of 4 held out) with every site its own process over loopback (real FLARE, mutual TLS). The pooled
model trains the same network with the same local optimiser for the same total epochs on the
union of the sites' training patients (the same patients the federation trained on, the same
Nyul landmarks, which equal a pooled fit), in one process. Both are scored on the same held-out
patients: AUC with DeLong CI per site and pooled, the paired DeLong difference, bytes sent per
round, wall time.

Not part of ``make test``; ``make bench`` runs it with ``--only federated`` (or ``--quick``: 60
patients, 3 rounds). Usage::

    .venv/bin/python benchmarks/bench_federated.py [--out runs/bench_federated] [--patients 120]
        [--rounds 10] [--local-epochs 1]

Writes ``OUT/federated_benchmark.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import load_average  # noqa: E402

SITES = ("site_a", "site_b", "site_c")


def split_phantom(cohort: Path, dest: Path) -> Path:
    """A copy of the cohort (images linked) whose clinical.csv has a ``site`` column."""
    import pandas as pd

    dest.mkdir(parents=True, exist_ok=True)
    t = pd.read_csv(cohort / "clinical.csv", dtype=str, keep_default_na=False)
    dev = t.index[t["cohort"] == "2015"]
    half = set(dev[: len(dev) // 2])
    t["site"] = ["site_c" if c != "2015" else ("site_a" if i in half else "site_b") for i, c in zip(t.index, t["cohort"])]
    t.to_csv(dest / "clinical.csv", index=False)
    for name in ("cohort.json", "README_SYNTHETIC.txt"):
        shutil.copyfile(cohort / name, dest / name)
    if not (dest / "images").exists():
        os.symlink((cohort / "images").resolve(), dest / "images")
    return dest


def pooled_model(run: Path, cfg):
    """The pooled model: every site's training patients in one place, same epochs in total."""
    import numpy as np

    from dlmvi.workflow.federated.local import initial_weights, local_train
    from dlmvi.workflow.federated.site import Site
    from dlmvi.workflow.federated.state import load_state

    st = load_state(run, cfg.to_dict())
    sites = {s: Site(s, run / "sites" / s / "work", cfg) for s in SITES}
    xs, ys = [], []
    for s in sites.values():
        x = s.inputs(st.harmonization)
        xs.append(s.part(x, s.train_ids))
        ys.append(s.labels_of(s.train_ids))
    from dataclasses import replace

    tc = replace(cfg.train_config(), epochs=cfg.rounds * cfg.local_epochs)
    t0 = time.perf_counter()
    w, _, _ = local_train(initial_weights(cfg.network_config(), cfg.seed), cfg.network_config(), np.concatenate(xs),
                          np.concatenate(ys), cfg.sequences, tc, 12345, 1, 0.0)
    return w, sites, st, time.perf_counter() - t0


def compare(run: Path, cfg) -> dict:
    import numpy as np
    import pandas as pd

    from dlmvi.evaluate.roc import delong_auc_ci, delong_test
    from dlmvi.model.inference import predict_arrays
    from dlmvi.workflow.federated.local import network_from

    w, sites, st, pooled_s = pooled_model(run, cfg)
    net = network_from(w, cfg.network_config())
    rows, ys, fed_all, pool_all = [], [], [], []
    for name, s in sites.items():
        fed = pd.read_csv(s.paths.predictions("global"), dtype={"patient_id": str}).set_index("patient_id")
        x = s.part(s.inputs(st.harmonization), s.test_ids).astype(np.float32)
        p_pool = predict_arrays(net, x)[0][:, 1:].sum(axis=1)
        y = (s.labels_of(s.test_ids) > 0).astype(int)
        p_fed = fed.loc[s.test_ids, "dl_prob"].to_numpy()
        rows.append(_row(name, y, p_fed, p_pool, delong_auc_ci, delong_test))
        ys.append(y), fed_all.append(p_fed), pool_all.append(p_pool)
    rows.append(_row("all sites", np.concatenate(ys), np.concatenate(fed_all), np.concatenate(pool_all),
                     delong_auc_ci, delong_test))
    return {"rows": rows, "pooled_training_s": round(pooled_s, 1)}


def _row(name, y, p_fed, p_pool, ci, test) -> dict:
    f, p = ci(y, p_fed), ci(y, p_pool)
    d = test(y, p_fed, p_pool)
    return {"site": name, "n": int(len(y)), "events": int(y.sum()), "federated_auc": f, "pooled_auc": p,
            "difference": {k: float(v) for k, v in d.items()}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/bench_federated")
    ap.add_argument("--patients", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.workflow.federated.config import FedConfig
    from dlmvi.workflow.federated.simulate import simulate

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    load0 = load_average()
    cohort = make_phantom(out / "phantom", n_patients=args.patients, seed=args.seed, size=64, progress=False)
    sited = split_phantom(Path(cohort), out / "cohort")
    cfg = FedConfig(sites=SITES, name="bench", rounds=args.rounds, local_epochs=args.local_epochs, seed=args.seed,
                    harmonization="nyul", local_models=False, round_timeout=1800)
    t0 = time.perf_counter()
    simulate(sited, out / "run", site_column="site", cfg=cfg)
    fed_s = time.perf_counter() - t0
    cfg = FedConfig.from_dict(json.loads((out / "run" / "federation.json").read_text())["config"])
    res = compare(out / "run", cfg)
    doc = json.loads((out / "run" / "federation.json").read_text())
    res.update({"synthetic": True, "patients": args.patients, "rounds": args.rounds, "local_epochs": args.local_epochs,
                "federated_wall_s": round(fed_s, 1), "bytes_per_round": doc["bytes_per_round"],
                "seconds_per_round": [r["seconds"] for r in doc["rounds"]], "engine": doc["engine"],
                "load_average": [load0, load_average()]})
    (out / "federated_benchmark.json").write_text(json.dumps(res, indent=2))
    print("SYNTHETIC phantom, 3 sites (site_c = the 2018 scanner); AUC (95 % DeLong CI) on held-out patients")
    for r in res["rows"]:
        f, p, d = r["federated_auc"], r["pooled_auc"], r["difference"]
        print(f"{r['site']:>9s} n={r['n']:3d}: federated {f[0]:.3f} ({f[1]:.3f}-{f[2]:.3f})  pooled {p[0]:.3f} "
              f"({p[1]:.3f}-{p[2]:.3f})  difference {d['diff']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f}) p={d['p']:.3f}")
    print(f"bytes per round: {res['bytes_per_round'][0] / 1e6:.2f} MB; wall: federated {fed_s:.0f} s (incl. prepare and "
          f"FLARE start-up), pooled training {res['pooled_training_s']:.0f} s")
    return res


if __name__ == "__main__":
    main()
