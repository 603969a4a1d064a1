"""DistributedDataParallel under torchrun: 2 CPU processes on gloo train one epoch and agree."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dlmvi.model.checkpoint import load_checkpoint

WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from safetensors.torch import save_file
    torch.set_num_threads(1)
    from dlmvi.model.network import NetworkConfig
    from dlmvi.preprocess.cache import PatchCache
    from dlmvi.train.config import TrainConfig
    from dlmvi.preprocess.patches import load_patches
    from dlmvi.train.data import CombinationDataset
    from dlmvi.train.engine import fit, init_distributed

    cache, out = PatchCache(sys.argv[1]), Path(sys.argv[2])
    rank, world = init_distributed("cpu")
    seq = ("T1", "T1V", "T1D")
    ids = cache.patient_ids()
    x, y = load_patches(cache, ids, seq, 32), cache.labels(ids)
    net = NetworkConfig(stem_width=8, widths=(4, 8), blocks=(1, 1), n_sequences=3, input_size=32)
    cfg = TrainConfig(preset="fast", epochs=1, batch_size=4, lr=1e-2, device="cpu", progress=False)
    ds = CombinationDataset(x[:32], y[:32], seq, seed=0)
    res = fit(ds, (x[32:], y[32:]), net, cfg, out / "model")
    # test-only: every rank reports what it trained on and the weights it ended with
    save_file({k: v.contiguous() for k, v in res.model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    order, _ = ds.epoch_plan(1, rank, world)
    (out / f"rank{rank}.json").write_text(json.dumps({"world": world, "patients": order.tolist()}))
    """
)


@pytest.mark.slow
def test_two_gloo_processes_agree(tmp_path, tiny_cache):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir()
    env_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(script), str(tiny_cache), str(out)]
    proc = subprocess.run(env_cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert set(r0["patients"]) | set(r1["patients"]) == set(range(32))
    assert not set(r0["patients"]) & set(r1["patients"])  # 32 patients split 16 / 16
    w0, w1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # only rank 0 wrote the checkpoint; it holds the same weights and trained one epoch
    ck = load_checkpoint(out / "model")
    assert ck.meta["progress"]["epoch"] == 1
    for k, v in ck.model.state_dict().items():
        assert torch.equal(v, w0[k]), k
    torch.manual_seed(0)
    from dlmvi.model.network import build_network

    init = build_network(ck.network).state_dict()
    assert not np.allclose(init["classifier.weight"].numpy(), w0["classifier.weight"].numpy())
