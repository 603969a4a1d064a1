"""Tests of src/dlmvi/model/checkpoint.py."""

import json

import pytest
import torch

from dlmvi.errors import ModelError
from dlmvi.model.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from dlmvi.model.network import NetworkConfig, build_network

TINY = NetworkConfig(stem_width=8, widths=(4, 8), blocks=(1, 1), n_sequences=3, input_size=32)
META = {"network": TINY.to_dict(), "sequences": ["T1", "T1V", "T1D"], "classes": 2,
        "split": {"train": ["P001"], "val": ["P002"], "test": []}}


def _trained_pair():
    torch.manual_seed(0)
    net = build_network(TINY)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(4, 3, 1, 32, 32), torch.tensor([0, 1, 0, 1])
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), opt, x


def test_roundtrip_weights_config_and_optimizer(tmp_path):
    net, opt, x = _trained_pair()
    path = save_checkpoint(tmp_path / "last", net, META, opt)
    assert path.name == "last.json"
    doc = json.loads(path.read_text())
    assert doc["format"] == CHECKPOINT_FORMAT and doc["dlmvi_version"] == "0.1.0"
    assert doc["split"]["val"] == ["P002"] and doc["optimizer"]["type"] == "Adam"
    ck = load_checkpoint(tmp_path / "last.safetensors", with_optimizer=True)
    assert ck.network == TINY and ck.sequences == ("T1", "T1V", "T1D")
    assert torch.equal(ck.model(x), net(x))
    ref = opt.state_dict()
    assert set(ck.optimizer_state["state"]) == set(ref["state"])
    for pid, st in ref["state"].items():
        assert torch.equal(ck.optimizer_state["state"][pid]["exp_avg_sq"], st["exp_avg_sq"])
        assert float(ck.optimizer_state["state"][pid]["step"]) == 2.0
    opt2 = torch.optim.Adam(ck.model.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizer_state)  # accepted by torch


def test_folder_finds_model(tmp_path):
    net, _, x = _trained_pair()
    save_checkpoint(tmp_path / "run" / "final" / "model", net, META)
    assert torch.equal(load_checkpoint(tmp_path / "run").model(x), net(x))
    assert torch.equal(load_checkpoint(tmp_path / "run" / "final").model(x), net(x))


def test_pickle_checkpoints_are_refused(tmp_path):
    net, _, _ = _trained_pair()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ModelError, match="pickle files"):
        load_checkpoint(tmp_path / "model.pt")
    # one refusal for every loader: a scikit-learn pickle too, and a folder of pickles only
    (tmp_path / "pickles").mkdir()
    (tmp_path / "pickles" / "model.joblib").write_bytes(b"not read")
    for target in (tmp_path / "pickles" / "model.joblib", tmp_path / "pickles"):
        with pytest.raises(ModelError, match="pickle files"):
            load_checkpoint(target)
    # a pickle in disguise is not unpickled either
    save_checkpoint(tmp_path / "m", net, META)
    torch.save(net.state_dict(), tmp_path / "m.safetensors")
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "m")


def test_unknown_format_or_setting(tmp_path):
    net, _, _ = _trained_pair()
    path = save_checkpoint(tmp_path / "m", net, META)
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "format": "dlmvi-checkpoint/9"}))
    with pytest.raises(ModelError, match="cannot read"):
        load_checkpoint(path)
    path.write_text(json.dumps({**doc, "network": {**doc["network"], "attention_heads": 4}}))
    with pytest.raises(ModelError, match=r"\['attention_heads'\] that this version of dlmvi cannot honour"):
        load_checkpoint(path)
    path.write_text(json.dumps({**doc, "network": {**doc["network"], "widths": [4, 16]}}))
    with pytest.raises(ModelError, match="do not fit the network"):
        load_checkpoint(path)


def test_missing_files(tmp_path):
    with pytest.raises(ModelError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(ModelError, match="expected x.json and x.safetensors"):
        load_checkpoint(tmp_path / "x.json")


def test_interrupted_overwrite_is_detected(tmp_path):
    """Weights from one save paired with the JSON of another (kill between the two renames)."""
    from dlmvi.model.checkpoint import InconsistentCheckpointError

    net, opt, _ = _trained_pair()
    save_checkpoint(tmp_path / "a" / "last", net, META, opt)
    torch.manual_seed(1)
    other = build_network(TINY)
    save_checkpoint(tmp_path / "b" / "last", other, META, opt)
    (tmp_path / "b" / "last.safetensors").replace(tmp_path / "a" / "last.safetensors")
    with pytest.raises(InconsistentCheckpointError, match="does not belong to last.json"):
        load_checkpoint(tmp_path / "a" / "last")
