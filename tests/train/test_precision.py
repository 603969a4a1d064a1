"""Tests of src/dlmvi/train/precision.py and the optimisation step of src/dlmvi/train/engine.py:
bf16/fp16 autocast, the gradient scaler, channels-last, gradient accumulation, the learning-rate
schedule, torch.compile, and what fit records.

GPU paths cannot run here; every piece they use runs on the CPU: autocast to bf16 and fp16,
torch.amp.GradScaler("cpu") (the same class and calls as on CUDA), channels-last tensors.
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from cachefactory import TINY_NET, cpu_config, train_val_parts
from dlmvi.errors import ConfigError, ModelError
from dlmvi.model.network import NetworkConfig, build_network
from dlmvi.preprocess.cache import PatchCache
from dlmvi.preprocess.patches import load_patches
from dlmvi.train.config import TrainConfig, saved_training
from dlmvi.train.data import CombinationDataset
from dlmvi.train.engine import Stepper, fit, learning_rate, make_optimizer, step_groups
from dlmvi.train.precision import Precision, resolve_precision

NET = NetworkConfig(**TINY_NET)
SEQ = ("T1", "T1V", "T1D")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cache):
    """A tiny model trained 6 epochs on the planted signal (predictions spread over 0-1)."""
    (xt, yt), val = train_val_parts(tiny_cache)
    torch.set_num_threads(1)
    res = fit(CombinationDataset(xt, yt, SEQ, seed=0), val, NET, cpu_config(epochs=6),
              tmp_path_factory.mktemp("fit") / "m")
    x = load_patches(PatchCache(tiny_cache), PatchCache(tiny_cache).patient_ids(), SEQ, 32)
    return res.model.eval(), torch.from_numpy(x[:, :, 0])


def test_bf16_predictions_equal_fp32_within_tolerance(trained):
    """Same weights, the 40 patients' first slices: bf16 autocast vs fp32.

    Tolerance: 0.02 on P(MVI). bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.002
    per operation); over the network's few layers the probabilities move by far less than 0.02.
    """
    model, x = trained
    with torch.no_grad():
        p32 = torch.softmax(model(x), 1)[:, 1]
        with Precision("bf16", "cpu").autocast():
            logits = model(x)
        p16 = torch.softmax(logits.float(), 1)[:, 1]
    assert logits.dtype == torch.bfloat16  # the autocast did run in bf16
    assert p32.min() < 0.4 and p32.max() > 0.6  # a model whose predictions mean something
    assert (p16 - p32).abs().max().item() <= 0.02
    # the same decisions except where fp32 itself is within 0.02 of the threshold
    clear = (p32 - 0.5).abs() > 0.02
    assert torch.equal((p16 >= 0.5)[clear], (p32 >= 0.5)[clear])


def test_channels_last_gives_the_same_outputs(trained):
    """Tolerance 1e-5 on logits: channels-last only reorders memory (and the sum order of convolutions)."""
    model, x = trained
    with torch.no_grad():
        ref = model(x)
        model.set_memory_format(torch.channels_last)
        try:
            assert model.encoder.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
            got = model(x)
        finally:
            model.set_memory_format(torch.contiguous_format)
    assert torch.allclose(got, ref, atol=1e-5)


def _step_model(norm="instance"):
    torch.manual_seed(0)
    return build_network(NetworkConfig(stem_width=8, widths=(4, 8), blocks=(1, 1), n_sequences=3, input_size=32,
                                       norm=norm)).train()


def test_accumulated_micro_batches_equal_one_large_batch():
    """Instance norm (no batch statistics): micro-batches of 5 + 3 summed with their shares (5/8, 3/8)
    give the gradient of one batch of 8, hence the same Adam step (tolerance 1e-6)."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 1, 32, 32, generator=g), torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    cfg = cpu_config(optimizer="adamw", weight_decay=0.01, grad_clip=1.0).resolved()
    big, small = _step_model(), _step_model()
    s1 = Stepper(big, big, make_optimizer(big.parameters(), cfg), Precision("fp32", "cpu"), cfg.grad_clip)
    s1.micro_step(x, y, 1.0, last=True)
    s2 = Stepper(small, small, make_optimizer(small.parameters(), cfg), Precision("fp32", "cpu"), cfg.grad_clip)
    s2.micro_step(x[:5], y[:5], 5 / 8, last=False)
    assert all(p.grad is not None for p in small.parameters())  # accumulated, not yet stepped
    s2.micro_step(x[5:], y[5:], 3 / 8, last=True)
    for (k, a), b in zip(big.state_dict().items(), small.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert step_groups([8, 8, 8, 8, 3], 2) == [[8, 8], [8, 8], [3]]


def test_fp16_gradient_scaler_skips_overflowing_steps_and_backs_off():
    """The fp16 path steps through GradScaler: an overflowing scale skips the step (weights
    unchanged) and halves the scale; a normal scale steps like fp32 (tolerance 2e-3 on weights
    after one Adam step of lr 1e-3: fp16 rounding of the gradients)."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(4, 3, 1, 32, 32, generator=g), torch.tensor([0, 1, 1, 0])
    cfg = cpu_config().resolved()
    model = _step_model("batch")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    st = Stepper(model, model, make_optimizer(model.parameters(), cfg), Precision("fp16", "cpu"), grad_clip=1.0)
    assert st.scaler.is_enabled()
    st.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)  # gradients times 2^40 overflow float16
    st.micro_step(x, y, 1.0, last=True)
    assert st.scaler.get_scale() == 2.0**39
    for k, v in model.named_parameters():
        assert torch.equal(v, before[k]), k  # the step was skipped
    st.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    loss16, logits16 = st.micro_step(x, y, 1.0, last=True)
    assert logits16.dtype == torch.float32 and math.isfinite(loss16.item())
    ref = _step_model("batch")
    sr = Stepper(ref, ref, make_optimizer(ref.parameters(), cfg), Precision("fp32", "cpu"), grad_clip=1.0)
    sr.micro_step(x, y, 1.0, last=True)
    # Adam's first step moves every weight by about lr * sign(gradient): fp16 may flip the sign of
    # near-zero gradients only, so each weight is within 2 lr of fp32 and the signs mostly agree
    agree, total = 0, 0
    for (k, a), b in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=2 * cfg.lr + 1e-6), k
        d16, d32 = a - before[k], b - before[k]
        assert (d16 != 0).all(), k  # this time every weight moved
        agree += int((torch.sign(d16) == torch.sign(d32)).sum())
        total += d16.numel()
    print(f"fp16 vs fp32 update signs agree for {agree / total:.4f} of the weights")
    assert agree / total >= 0.95


def test_learning_rate_schedule():
    cfg = cpu_config(lr=1e-3, schedule="cosine", warmup_epochs=2).resolved()
    # 10 steps per epoch, 10 epochs: 20 warm-up steps, then 80 of cosine
    assert learning_rate(cfg, 0, 100, 10) == pytest.approx(1e-3 / 20)
    assert learning_rate(cfg, 19, 100, 10) == pytest.approx(1e-3)
    assert learning_rate(cfg, 20, 100, 10) == pytest.approx(1e-3)
    assert learning_rate(cfg, 60, 100, 10) == pytest.approx(0.5e-3)  # half-way: cos(pi/2) = 0
    assert learning_rate(cfg, 99, 100, 10) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 79 / 80)))
    const = cpu_config(lr=1e-3).resolved()
    assert {learning_rate(const, s, 100, 10) for s in (0, 50, 99)} == {1e-3}


def test_config_presets_and_precision_checks():
    rec = TrainConfig(preset="recommended").resolved()
    assert (rec.optimizer, rec.schedule, rec.accumulate, rec.batch_size, rec.warmup_epochs) == ("adamw", "cosine", 2, 8, 5)
    assert rec.effective_batch == 16
    paper = TrainConfig(preset="paper").resolved()
    assert (paper.optimizer, paper.lr, paper.batch_size, paper.accumulate, paper.schedule) == ("adam", 0.1, 2, 1, "constant")
    # settings saved before the new options existed resolve to what that version did
    old = {k: v for k, v in cpu_config().resolved().to_dict().items()
           if k not in ("optimizer", "weight_decay", "schedule", "warmup_epochs", "accumulate", "grad_clip",
                        "precision", "channels_last", "compile", "workers")}
    assert saved_training(old) == saved_training(cpu_config().resolved().to_dict())
    with pytest.raises(ConfigError, match="--precision must be one of fp32, bf16, fp16"):
        TrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match="--accumulate must be >= 1"):
        TrainConfig(accumulate=0)
    with pytest.raises(ConfigError, match="--optimizer must be one of adam, adamw"):
        TrainConfig(optimizer="sgd")
    assert resolve_precision("bf16", torch.device("cpu")).to_dict() == {
        "precision": "bf16", "device_type": "cpu", "autocast_dtype": "bfloat16", "grad_scaler": False}


def test_fit_fp16_resumes_exactly_and_records_execution(tmp_path, tiny_cache):
    """fp16 with accumulation, warm-up, cosine and clipping: an interrupted run resumes to the same
    weights (the scaler's state is in the checkpoint), and the checkpoint records how it trained."""
    (xt, yt), val = train_val_parts(tiny_cache)
    cfg = cpu_config(epochs=3, precision="fp16", accumulate=2, batch_size=4, optimizer="adamw", weight_decay=0.01,
               schedule="cosine", warmup_epochs=1, grad_clip=1.0)
    full = fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cfg, tmp_path / "a")

    class Interrupt(Exception):
        pass

    def stop_at_1(epoch, row):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cfg, tmp_path / "b", on_epoch_end=stop_at_1)
    last = json.loads((tmp_path / "b" / "last.json").read_text())
    assert last["grad_scaler"]["scale"] > 0 and last["optimizer"]["type"] == "AdamW"
    assert last["execution"]["precision"] == "fp16" and last["execution"]["grad_scaler"] is True
    assert last["execution"]["effective_batch"] == 8 and last["training"]["accumulate"] == 2
    resumed = fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cfg, tmp_path / "b")
    assert resumed.resumed_from == 1
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    pd.testing.assert_frame_equal(resumed.log.drop(columns="seconds"), full.log.drop(columns="seconds"))
    # execution settings may change on resume; a precision change may not
    with pytest.raises(Interrupt):
        fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cfg, tmp_path / "c", on_epoch_end=stop_at_1)
    with pytest.raises(ModelError, match="different training setting"):
        fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, TrainConfig(**{**cfg.to_dict(), "precision": "bf16"}),
            tmp_path / "c")
    other = fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET,
                TrainConfig(**{**cfg.to_dict(), "channels_last": True, "workers": 0}), tmp_path / "c")
    assert other.resumed_from == 1 and other.epochs_run == 3


def test_fit_bf16_channels_last_recommended_style_learns(tmp_path, tiny_cache):
    """bf16 autocast + channels-last + AdamW/warm-up/cosine/accumulation learns the planted signal
    (validation AUC >= 0.9; chance is 0.5) and returns a float32, contiguous model."""
    (xt, yt), val = train_val_parts(tiny_cache)
    cfg = cpu_config(epochs=6, precision="bf16", channels_last=True, optimizer="adamw", weight_decay=0.05,
               schedule="cosine", warmup_epochs=1, accumulate=2, batch_size=4, grad_clip=1.0, lr=3e-3)
    res = fit(CombinationDataset(xt, yt, SEQ, seed=0), val, NET, cfg, tmp_path / "m")
    assert res.log["val_auc"].iloc[res.best_epoch - 1] >= 0.9
    assert all(p.dtype == torch.float32 for p in res.model.parameters())
    assert res.model.memory_format == torch.contiguous_format


def test_compiled_training_matches_eager(tmp_path, tiny_cache, monkeypatch):
    """--compile goes through torch.compile; TorchDynamo's "eager" backend stands in for inductor,
    whose C++ compilation takes minutes on this 2-core CPU. Same weights as the plain run
    (tolerance 1e-5: the captured graph runs the same kernels)."""
    import dlmvi.train.engine as engine

    calls = []

    def compile_eager(net):
        calls.append(type(net).__name__)
        return torch.compile(net, backend="eager")

    monkeypatch.setattr(engine, "compile_network", compile_eager)
    (xt, yt), val = train_val_parts(tiny_cache)
    plain = fit(CombinationDataset(xt, yt, SEQ, seed=1), val, NET, cpu_config(epochs=2), tmp_path / "a")
    comp = fit(CombinationDataset(xt, yt, SEQ, seed=1), val, NET, cpu_config(epochs=2, compile=True), tmp_path / "b")
    assert calls == ["MultiSequenceNet"]
    for (k, a), b in zip(plain.model.state_dict().items(), comp.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k
    saved = json.loads((tmp_path / "b" / "model.json").read_text())
    assert saved["training"]["compile"] is True and not any(k.startswith("_orig_mod") for k in comp.model.state_dict())


def test_divergence_is_reported(tmp_path, tiny_cache):
    (xt, yt), val = train_val_parts(tiny_cache)
    xt = xt.copy()
    xt[0, 0, :, 0, 0] = np.inf  # an infinite input makes the loss NaN in the first epoch
    with pytest.raises(ModelError, match="training diverged at epoch 1"):
        fit(CombinationDataset(xt, yt, SEQ, seed=0, augment=False), val, NET, cpu_config(epochs=1), tmp_path / "m")


def test_fit_with_loader_workers_trains_the_same_model(tmp_path, tiny_cache):
    """--workers 2 (persistent worker processes, as on a GPU) gives the in-process model exactly."""
    (xt, yt), val = train_val_parts(tiny_cache)
    a = fit(CombinationDataset(xt, yt, SEQ, seed=5), val, NET, cpu_config(epochs=2), tmp_path / "a")
    b = fit(CombinationDataset(xt, yt, SEQ, seed=5), val, NET, cpu_config(epochs=2, workers=2), tmp_path / "b")
    for (k, u), v in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(u, v), k
    assert json.loads((tmp_path / "b" / "model.json").read_text())["execution"]["workers"] == 2
