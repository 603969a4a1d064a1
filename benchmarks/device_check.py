"""Device check: training speed of the published network on this machine's GPU(s), in minutes.

One command on a GPU machine (under 5 minutes on one modern GPU)::

    .venv/bin/python benchmarks/device_check.py

For each preset (``paper``: batch 2; ``recommended``: batch 8 x 2 accumulated) and precision
(fp32 and bf16; fp16 instead of bf16 on GPUs without bfloat16) it trains the preset's network
at 320 px (3 sequences) for a fixed number of optimisation steps on synthetic patches
(random values: speed does not depend on them) and reports

* ``bare_samples_per_s``: optimisation steps on a batch already on the device;
* ``loop_samples_per_s`` and ``loop_vs_bare``: the real input path of ``dlmvi train``
  (float16 patches in host memory, worker processes, pinned memory, augmentation on the
  device) around the same steps; the target is >= 0.9;
* ``peak_memory_mib``: ``torch.cuda.max_memory_allocated`` of that configuration (on a CPU
  the process's peak RSS so far);
* ``train_flops_per_s``: 3 x forward FLOPs per sample (counted by torch) x samples/s, and
  ``fraction_of_matmul``: that over the FLOP/s of a large bf16 matrix product measured in the
  same run (the attainable peak of the device, for this dtype).

With two or more GPUs (or ``--ddp N``) it also trains the first preset in bf16 under
``torchrun`` (DistributedDataParallel, one process per GPU, NCCL; gloo on CPUs), reports the
samples/s of all processes together and ``scaling`` = that / (N x one process's samples/s).

Results go into the ``device_check`` entry of ``benchmarks/results.json`` (other entries are
kept). ``--device cpu`` with a test-sized configuration runs the same code end to end on a CPU
(tests/benchmarks/test_device_check.py)::

    python benchmarks/device_check.py --device cpu --tiny --size 32 --steps 2 --warmup 1 \
        --matmul-size 128 --threads 1 --ddp 2 --out /tmp/results.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

TINY = {"stem_width": 8, "widths": (4, 8), "blocks": (1, 1)}  # test-sized network


def environment(device) -> dict:
    import platform

    import torch

    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "cpu_count": os.cpu_count(), "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   bf16=torch.cuda.is_bf16_supported(including_emulation=False),
                   cudnn=torch.backends.cudnn.version(), tf32_convolutions=torch.backends.cudnn.allow_tf32,
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return env


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_s(device, n: int, reps: int = 10) -> float:
    """FLOP/s of an n x n bf16 matrix product (2 n^3 per product) on ``device``."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(2):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return reps * 2 * n**3 / (time.perf_counter() - t0)


def network_for(preset: str, size: int, tiny: bool):
    from dlmvi.model.network import NetworkConfig
    from dlmvi.model.presets import get_preset

    p = get_preset(preset)
    shape = TINY if tiny else {"stem_width": p.stem_width, "widths": p.widths, "blocks": p.blocks}
    return NetworkConfig(**shape, n_sequences=3, n_classes=2, input_size=size)


def _peak_memory_mib(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _make(preset, precision, device, size, tiny, channels_last, compile_, distributed: bool = False):
    """Model, step function and training configuration of one measured configuration."""
    import torch

    from dlmvi.model.network import build_network
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.engine import Stepper, compile_network, make_optimizer
    from dlmvi.train.precision import prepare_model, resolve_precision

    cfg = TrainConfig(preset=preset, precision=precision, device=str(device), channels_last=channels_last,
                      compile=compile_, progress=False).resolved()
    net_cfg = network_for(preset, size, tiny)
    torch.manual_seed(0)
    model = build_network(net_cfg).to(device).train()
    prepare_model(model, channels_last)
    net, ddp = model, None
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = ddp = DDP(model, device_ids=[device.index or 0] if device.type == "cuda" else None)
    if compile_:
        net = compile_network(net)
    stepper = Stepper(net, model, make_optimizer(model.parameters(), cfg), resolve_precision(precision, device),
                      cfg.grad_clip, None, ddp)
    return cfg, net_cfg, model, stepper


def _run_steps(stepper, batches, accumulate: int, steps: int, device) -> float:
    """Seconds for ``steps`` optimisation steps of ``accumulate`` micro-batches from ``batches``."""
    it = iter(batches)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        for pos in range(accumulate):
            x, y = next(it)[:2]
            stepper.micro_step(x, y, 1.0 / accumulate, last=pos == accumulate - 1)
    _sync(device)
    return time.perf_counter() - t0


def measure(preset: str, precision: str, device, size: int, steps: int, warmup: int, tiny: bool,
            channels_last: bool, compile_: bool, workers: int | None) -> dict:
    """Bare and real-loop samples/s, peak memory and FLOP/s of one preset and precision."""
    import numpy as np
    import torch

    from dlmvi.model.network import flops_per_sample
    from dlmvi.train.data import CombinationDataset
    from dlmvi.train.engine import auto_workers

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    cfg, net_cfg, model, stepper = _make(preset, precision, device, size, tiny, channels_last, compile_)
    b, acc = cfg.batch_size, cfg.accumulate
    n_batches = (warmup + steps) * acc
    rng = np.random.default_rng(0)
    # synthetic float16 patches, as a float16 cache holds them (only the speed is measured);
    # a pool of patients visited epoch after epoch
    pool = max(64, 2 * b * acc)
    patches = rng.standard_normal((pool, 3, 3, size, size), dtype=np.float32).astype(np.float16)
    labels = rng.integers(0, 2, pool)
    x0 = torch.randn(b, 3, 1, size, size, device=device)
    y0 = torch.from_numpy(labels[:b]).to(device)
    bare = [(x0, y0)] * n_batches
    t_start = time.perf_counter()
    _run_steps(stepper, bare, acc, warmup, device)  # cudnn autotuning, compilation
    compile_s = time.perf_counter() - t_start
    t_bare = _run_steps(stepper, bare, acc, steps, device)
    n_workers = auto_workers(device, workers)
    ds = CombinationDataset(patches, labels, ("T1", "T1V", "T1D"), seed=0)
    loader = ds.loader(b, workers=n_workers, pin_memory=device.type == "cuda")
    try:
        batches = itertools.chain.from_iterable(loader.epoch(e, device) for e in itertools.count(1))
        _run_steps(stepper, batches, acc, warmup, device)
        t_loop = _run_steps(stepper, batches, acc, steps, device)
    finally:
        loader.close()
    samples = steps * acc * b
    bare_sps, loop_sps = samples / t_bare, samples / t_loop
    fwd = flops_per_sample(net_cfg)
    return {"preset": preset, "precision": precision, "input_px": size, "batch_size": b, "accumulate": acc,
            "channels_last": channels_last, "compile": compile_, "workers": n_workers, "steps": steps,
            "warmup_steps": warmup, "warmup_s": round(compile_s, 2),
            "bare_samples_per_s": bare_sps, "loop_samples_per_s": loop_sps, "loop_vs_bare": loop_sps / bare_sps,
            "peak_memory_mib": round(_peak_memory_mib(device), 1),
            "memory_kind": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS so far",
            "forward_gflops_per_sample": fwd / 1e9, "train_flops_per_s": 3 * fwd * bare_sps}


def ddp_worker(args) -> None:
    """One torchrun process: bare bf16 steps of the first preset under DistributedDataParallel."""
    import torch

    from dlmvi.train.engine import init_distributed, resolve_device

    dev_name = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    rank, world = init_distributed(dev_name)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if dev_name == "cuda" else resolve_device("cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)
    else:
        torch.backends.cudnn.benchmark = True  # as dlmvi train does on a GPU
    preset, precision = args.presets.split(",")[0], args.ddp_precision
    cfg, _, model, stepper = _make(preset, precision, device, args.size, args.tiny, device.type == "cuda", False,
                                   distributed=True)
    b, acc = cfg.batch_size, cfg.accumulate
    x0 = torch.randn(b, 3, 1, args.size, args.size, device=device)
    y0 = torch.randint(0, 2, (b,), device=device)
    bare = [(x0, y0)] * ((args.warmup + args.steps) * acc)
    _run_steps(stepper, bare, acc, args.warmup, device)
    import torch.distributed as dist

    dist.barrier()
    t = _run_steps(stepper, bare, acc, args.steps, device)
    times = [None] * world
    dist.all_gather_object(times, t)
    if rank == 0:
        total = world * args.steps * acc * b / max(times)
        Path(args.worker_out).write_text(json.dumps({"world_size": world, "samples_per_s": total,
                                                     "per_process_batch": b, "accumulate": acc}))
    dist.destroy_process_group()


def run_ddp(args, n: int) -> dict:
    """Launch ``n`` processes through torchrun; return their combined samples/s."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
               str(Path(__file__).resolve()), "--worker-ddp", "--worker-out", str(out), "--device", args.device,
               "--presets", args.presets, "--size", str(args.size), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--ddp-precision", args.ddp_precision] + (["--tiny"] if args.tiny else [])
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.ddp_timeout)
        if proc.returncode != 0 or not out.is_file():
            return {"processes": n, "error": (proc.stderr or proc.stdout)[-2000:]}
        return {"processes": n, **json.loads(out.read_text())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (a GPU when present), cuda, cuda:1 or cpu")
    ap.add_argument("--presets", default="paper,recommended")
    ap.add_argument("--precisions", default="fp32,bf16", help="bf16 becomes fp16 on GPUs without bfloat16")
    ap.add_argument("--size", type=int, default=320, help="input side, pixels (the study: 320)")
    ap.add_argument("--steps", type=int, default=30, help="timed optimisation steps per configuration")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (autotuning, compilation)")
    ap.add_argument("--matmul-size", type=int, default=8192)
    ap.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                    help="auto: on for GPUs (tensor-core layout), off on CPUs")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the network (adds minutes)")
    ap.add_argument("--workers", type=int, default=None, help="loader processes (default: dlmvi train's)")
    ap.add_argument("--ddp", type=int, default=None, help="processes for the DDP run (default: every GPU; 0: none)")
    ap.add_argument("--ddp-precision", default="bf16")
    ap.add_argument("--ddp-timeout", type=int, default=240)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads of torch (0: its default)")
    ap.add_argument("--tiny", action="store_true", help="a test-sized network (8-4-8 channels) for CPU tests")
    ap.add_argument("--out", default=None, help="results file (default: benchmarks/results.json)")
    ap.add_argument("--worker-ddp", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_ddp:
        ddp_worker(args)
        return {}

    import torch

    from dlmvi.train.engine import resolve_device

    t_start = time.perf_counter()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as dlmvi train does on a GPU (fixed shapes)
    env = environment(device)
    precisions = args.precisions.split(",")
    if device.type == "cuda" and not env["bf16"]:
        precisions = ["fp16" if p == "bf16" else p for p in precisions]
        args.ddp_precision = "fp16" if args.ddp_precision == "bf16" else args.ddp_precision
    channels_last = device.type == "cuda" if args.channels_last == "auto" else args.channels_last == "on"
    # bf16 products are emulated on CPUs without AVX512-BF16/AMX: keep the CPU's one small
    matmul_n = args.matmul_size if device.type == "cuda" else min(args.matmul_size, 512)
    mm = matmul_flops_per_s(device, matmul_n)
    runs = []
    for preset in args.presets.split(","):
        for precision in precisions:
            r = measure(preset, precision, device, args.size, args.steps, args.warmup, args.tiny, channels_last,
                        args.compile, args.workers)
            r["fraction_of_matmul"] = r["train_flops_per_s"] / mm
            runs.append(r)
            print(f"{preset:12s} {precision:5s} {r['bare_samples_per_s']:9.1f} samples/s bare, loop/bare "
                  f"{r['loop_vs_bare']:.2f}, peak {r['peak_memory_mib']:.0f} MiB, {r['train_flops_per_s'] / 1e12:.2f} "
                  f"TFLOP/s = {r['fraction_of_matmul']:.2f} of the bf16 matmul", flush=True)
    for preset in args.presets.split(","):
        ref = next((r for r in runs if r["preset"] == preset and r["precision"] == "fp32"), None)
        for r in runs:
            if ref is not None and r["preset"] == preset:
                r["vs_fp32"] = r["bare_samples_per_s"] / ref["bare_samples_per_s"]
    n_ddp = args.ddp if args.ddp is not None else (env["cuda_devices"] if device.type == "cuda" else 0)
    ddp = None
    if n_ddp and n_ddp >= 2:
        ddp = run_ddp(args, n_ddp)
        one = next((r for r in runs if r["preset"] == args.presets.split(",")[0]
                    and r["precision"] == args.ddp_precision), None)
        if "samples_per_s" in ddp and one is not None:
            ddp["single_process_samples_per_s"] = one["bare_samples_per_s"]
            ddp["scaling"] = ddp["samples_per_s"] / (n_ddp * one["bare_samples_per_s"])
        print(f"DDP {n_ddp} processes: " + (f"{ddp['samples_per_s']:.1f} samples/s, scaling "
                                            f"{ddp.get('scaling', float('nan')):.2f}" if "samples_per_s" in ddp
                                            else f"failed: {ddp['error'][-300:]}"), flush=True)
    doc = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "data": "synthetic random patches (speed only)",
           "environment": env, "matmul": {"n": matmul_n, "dtype": "bfloat16", "flops_per_s": mm},
           "configurations": runs, "ddp": ddp, "seconds": round(time.perf_counter() - t_start, 1),
           "target_loop_vs_bare": 0.9, "tiny_network": args.tiny}
    from common import RESULTS, merge_results

    path = merge_results({"device_check": doc}, args.out or RESULTS)
    print(f"matmul bf16 {mm / 1e12:.2f} TFLOP/s; {doc['seconds']} s; written to {path}")
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
