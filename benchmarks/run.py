"""``make bench``: every benchmark of issue 10, written to benchmarks/results.json.

Each figure is a ratio (or a time against a target) measured in the same run, because absolute
times drift on shared machines. Nothing here runs in ``make test``.

Usage: .venv/bin/python benchmarks/run.py [--quick] [--threads 2]
       [--only training,precision,cache16,prepare,inference,serve,stats,flops,annotate,radiomics,backends,pacs,federated[,compile][,import]]

``compile`` (torch.compile vs eager; minutes of compilation on a small CPU) and ``import`` run only when
named. ``backends`` (issue 31: PyTorch vs ONNX Runtime float32 vs int8 at 320 px) runs by default. The entries of other scripts in results.json (device_check, preset_curves) are kept.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import load_average, merge_results  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller cohorts and fewer steps")
    ap.add_argument("--only", default="training,precision,cache16,prepare,inference,serve,stats,flops,annotate,radiomics,backends,pacs,federated")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    q = args.quick
    res: dict = {"machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(),
                             "load_average_start": load_average()}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    rows = []
    if "training" in only:
        import bench_training

        res["training"] = {
            "fast": bench_training.loop_vs_bare("fast", threads=args.threads, steps=6 if q else 12),
            "fast_float16": bench_training.loop_vs_bare("fast", threads=args.threads, steps=6 if q else 12,
                                                        dtype="float16"),
            "paper": bench_training.loop_vs_bare("paper", n_patients=8, steps=2 if q else 4, threads=args.threads),
            "vs_monai": bench_training.versus_monai(n_patients=16 if q else 32, threads=args.threads),
            "vs_cached_monai": bench_training.versus_cached_monai(n_patients=16 if q else 32, threads=args.threads),
        }
        for k in ("fast", "fast_float16", "paper"):
            r = res["training"][k]
            rows.append((f"training loop / bare step ({k}, {r['size']} px)", f"{r['ratio']:.2f}", ">= 0.90"))
        rows.append(("epoch speed-up vs plain MONAI (fast)", f"{res['training']['vs_monai']['speedup']:.1f}x", "> 1"))
        cm = res["training"]["vs_cached_monai"]
        rows.append(("epoch speed-up vs MONAI CacheDataset+DataLoader (fast)", f"{cm['speedup']:.1f}x", "> 1"))
    if "precision" in only:
        import bench_training

        res["precision"] = {
            "fast": bench_training.precision_ratios("fast", threads=args.threads, steps=3 if q else 6),
            "paper_64px": bench_training.precision_ratios("paper", size=64, batch=4, threads=args.threads,
                                                          steps=1 if q else 2),
        }
        for k, r in res["precision"].items():
            v = r["vs_fp32"]
            rows.append((f"vs fp32 ({k}, {r['size']} px, batch {r['batch']}): bf16; fp16",
                         f"{v['bf16']:.2f}; {v['fp16']:.2f}", f"CPU {r['cpu_capability']}"))
            rows.append(("  channels-last fp32; channels-last bf16", f"{v['fp32_channels_last']:.2f}; "
                         f"{v['bf16_channels_last']:.2f}", ""))
    if "compile" in only:
        import bench_training

        c = res["compile"] = bench_training.compile_ratio("fast", threads=args.threads)
        rows.append(("torch.compile / eager (fast); compile s", f"{c['ratio']:.2f}; {c['compile_s']:.0f}", ""))
    if "cache16" in only:
        import bench_training

        c = res["cache16"] = bench_training.float16_cache(4 if q else 6)
        rows.append((f"float16 / float32 cache at {c['size']} px: disk; memory",
                     f"{c['disk_ratio']:.2f}; {c['memory_ratio']:.2f}", "0.50"))
        rows.append(("  MB per patient (3 seq) float32 -> float16",
                     f"{c['float32']['memory_mb_per_patient']:.2f} -> {c['float16']['memory_mb_per_patient']:.2f}", ""))
        rows.append(("  321 patients x 6 sequences in memory (GB)",
                     f"{c['float32']['study_cohort_6_sequences_gb']:.2f} -> "
                     f"{c['float16']['study_cohort_6_sequences_gb']:.2f}", ""))
    if "prepare" in only:
        import bench_prepare

        res["prepare"] = {"speed": bench_prepare.speed(20 if q else 40),
                          "memory": bench_prepare.memory(*((25, 100) if q else (100, 400)))}
        rows.append(("prepare / nibabel read floor", f"{res['prepare']['speed']['ratio']:.2f}", ">= 0.70"))
        m = res["prepare"]["memory"]
        rows.append((f"peak RSS {m['patients'][1]} / {m['patients'][0]} patients", f"{m['ratio']:.2f}", "<= 1.20"))
    if "inference" in only:
        import bench_inference

        res["inference"] = {"cohort": bench_inference.cohort(threads=args.threads),
                            "patient": bench_inference.patient_latency(threads=args.threads)}
        c = res["inference"]["cohort"]
        rows.append(("cohort inference patients/s (fast; TTA)", f"{c['patients_per_s']:.0f}; {c['patients_per_s_tta']:.0f}", ""))
        pl = res["inference"]["patient"]
        rows.append(("single patient, paper preset, files -> probability (s)", f"{pl['median_to_probability_s']:.2f}", "<= 1.0"))
        rows.append(("  ... with the spread over 27 combinations (s)", f"{pl['median_s']:.2f}", ""))
    if "serve" in only:
        import bench_serve

        res["serve"] = sv = bench_serve.run(threads=args.threads, repeats=3 if q else 5, cli_repeats=1 if q else 3)
        rows.append(("warm `dlmvi serve`, paper preset, zip upload -> result.json (s)", f"{sv['median_server_api_s']:.2f}",
                     "<= 1.0"))
        rows.append(("  ... the page's path, with the card and Grad-CAM (s)", f"{sv['median_server_page_with_card_s']:.2f}", ""))
        rows.append(("  `dlmvi predict-patient` on the same zip, new process (s)", f"{sv['median_cli_s']:.2f}", ""))
    if "stats" in only:
        import bench_stats

        res["stats"] = {"bootstrap": bench_stats.bootstrap(), "delong": bench_stats.delong()}
        rows.append(("2000 bootstrap AUC + calibration, n=321 (s)", f"{res['stats']['bootstrap']['seconds']:.2f}", "< 1"))
        d = res["stats"]["delong"]
        rows.append(("DeLong CI / paired test, n=100000 (s)", f"{d['ci_seconds']:.3f} / {d['paired_test_seconds']:.3f}", "< 1"))
    if "flops" in only:
        import bench_flops

        res["flops"] = bench_flops.run(res.get("training"), threads=args.threads)
        for k in ("fast", "paper"):
            f = res["flops"][k]
            frac = f.get("fraction_of_matmul")
            rows.append((f"FLOPs/sample fwd ({k}); train FLOP/s vs matmul", f"{f['forward_flops_per_sample']/1e9:.3f} G; "
                         + (f"{frac:.2f}" if frac is not None else "-"), ""))
    if "radiomics" in only:
        import bench_radiomics

        r = res["radiomics"] = bench_radiomics.run(n_patients=4 if q else 8)
        rows.append(("radiomics: MIRP bare call / dlmvi per patient", f"{r['ratio']:.2f}", ">= 0.80"))
        rows.append(("  rerun with an unchanged cache (s)", f"{r['cached_rerun_s']:.2f}", "seconds"))
    if "annotate" in only:  # issue 29
        import bench_annotate

        a = res["annotate"] = bench_annotate.run(patients=100 if q else 321)
        rows.append((f"`dlmvi annotate` worklist page warm, {a['patients']} patients (s)", f"{a['page_warm_median_s']:.2f}",
                     "< 2"))
        if a["browser_page_warm_median_s"] is not None:
            rows.append(("  ... in headless Chromium until every row is shown (s)",
                         f"{a['browser_page_warm_median_s']:.2f}", "< 2"))
        rows.append(("  carrying a box across six sequences; via the page's API (ms)",
                     f"{a['carry_six_sequences_median_ms']:.1f}; {a['carry_api_six_sequences_median_ms']:.1f}", "< 100"))
    if "federated" in only:  # issue 30: federated vs pooled on the phantom split into 3 sites (minutes)
        import bench_federated

        f = res["federated"] = bench_federated.main(["--out", "runs/bench_federated"]
                                                    + (["--patients", "60", "--rounds", "3"] if q else []))
        a = next(r for r in f["rows"] if r["site"] == "all sites")
        rows.append(("federated vs pooled AUC, all held-out (SYNTHETIC)",
                     f"{a['federated_auc'][0]:.3f} vs {a['pooled_auc'][0]:.3f}", "difference CI covers 0"))
        rows.append(("  MB sent per round; federated / pooled wall s", f"{f['bytes_per_round'][0] / 1e6:.2f}; "
                     f"{f['federated_wall_s']:.0f} / {f['pooled_training_s']:.0f}", ""))
    if "import" in only: __import__("bench_import").add_to(res, rows, quick=q)  # noqa: E701 (run with --only import)
    if "backends" in only: __import__("bench_backends").add_to(res, rows, quick=q, threads=args.threads)  # noqa: E701
    if "pacs" in only: __import__("bench_pacs").add_to(res, rows, quick=q)  # noqa: E701 (DICOM node vs in-process)
    res["machine"]["load_average_end"] = load_average()
    out = merge_results(res)
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'benchmark':<{w}}  {'value':>14}  target")
    for name, val, tgt in rows:
        print(f"{name:<{w}}  {val:>14}  {tgt}")
    print(f"(load average {res['machine']['load_average_start']} -> {res['machine']['load_average_end']}; written {out})")
    return res


if __name__ == "__main__":
    main()
