"""Federated training without FLARE's processes: fed.toml messages, what may travel, FedAvg,
federated harmonisation = pooled fit, suppressed tables, and the coordinator's study driven
in-process (sites left out, resume from the last completed round).

The same code runs under FLARE in tests/workflow/test_federated_processes.py."""

from __future__ import annotations

import numpy as np
import pytest

from dlmvi.errors import ConfigError
from dlmvi.workflow.federated.config import config_from_toml, load_config

TINY = {"input_size": 32, "stem_width": 8, "widths": [4, 8], "blocks": [1, 1]}


def toml(**sections):
    doc = {"sites": {"hospital_a": {}, "hospital_b": {}}, "network": dict(TINY)}
    doc.update(sections)
    return doc


# ---------------------------------------------------------------------------- fed.toml
@pytest.mark.parametrize("doc, message", [
    ({"sites": {}}, "no site; add one"),
    (toml(federation={"rounds": 0}), r"rounds = 0 is invalid; an integer >= 1"),
    (toml(federation={"algorithm": "fedsgd"}), r"algorithm = 'fedsgd' is invalid; one of fedavg, fedprox"),
    (toml(federation={"min_sites": 3}), r"min_sites = 3 is invalid; at most the number of sites \(2\)"),
    (toml(federation={"epochs": 3}), r"unknown key 'epochs' in \[federation\]"),
    (toml(study={"preset": "huge"}), r"preset: unknown preset 'huge'"),
    (toml(study={"sequences": ["T1", "T9"]}), r"sequences = \('T1', 'T9'\) is invalid"),
    (toml(sites={"hospital_a": {"preset": "paper"}, "hospital_b": {}}),
     r"\[sites.hospital_a\] preset = 'paper' differs from the federation's preset = 'fast'"),
    (toml(sites={"2018": {}, "hospital_b": {}}), r"\[sites.2018\] = '2018' is invalid; a site name starts with a letter"),
    (toml(trainer={}), r"unknown section \[trainer\]"),
])
def test_bad_fed_toml_one_clear_message(doc, message):
    with pytest.raises(ConfigError, match=message):
        config_from_toml(doc, "fed.toml")


def test_fed_toml_file_and_unknown_sites(tmp_path):
    path = tmp_path / "fed.toml"
    path.write_text('[federation]\nrounds = 3\n[study]\nharmonization = "global"\n[sites.hospital_a]\n[sites.hospital_b]\n')
    cfg = load_config(path)
    assert (cfg.rounds, cfg.harmonization, cfg.sites) == (3, "global", ("hospital_a", "hospital_b"))
    with pytest.raises(ConfigError, match=r"has site\(s\) hospital_c that \[sites\] does not name"):
        cfg.check_sites(["hospital_a", "hospital_b", "hospital_c"], "column 'site'")
    with pytest.raises(ConfigError, match=r"site\(s\) hospital_b of \[sites\] not found in column 'site'"):
        cfg.check_sites(["hospital_a"], "column 'site'")
    path.write_text("[federation\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


# ---------------------------------------------------------------------------- what travels
def test_payload_refuses_ids_paths_and_voxels():
    from dlmvi.workflow.federated.payload import PayloadError, check_outgoing, vocabulary

    vocab = vocabulary(["hospital_a"])
    shapes = {"fc.weight": (2, 4)}
    ok = check_outgoing({"fc.weight": np.zeros((2, 4), np.float32), "table1": np.zeros((3, 2, 2), np.int64)},
                        {"site": "hospital_a", "n_train": 12, "loss": 0.5}, vocab, shapes)
    assert ok == 2 * 4 * 4 + 3 * 2 * 2 * 8 + len('{"site": "hospital_a", "n_train": 12, "loss": 0.5}')
    with pytest.raises(PayloadError, match="text 'P0001' may not leave the site"):
        check_outgoing({}, {"site": "hospital_a", "worst": ["P0001"]}, vocab | {"worst"}, shapes)
    with pytest.raises(PayloadError, match="text '/data/hcc/images' may not leave"):
        check_outgoing({}, {"site": "/data/hcc/images"}, vocab, shapes)
    with pytest.raises(PayloadError, match="1024 values in shape \\(32, 32\\).*image data may not leave"):
        check_outgoing({"table1": np.zeros((32, 32))}, {}, vocab, shapes)
    with pytest.raises(PayloadError, match="neither a network weight nor a statistic"):
        check_outgoing({"patch/T1": np.zeros(3)}, {}, vocab, shapes)
    with pytest.raises(PayloadError, match="shape \\(4, 2\\) is not the network's \\(2, 4\\)"):
        check_outgoing({"fc.weight": np.zeros((4, 2))}, {}, vocab, shapes)


def test_fedavg_weights_by_samples():
    from dlmvi.workflow.federated.aggregate import fedavg

    a = {"w": np.array([0.0, 2.0], np.float32), "num_batches_tracked": np.array(3)}
    b = {"w": np.array([3.0, 5.0], np.float32), "num_batches_tracked": np.array(7)}
    out = fedavg([(a, 10), (b, 30)])
    np.testing.assert_allclose(out["w"], [2.25, 4.25])  # (10 * a + 30 * b) / 40
    assert out["w"].dtype == np.float32 and int(out["num_batches_tracked"]) == 7


def test_tables_suppress_small_cells():
    import pandas as pd

    from dlmvi.workflow.federated.tables import SUPPRESSED, VARIABLES, site_counts, tables_frame

    n = 20
    clinical = pd.DataFrame({"afp": [30.0] * 12 + [5.0] * 8, "sex": [0] * 17 + [1] * 3, "rfs_event": [1] * 9 + [0] * 11})
    present = np.array([1] * 10 + [0] * 10)
    table, events = site_counts(clinical, present, min_cell=5)
    i_afp = [v[0] for v in VARIABLES].index("afp")
    # afp > 20: 10 present + 2 absent (2 suppressed); <= 20: 0 present, 8 absent
    assert table[i_afp].tolist() == [[8, 0], [SUPPRESSED, 10]]
    assert events.tolist() == [n, 10, 9, -2]  # os_event not recorded
    t1, ev = tables_frame({"hospital_a": (table, events)}, 5)
    row = t1[(t1["variable"] == "afp") & (t1["level"] == "> 20")].iloc[0]
    assert (row["mvi_absent"], row["mvi_present"]) == ("<5", "10")
    assert ev.iloc[0]["os_events"] == "not recorded"


def test_federated_nyul_equals_pooled_fit():
    """Sites send landmark sums and moment sums; the landmarks equal a fit on the pooled images."""
    from dlmvi.preprocess.harmonize import (Harmonizer, nyul_image_moments, nyul_mapped_landmarks, standard_landmarks,
                                            standard_scale)

    rng = np.random.default_rng(0)
    site_a = [rng.gamma(2.0, 50.0, (3, 16, 16)) for _ in range(5)]
    site_b = [3.0 * rng.gamma(3.0, 40.0, (3, 16, 16)) + 100 for _ in range(7)]
    sums = [np.concatenate([[len(s)], nyul_mapped_landmarks(s).sum(axis=0)]) for s in (site_a, site_b)]
    total = np.sum(sums, axis=0)
    scale = standard_scale(total[1:], int(total[0]))
    moments = [(m.sum(), q.sum()) for m, q in (nyul_image_moments(s, scale) for s in (site_a, site_b))]
    fed = standard_landmarks(scale, sum(m for m, _ in moments), sum(q for _, q in moments), 12)
    pooled = Harmonizer("nyul").fit({"T1": site_a + site_b}).document_["landmarks"]["T1"]
    np.testing.assert_allclose(fed, pooled, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- the coordinator in-process
def _site_folder(root, make_cache, name, n, seed, one_class=False):
    import json

    from dlmvi.preprocess.cache import PatchCache

    folder = root / name
    make_cache(folder / "cache", n_patients=n, seed=seed, normalization="none")
    if one_class:  # every labelled patient M1
        import pandas as pd

        p = pd.read_csv(folder / "cache" / "patients.csv", dtype=str, keep_default_na=False)
        p.loc[p["mvi_grade"] != "", "mvi_grade"] = "M1"
        p.to_csv(folder / "cache" / "patients.csv", index=False)
    assert PatchCache(folder / "cache").patient_ids()
    (folder / "site.json").write_text(json.dumps({"site": name}))
    return folder


def _in_process_send(tasks, log, fail_at=None):
    """The coordinator's ``send`` without FLARE: each site's real task handler and payload check."""
    from dlmvi.workflow.federated.payload import check_outgoing, vocabulary

    def send(task, params, meta, targets, timeout):
        if fail_at and fail_at(task, meta):
            raise KeyboardInterrupt("coordinator killed")
        log.append((task, meta.get("round")))
        out = {}
        for s in targets:
            p, m = tasks[s].handle(task, {k: np.asarray(v) for k, v in params.items()}, dict(meta))
            check_outgoing(p, m, vocabulary(tasks[s].site.cfg.sites), tasks[s].shapes)
            out[s] = (p, m)
        return out
    return send


@pytest.fixture(scope="module")
def three_sites(tmp_path_factory):
    from cachefactory import write_cache

    root = tmp_path_factory.mktemp("fedsites")
    return {"hospital_a": _site_folder(root, write_cache, "hospital_a", 16, 1),
            "hospital_b": _site_folder(root, write_cache, "hospital_b", 16, 2),
            "hospital_c": _site_folder(root, write_cache, "hospital_c", 12, 3, one_class=True)}


def _coordinator(folders, out, log, rounds=2, fail_at=None, **study):
    from dlmvi.workflow.federated.coordinator import Coordinator
    from dlmvi.workflow.federated.site import Site
    from dlmvi.workflow.federated.tasks import SiteTasks

    doc = {"sites": {s: {} for s in folders}, "network": dict(TINY),
           "federation": {"rounds": rounds, "min_sites": 2, "algorithm": "fedprox", "mu": 0.1},
           "study": {"folds": 3, "harmonization": "nyul", "local_models": False, **study}}
    cfg = config_from_toml(doc)
    tasks = {s: SiteTasks(Site(s, f, cfg)) for s, f in folders.items()}
    lines = []
    return Coordinator(cfg, out, _in_process_send(tasks, log, fail_at), log=lines.append), lines


def test_one_class_site_left_out_and_resume_after_last_round(three_sites, tmp_path):
    """hospital_c has one class: left out, named; a coordinator killed in round 2 resumes after
    round 1 and ends with the weights of an uninterrupted run."""
    from dlmvi.workflow.federated.coordinator import FederationError

    log = []
    whole, lines = _coordinator(three_sites, tmp_path / "whole", log)
    st, metrics, _ = whole.run()
    assert whole.excluded == {"hospital_c": "one_class"}
    assert any("site hospital_c: left out of the study" in l for l in lines)
    assert [t for t, _ in log] == ["summary", "moments", "train", "train", "evaluate"]
    assert sorted(metrics["global"]) == ["hospital_a", "hospital_b"]
    assert st.history[0]["sites"] == ["hospital_a", "hospital_b"] and st.round == 2

    killed, _ = _coordinator(three_sites, tmp_path / "resumed", [],
                             fail_at=lambda task, meta: task == "train" and meta["round"] == 2)
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    log2 = []
    again, lines2 = _coordinator(three_sites, tmp_path / "resumed", log2)
    st2, _, _ = again.run()
    assert any("resuming after round 1 of 2" in l for l in lines2)
    assert [t for t, _ in log2] == ["train", "evaluate"] and log2[0][1] == 2
    for k in st.weights:
        np.testing.assert_array_equal(st2.weights[k], st.weights[k])

    with pytest.raises(ConfigError, match="other settings \\(algorithm\\)"):
        c, _ = _coordinator(three_sites, tmp_path / "resumed", [], rounds=3)
        c.cfg = c.cfg.__class__.from_dict({**c.cfg.to_dict(), "algorithm": "fedavg"})
        c.run()
    two = {k: v for k, v in three_sites.items() if k != "hospital_b"}
    with pytest.raises(FederationError, match=r"1 usable site\(s\) \(hospital_a\).*site hospital_c: fewer patients"):
        _coordinator(two, tmp_path / "too_few", [])[0].run()


def test_site_whose_images_lack_a_sequence_is_refused_by_name(tmp_path):
    from factories import write_cohort

    from dlmvi.errors import CacheError
    from dlmvi.workflow.federated.site import prepare_site

    cohort = write_cohort(tmp_path / "cohort", n=3, sequences=("T1", "T1V"))
    cfg = config_from_toml(toml())
    with pytest.raises(CacheError, match=r"site hospital_a: no usable patient in .*T1D: sequence T1D is missing "
                                         r"\(expected images/P000/T1D.nii.gz"):
        prepare_site(cohort, tmp_path / "site", cfg, "hospital_a")


def test_a_job_that_ends_just_as_the_coordinator_ends_it_is_finished():
    """FLARE refuses to abort a job that ended a moment ago (seen under load): the coordinator then
    reads the job's status again and reports it finished; a job still running is an error."""
    from nvflare.fuel.flare_api.api_spec import InternalError

    from dlmvi.workflow.federated.jobs import follow_job

    class Session:  # the admin API at the moment of the race (FLARE cannot be timed to hit it)
        def __init__(self, statuses):
            self.statuses = list(statuses)

        def get_job_meta(self, job_id):
            return {"status": self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]}

        def abort_job(self, job_id):
            raise InternalError(f"server internal error: Job {job_id} is not running.")

    assert follow_job(Session(["RUNNING", "FINISHED:COMPLETED"]), "j", 60, finished=lambda: True,
                      grace=-1) == "FINISHED:COMPLETED"
    with pytest.raises(InternalError):
        follow_job(Session(["RUNNING"]), "j", 60, finished=lambda: True, grace=-1)
