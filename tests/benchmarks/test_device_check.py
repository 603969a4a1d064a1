"""benchmarks/device_check.py end to end on the CPU in a test-sized configuration.

On a GPU machine the same script trains the published network at 320 px; here a tiny network
at 32 px, 2 timed steps, and DDP through torchrun with 2 gloo processes. The numbers are not
speed claims (a shared 2-core CPU); the test checks that every figure is produced and adds up.
"""

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_device_check_runs_end_to_end_on_cpu(tmp_path):
    from dlmvi.model.network import NetworkConfig, flops_per_sample

    out = tmp_path / "results.json"
    out.write_text(json.dumps({"training": {"kept": 1}}))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import device_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    # in this process (monai is imported already); the DDP part runs torchrun with 2 processes
    device_check.main(["--device", "cpu", "--tiny", "--size", "32", "--steps", "2", "--warmup", "1",
                       "--matmul-size", "128", "--threads", "1", "--ddp", "2", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["training"] == {"kept": 1}  # other benchmarks' entries are kept
    dc = doc["device_check"]
    assert dc["environment"]["device"] == "cpu" and dc["matmul"]["n"] == 128 and dc["matmul"]["flops_per_s"] > 0
    runs = dc["configurations"]
    assert [(r["preset"], r["precision"], r["batch_size"], r["accumulate"]) for r in runs] == [
        ("paper", "fp32", 2, 1), ("paper", "bf16", 2, 1), ("recommended", "fp32", 8, 2), ("recommended", "bf16", 8, 2)]
    fwd = flops_per_sample(NetworkConfig(stem_width=8, widths=(4, 8), blocks=(1, 1), n_sequences=3, input_size=32))
    for r in runs:
        assert r["forward_gflops_per_sample"] == pytest.approx(fwd / 1e9)
        assert r["bare_samples_per_s"] > 0 and r["loop_samples_per_s"] > 0
        assert r["loop_vs_bare"] == pytest.approx(r["loop_samples_per_s"] / r["bare_samples_per_s"])
        assert r["train_flops_per_s"] == pytest.approx(3 * fwd * r["bare_samples_per_s"])
        assert r["fraction_of_matmul"] == pytest.approx(r["train_flops_per_s"] / dc["matmul"]["flops_per_s"])
        assert r["peak_memory_mib"] > 0 and r["steps"] == 2
    assert runs[0]["vs_fp32"] == 1.0 and runs[1]["vs_fp32"] == pytest.approx(
        runs[1]["bare_samples_per_s"] / runs[0]["bare_samples_per_s"])
    ddp = dc["ddp"]
    assert ddp["processes"] == ddp["world_size"] == 2, ddp.get("error")
    assert ddp["samples_per_s"] > 0 and math.isfinite(ddp["scaling"])
    assert ddp["scaling"] == pytest.approx(ddp["samples_per_s"] / (2 * runs[1]["bare_samples_per_s"]))
