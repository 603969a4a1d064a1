"""Federated training of DL-MVI across hospitals that cannot pool images (NVIDIA FLARE).

Every site trains the same network on its own prepared cohort; only weights, counts and
histogram landmarks leave it. Rooms, in the order a federation runs:

* :mod:`.config` - ``fed.toml``: sites, rounds, local epochs, FedAvg/FedProx, the study's preset
  and sequences, validated with one message per mistake;
* :mod:`.payload` - what travels (weights, counts, landmark sums) and the check every message
  passes before it leaves a site;
* :mod:`.site` - a site's work on its own cohort: patient-level split, harmonisation statistics,
  local training, evaluation of a model on its held-out patients;
* :mod:`.tables` - Table 1 and events per site as counts, small cells suppressed at the site;
* :mod:`.aggregate` - FedAvg (and FedProx's server side), pure numpy;
* :mod:`.state` - the coordinator's resumable state (last completed round);
* :mod:`.result` - the global model as an ordinary training run folder, the per-site tables;
* :mod:`.controller` / :mod:`.client` - the FLARE workflow and executor;
* :mod:`.jobs` - provisioning (certificates), starting the FLARE processes, submitting the job;
* :mod:`.simulate` - one machine: a cohort split into sites, each its own process on loopback.
"""
