"""Tests of src/dlmvi/deploy/model.py: the portable model folder and its loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import cachefactory
from factories import STUDY_NOMOGRAM
from dlmvi.errors import ModelError


SEQS = ("T1", "T1V", "T1D")
NOMOGRAM = {
    **STUDY_NOMOGRAM,
    "n": 149,
    "validation": {"2015": {"role": "development", "n": 149, "auc": 0.824, "brier": 0.17, "extra": 1}},
}


def make_run(root: Path, nomogram: bool = True, harmonization: dict | None = None) -> Path:
    """A run folder like `dlmvi study` writes: cache/, train/final/model, clinical/nomogram.json."""
    from dlmvi.model.checkpoint import save_checkpoint
    from dlmvi.model.network import NetworkConfig, build_network

    run = root / "run"
    cache = cachefactory.write_cache(run / "cache", n_patients=10, size=32, cohorts=("2015", "2018"))
    idx = pd.read_csv(cache / "index.csv", dtype={"patient_id": str})
    # spacing of training patients 0.7-0.9 mm in-plane, 4-6 mm slices; P008/P009 (not trained on) 2 mm / 10 mm
    idx.loc[(idx.patient_id == "P000") & (idx.sequence == "T1"), "spacing_mm"] = "0.7;0.7;4"
    idx.loc[(idx.patient_id == "P001") & (idx.sequence == "T1V"), "spacing_mm"] = "0.9;0.85;6"
    idx.loc[idx.patient_id.isin(["P008", "P009"]), "spacing_mm"] = "2;2;10"
    idx.to_csv(cache / "index.csv", index=False)
    if harmonization is not None:
        meta = json.loads((cache / "cache.json").read_text())
        meta["harmonization"] = harmonization
        (cache / "cache.json").write_text(json.dumps(meta))
    cfg = NetworkConfig(stem_width=4, widths=(4, 8), blocks=(1, 1), n_sequences=3, input_size=32)
    torch.manual_seed(0)
    model = build_network(cfg).eval()
    train_ids = [f"P00{i}" for i in range(6)]
    save_checkpoint(run / "train" / "final" / "model", model, {
        "network": cfg.to_dict(), "sequences": list(SEQS), "classes": 2,
        "class_names": ["MVI absent", "MVI present"],
        "prepare": json.loads((cache / "cache.json").read_text())["params"],
        "normalization": {"cache": "zscore", "per_image_zscore": False},
        "cache": {"path": str(cache)}, "synthetic": True,
        "split": {"train": train_ids, "val": ["P006", "P007"], "test": []},
    })
    if nomogram:
        (run / "clinical").mkdir(parents=True)
        (run / "clinical" / "nomogram.json").write_text(json.dumps(NOMOGRAM))
    (run / "study.json").write_text(json.dumps({"config": {"tta": False}}))
    return run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = make_run(root)
    from dlmvi.deploy.model import export_model

    export_model(run, root / "model", threshold=0.3)
    return run, root / "model"


def test_export_writes_config_and_identical_weights(exported):
    run, model_dir = exported
    doc = json.loads((model_dir / "model.json").read_text())
    assert doc["format"] == "dlmvi-model/1"
    assert doc["sequences"] == list(SEQS)
    assert doc["network"]["widths"] == [4, 8] and doc["network"]["input_size"] == 32
    assert doc["prepare"] == {"sequences": list(SEQS), "size": 32, "margin": 8, "n_slices": 3,
                              "normalization": "zscore"}
    assert doc["decision"] == {"dl_threshold": 0.5, "risk_threshold": 0.3}
    assert doc["synthetic"] is True and doc["harmonization"] is None
    assert (model_dir / "model.safetensors").read_bytes() == (run / "train/final/model.safetensors").read_bytes()
    nom = doc["nomogram"]
    assert nom["intercept"] == -3.51 and nom["coefficients"] == {"afp": 1.53, "dl_mvi": 3.58}
    assert nom["cutoffs"] == {"afp": 20.0} and nom["covariance"][2][2] == 0.23
    assert nom["validation"]["2015"] == {"role": "development", "n": 149, "auc": 0.824, "brier": 0.17}


def test_training_summary_counts_only_trained_patients(exported):
    _, model_dir = exported
    td = json.loads((model_dir / "model.json").read_text())["training_data"]
    # P000-P007: cohort = 2015 when i % 5 < 3 -> P000-P002, P005-P007; grades cycle M0 M1 M0 M2 M0 M1
    assert td["n"] == 8
    assert td["cohorts"] == {"2015": 6, "2018": 2}
    assert td["grades"] == {"M0": 4, "M1": 3, "M2": 1}
    assert td["n_mvi"] == 4 and td["prevalence"] == pytest.approx(0.5)
    assert td["spacing_mm"]["all"]["min"] == [0.7, 0.7, 4.0]
    assert td["spacing_mm"]["all"]["max"] == [0.9, 0.85, 6.0]
    assert td["spacing_mm"]["T1D"]["min"] == [0.8, 0.8, 5.0] and td["spacing_mm"]["T1D"]["max"] == [0.8, 0.8, 5.0]
    assert td["orientation"] is None  # the fake cache has no cohort folder to read headers from


def test_loaded_model_matches_checkpoint(exported):
    from dlmvi.deploy.model import load_model
    from dlmvi.model.checkpoint import load_checkpoint

    run, model_dir = exported
    em = load_model(model_dir)
    ck = load_checkpoint(run / "train")
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 3, 1, 32, 32)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(em.model(x).numpy(), ck.model(x).numpy(), rtol=0, atol=1e-6)
    assert em.sequences == SEQS and em.classes == 2 and em.risk_threshold == 0.3 and em.dl_threshold == 0.5
    assert em.prepare.size == 32 and em.synthetic and not em.tta


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "m"
    shutil.copytree(model_dir, dst)
    return dst


def _edit(model_dir: Path, **changes) -> None:
    p = model_dir / "model.json"
    doc = json.loads(p.read_text())
    for k, v in changes.items():
        doc[k] = v
    p.write_text(json.dumps(doc))


def test_unknown_format_version_is_refused(exported, tmp_path):
    from dlmvi.deploy.model import load_model

    m = _copy(exported[1], tmp_path)
    _edit(m, format="dlmvi-model/2")
    with pytest.raises(ModelError, match=r"model format version '2'.*reads version 1"):
        load_model(m)
    _edit(m, format="something-else")
    with pytest.raises(ModelError, match="not an exported dlmvi model"):
        load_model(m)


@pytest.mark.parametrize("change, pattern", [
    ({"requires": ["nomogram", "cross_attention"]}, "requires cross_attention"),
    ({"network": {"in_channels": 1, "stem_width": 4, "widths": [4, 8], "blocks": [1, 1], "n_sequences": 3,
                  "n_classes": 2, "input_size": 32, "norm": "batch", "attention": True}}, r"\['attention'\]"),
    ({"prepare": {"sequences": ["T1", "T1V", "T1D"], "size": 32, "margin": 8, "n_slices": 3,
                  "normalization": "histogram"}}, "cannot honour"),
    ({"harmonization": {"method": "combat"}}, "harmonisation 'combat'"),
    ({"weights": {"file": "model.pt"}}, r"'model.pt' refused"),
])
def test_settings_this_version_cannot_honour_are_refused(exported, tmp_path, change, pattern):
    from dlmvi.deploy.model import load_model

    m = _copy(exported[1], tmp_path)
    _edit(m, **change)
    with pytest.raises(ModelError, match=pattern):
        load_model(m)


def test_pickle_files_are_refused(exported, tmp_path):
    from dlmvi.deploy.model import load_model

    pkl = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, pkl)
    with pytest.raises(ModelError, match=r"pickle files \(\.pt\) are refused"):
        load_model(pkl)
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(pkl, folder / "model.pth")
    with pytest.raises(ModelError, match=r"pickle file\(s\) model.pth and no dlmvi model"):
        load_model(folder)


def test_tampered_weights_are_refused(exported, tmp_path):
    from dlmvi.deploy.model import load_model

    m = _copy(exported[1], tmp_path)
    data = bytearray((m / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (m / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum differs"):
        load_model(m)


def test_harmonization_and_missing_nomogram(tmp_path):
    from dlmvi.errors import DlmviWarning
    from dlmvi.deploy.model import export_model, load_model

    harm = {"format": "dlmvi-harmonization/1", "method": "nyul", "percentiles": [1, 50, 99],
            "landmarks": {s: [-2.0, 0.0, 2.0] for s in SEQS}}
    run = make_run(tmp_path, nomogram=False, harmonization=harm)
    with pytest.warns(DlmviWarning, match="no clinical/nomogram.json"):
        export_model(run, tmp_path / "model")
    em = load_model(tmp_path / "model")
    assert em.nomogram is None
    assert em.harmonization["landmarks"]["T1V"] == [-2.0, 0.0, 2.0]
    assert json.loads((tmp_path / "model" / "model.json").read_text())["requires"] == ["harmonization"]


def test_export_refuses_a_foreign_folder_and_bad_threshold(exported, tmp_path):
    from dlmvi.errors import ConfigError
    from dlmvi.deploy.model import export_model

    run, _ = exported
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(ModelError, match="not empty and holds no exported model"):
        export_model(run, tmp_path / "busy")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        export_model(run, tmp_path / "m", threshold=1.5)


def test_cli_export(exported, tmp_path, capsys):
    from dlmvi.cli import run_cli

    run, _ = exported
    assert run_cli(["export", str(run), str(tmp_path / "cli_model")]) == 0
    assert "trained on 8 patients; SYNTHETIC data; nomogram included" in capsys.readouterr().out
    assert (tmp_path / "cli_model" / "model.json").is_file()
