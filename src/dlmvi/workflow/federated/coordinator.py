"""The coordinator's study, engine-independent: what is asked of the sites, in which order.

1. ``summary``: each site's counts (patients per class, Table 1, events) and, with a fitted
   harmonisation, its training images' landmark sums; a site with one class, without labelled
   patients or prepared otherwise than the federation goes out of the study with a line naming
   it (the study stops when fewer than ``min_sites`` remain);
2. ``moments`` (Nyul only): the second step of the pooled fit, so the federation's landmarks
   equal those of a fit on every site's training patients pooled;
3. ``train`` x rounds: the global weights out, each site's update back, FedAvg; a site that does
   not answer within ``round_timeout`` (dropped out, crashed) is left out of the round, named;
   the state is saved after every round (resume);
4. ``evaluate``: the global model on each site's held-out patients; each site also trains its
   local-only model (the same epochs in total) and sends it;
5. ``cross_evaluate``: every local model on every site's held-out patients.

``send(task, params, meta, targets, timeout)`` is the engine (FLARE's controller,
:mod:`.controller`); it returns ``{site: (params, meta)}`` of the sites that answered.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from dlmvi.errors import DlmviError
from dlmvi.workflow.federated.aggregate import fedavg
from dlmvi.workflow.federated.state import FederationState, load_state, save_state


class FederationError(DlmviError):
    """The federation cannot go on (too few usable sites); the message names them."""


#: Seconds at least that a task other than a training round waits for a site.
SETUP_TIMEOUT = 600

REASONS = {"one_class": "fewer patients of a class than folds (one class only?)",
           "no_labelled": "no labelled patient with every sequence", "mismatch": "prepared otherwise than the federation",
           "no_answer": "did not answer", "dropped_out": "dropped out during the rounds"}


class Coordinator:
    """Runs the study of :mod:`this module <dlmvi.workflow.federated.coordinator>`.

    Args:
        cfg: the :class:`~dlmvi.workflow.federated.config.FedConfig`.
        out: the coordinator's run folder.
        send: the engine (see the module docstring).
        log: where progress lines go.
    """

    def __init__(self, cfg, out, send: Callable, log: Callable[[str], None] = print):
        self.cfg, self.out, self.send, self.log = cfg, out, send, log
        self.excluded: dict[str, str] = {}
        self.bytes_sent = 0

    def ask(self, task: str, params: dict, meta: dict, targets, timeout=None) -> dict:
        """Send a task; ``timeout``: a training round's ``round_timeout``, else
        :data:`SETUP_TIMEOUT` at least (a site's first task waits for its FLARE job process to start)."""
        timeout = max(self.cfg.round_timeout, SETUP_TIMEOUT) if timeout is None else timeout
        self.bytes_sent += sum(int(np.asarray(v).nbytes) for v in params.values()) * len(targets)
        got = self.send(task, params, dict(meta, task=task), list(targets), int(timeout))
        for site in targets:
            if site not in got:
                self.log(f"site {site}: no answer to {task} within {timeout} s; going on without it")
        return got

    def usable(self, sites, where: str) -> list[str]:
        ok = [s for s in sites if s not in self.excluded]
        if len(ok) < self.cfg.min_sites:
            why = "; ".join(f"site {s}: {REASONS.get(r, r)}" for s, r in self.excluded.items())
            raise FederationError(f"{where}: {len(ok)} usable site(s) ({', '.join(ok) or 'none'}), the federation needs "
                                  f"min_sites = {self.cfg.min_sites}. {why}")
        return ok

    # ---- stages
    def summaries(self, sites) -> dict:
        net = self.cfg.network_config()
        got = self.ask("summary", {}, {}, sites)
        for s in sites:
            if s not in got:
                self.excluded[s] = "no_answer"
                continue
            _, meta = got[s]
            if meta.get("status") != "ok":
                self.excluded[s] = meta.get("reason", "excluded")
            elif meta.get("input_size") != net.input_size:
                self.excluded[s] = "mismatch"
            if s in self.excluded:
                self.log(f"site {s}: left out of the study: {REASONS.get(self.excluded[s], self.excluded[s])}")
        self.usable(sites, "summary")
        return got

    def harmonization(self, got: dict, sites) -> dict | None:
        from dlmvi.preprocess.harmonize import harmonization_document, standard_landmarks, standard_scale

        method = self.cfg.harmonization
        if method == "none":
            return None
        seqs = self.cfg.sequences
        if method == "global":
            params = {}
            for seq in seqs:
                n, s1, s2 = np.sum([got[s][0][f"global_sum/{seq}"] for s in sites], axis=0)
                mu = s1 / n
                params[seq] = [float(mu), float(np.sqrt(max(s2 / n - mu**2, 0.0))) or 1.0]
            return harmonization_document("global", params)
        sums = {seq: np.sum([got[s][0][f"nyul_sum/{seq}"] for s in sites], axis=0) for seq in seqs}
        scales = {seq: standard_scale(v[1:], int(v[0])) for seq, v in sums.items()}
        mom = self.ask("moments", {f"nyul_sum/{seq}": scales[seq] for seq in seqs}, {}, sites)
        sites = [s for s in sites if s in mom]
        self.usable(sites, "harmonisation")
        params, counts = {}, {}
        for seq in seqs:
            n, m1, m2 = np.sum([mom[s][0][f"moments/{seq}"] for s in sites], axis=0)
            params[seq] = [float(v) for v in standard_landmarks(scales[seq], m1, m2, int(n))]
            counts[seq] = int(n)
        return harmonization_document("nyul", params, counts)

    def rounds(self, st: FederationState, sites) -> FederationState:
        cfg = self.cfg
        mu = cfg.mu if cfg.algorithm == "fedprox" else 0.0
        for r in range(st.round + 1, cfg.rounds + 1):
            t0, b0 = time.perf_counter(), self.bytes_sent
            meta = {"round": r, "first_epoch": (r - 1) * cfg.local_epochs + 1, "mu": mu,
                    "harmonization": st.harmonization}
            got = self.ask("train", st.weights, meta, sites, timeout=cfg.round_timeout)
            answered = [s for s in sites if s in got]
            if len(answered) < cfg.min_sites:
                missing = [s for s in sites if s not in got]
                raise FederationError(f"round {r}: only {len(answered)} site(s) answered ({', '.join(answered) or 'none'}; "
                                      f"missing {', '.join(missing)}), min_sites = {cfg.min_sites}; the state of round "
                                      f"{st.round} is saved: rerun `dlmvi federated run` to resume")
            updates = [({k: v for k, v in got[s][0].items()}, got[s][1]["n_samples"]) for s in answered]
            received = sum(int(np.asarray(v).nbytes) for w, _ in updates for v in w.values())
            st.weights = fedavg(updates)
            st.round = r
            st.history.append({"round": r, "sites": answered, "dropped": [s for s in sites if s not in got],
                               "losses": {s: got[s][1]["loss"] for s in answered},
                               "bytes_to_sites": self.bytes_sent - b0, "bytes_from_sites": received,
                               "seconds": round(time.perf_counter() - t0, 2)})
            save_state(self.out, st)
            self.log(f"round {r}/{cfg.rounds}: {len(answered)} site(s), mean local loss "
                     f"{np.mean([got[s][1]['loss'] for s in answered]):.3f}")
            for s in sites:
                if s not in got:
                    self.excluded[s] = "dropped_out"
                    self.log(f"site {s}: dropped out in round {r}; the remaining rounds and the evaluation go on "
                             "without it")
            sites = answered
        return st, sites

    def evaluation(self, st: FederationState, sites) -> tuple[dict, dict]:
        """(metrics[model][site], local weights per site)."""
        meta = {"model": "global", "local_epochs": self.cfg.rounds * self.cfg.local_epochs,
                "train_local": bool(self.cfg.local_models), "harmonization": st.harmonization}
        got = self.ask("evaluate", st.weights, meta, sites)
        metrics = {"global": {s: got[s][1] for s in sites if s in got}}
        local = {s: {k: v for k, v in got[s][0].items() if not k.startswith("events/")}
                 for s in sites if s in got and self.cfg.local_models}
        if local:
            params = {f"{s}/{k}": v for s, w in local.items() for k, v in w.items()}
            cross = self.ask("cross_evaluate", params, {"models": list(local), "harmonization": st.harmonization},
                             sites)
            for s, (_, m) in cross.items():
                for model, entry in m["metrics"].items():
                    metrics.setdefault(model, {})[s] = entry
        return metrics, local

    def run(self):
        """The whole study; returns (state, metrics, local weights, summaries)."""
        from dlmvi.workflow.federated.local import initial_weights

        cfg = self.cfg
        st = load_state(self.out, cfg.to_dict())
        sites = list(cfg.sites)
        if st is None:
            got = self.summaries(sites)
            sites = self.usable(sites, "summary")
            st = FederationState(0, initial_weights(cfg.network_config(), cfg.seed), None, cfg.to_dict())
            st.harmonization = self.harmonization(got, sites)
            st.summaries = {s: {"meta": got[s][1], "table1": np.asarray(got[s][0]["table1"]).tolist(),
                                "events": np.asarray(got[s][0]["events"]).tolist()} for s in got}
            st.config["excluded"] = dict(self.excluded)
            save_state(self.out, st)
        else:
            self.excluded = dict(st.config.get("excluded", {}))
            sites = self.usable(sites, "resume")
            self.log(f"resuming after round {st.round} of {cfg.rounds} (saved state in {self.out})")
        st, sites = self.rounds(st, sites)
        metrics, local = self.evaluation(st, sites)
        return st, metrics, local


__all__ = ["Coordinator", "FederationError"]
