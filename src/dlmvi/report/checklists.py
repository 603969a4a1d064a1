"""Reporting checklists of the study report: TRIPOD+AI (2024) and CLAIM (2024 update).

Every item keeps its published number and a short paraphrase of its topic (the full wording
is in the guidelines: Collins et al., BMJ 2024;385:e078378 for TRIPOD+AI; Tejani et al.,
Radiol Artif Intell 2024;6(4):e240300 for CLAIM). An item is either **filled from the run**
(with the run's own numbers and settings) or marked **to complete by the authors** - what
software cannot know (ethics, funding, registration, annotators, the clinical setting).
Nothing is claimed that the run did not do.
"""

from __future__ import annotations

import pandas as pd

TO_COMPLETE = "to complete by the authors"
FILLED = "filled from the run"

#: TRIPOD+AI 2024: (item, section, topic paraphrase).
TRIPOD_AI = [
    ("1", "Title", "study identified as developing/evaluating a prediction model, population, outcome"),
    ("2", "Abstract", "abstract following TRIPOD+AI for Abstracts"),
    ("3a", "Background", "healthcare context, rationale, existing models"),
    ("3b", "Background", "target population, intended purpose and users in the care pathway"),
    ("3c", "Background", "known health inequalities between groups"),
    ("4", "Objectives", "objectives: development and/or validation"),
    ("5a", "Data", "data sources for development and evaluation; representativeness"),
    ("5b", "Data", "dates of accrual and follow-up"),
    ("6a", "Participants", "study setting, number and location of centres"),
    ("6b", "Participants", "eligibility criteria"),
    ("6c", "Participants", "treatments received and how they were handled"),
    ("7", "Data preparation", "pre-processing and quality checking"),
    ("8a", "Outcome", "outcome definition, time horizon, how and when assessed"),
    ("8b", "Outcome", "qualifications of outcome assessors"),
    ("8c", "Outcome", "blinding of outcome assessment"),
    ("9a", "Predictors", "choice of initial predictors and pre-selection"),
    ("9b", "Predictors", "definition and measurement of all predictors"),
    ("9c", "Predictors", "qualifications of predictor assessors"),
    ("10", "Sample size", "how the study size was arrived at and justified"),
    ("11", "Missing data", "handling of missing data; reasons for omitting data"),
    ("12a", "Analytical methods", "how data were used and partitioned"),
    ("12b", "Analytical methods", "handling of predictors (transformations, standardisation)"),
    ("12c", "Analytical methods", "model type, building steps, tuning, internal validation"),
    ("12d", "Analytical methods", "heterogeneity across clusters (hospitals, scanners)"),
    ("12e", "Analytical methods", "performance measures and plots"),
    ("12f", "Analytical methods", "model updating (e.g. recalibration)"),
    ("12g", "Analytical methods", "how predictions were calculated for evaluation"),
    ("13", "Class imbalance", "class imbalance methods and any recalibration"),
    ("14", "Fairness", "approaches to model fairness"),
    ("15", "Model output", "output (probabilities, classification) and thresholds"),
    ("16", "Training versus evaluation", "differences between development and evaluation data"),
    ("17", "Ethical approval", "ethics committee and consent"),
    ("18a", "Funding", "funding and role of funders"),
    ("18b", "Conflicts of interest", "conflicts of interest"),
    ("18c", "Protocol", "where the protocol can be accessed"),
    ("18d", "Registration", "study registration"),
    ("18e", "Data sharing", "availability of the data"),
    ("18f", "Code sharing", "availability of the code"),
    ("19", "Patient and public involvement", "patient and public involvement"),
    ("20a", "Participants", "flow of participants, with and without the outcome"),
    ("20b", "Participants", "characteristics per data source: predictors, events, missing data"),
    ("20c", "Participants", "comparison of evaluation data with development data"),
    ("21", "Model development", "participants and events in each analysis"),
    ("22", "Model specification", "full model (formula, code, object) for use in new individuals"),
    ("23a", "Model performance", "performance with confidence intervals, incl. subgroups"),
    ("23b", "Model performance", "heterogeneity of performance across clusters"),
    ("24", "Model updating", "results of model updating and subsequent performance"),
    ("25", "Interpretation", "overall interpretation, including fairness"),
    ("26", "Limitations", "limitations: sample, size, overfitting, missing data, generalisability"),
    ("27a", "Usability", "handling of poor quality or unavailable input data"),
    ("27b", "Usability", "user interaction and expertise required"),
    ("27c", "Usability", "next steps for future research"),
]

#: CLAIM 2024 update: (item, section, topic paraphrase).
CLAIM_2024 = [
    ("1", "Title/Abstract", "identified as an AI study, category of technology (deep learning)"),
    ("2", "Abstract", "summary of design, methods, results, conclusions"),
    ("3", "Introduction", "scientific/clinical background, intended use and role of the AI"),
    ("4", "Introduction", "aims, objectives, hypotheses"),
    ("5", "Study design", "prospective or retrospective"),
    ("6", "Study design", "study goal"),
    ("7", "Data", "data sources"),
    ("8", "Data", "inclusion and exclusion criteria"),
    ("9", "Data", "data pre-processing"),
    ("10", "Data", "selection of data subsets"),
    ("11", "Data", "de-identification methods"),
    ("12", "Data", "how missing data were handled"),
    ("13", "Data", "image acquisition protocol"),
    ("14", "Reference standard", "method used to obtain the reference standard"),
    ("15", "Reference standard", "rationale for the reference standard"),
    ("16", "Reference standard", "source of reference standard annotations"),
    ("17", "Reference standard", "annotation of the test set"),
    ("18", "Reference standard", "inter- and intra-rater variability"),
    ("19", "Data partitions", "how data were assigned to partitions"),
    ("20", "Data partitions", "level at which partitions are disjoint"),
    ("21", "Testing data", "intended sample size"),
    ("22", "Model", "detailed description of the model"),
    ("23", "Model", "software libraries, frameworks, packages"),
    ("24", "Model", "initialisation of model parameters"),
    ("25", "Training", "training approach (augmentation, hyper-parameters, number of models)"),
    ("26", "Training", "method of selecting the final model"),
    ("27", "Training", "ensembling techniques"),
    ("28", "Evaluation", "metrics of model performance"),
    ("29", "Evaluation", "statistical measures of significance and uncertainty"),
    ("30", "Evaluation", "robustness or sensitivity analysis"),
    ("31", "Evaluation", "methods for explainability or interpretability"),
    ("32", "Evaluation", "evaluation on internal data"),
    ("33", "Evaluation", "testing on external data"),
    ("34", "Evaluation", "clinical trial registration"),
    ("35", "Results: data", "numbers of patients included and excluded"),
    ("36", "Results: data", "characteristics of cases in each partition"),
    ("37", "Results: model performance", "performance metrics and statistical uncertainty"),
    ("38", "Results: model performance", "estimates of diagnostic performance and their precision"),
    ("39", "Results: model performance", "failure analysis of incorrect results"),
    ("40", "Discussion", "study limitations"),
    ("41", "Discussion", "implications for practice, intended use, clinical role"),
    ("42", "Other information", "reference to the full protocol or technical details"),
    ("43", "Other information", "availability of software, trained model and data"),
    ("44", "Other information", "sources of funding and role of funders"),
]


def _run_facts(ctx: dict) -> dict:
    """Short texts the fillers share, built from the report's context."""
    f: dict[str, str] = {}
    flow = ctx.get("flow") or {}
    if flow:
        c = flow["counts"]
        f["flow"] = "; ".join(f"cohort {r['cohort']}: {r['included']} included of {r['patients listed']} "
                              f"({r['MVI present']} MVI present)" for r in c.to_dict("records"))
        f["excluded"] = f"{len(flow['excluded'])} patient(s) excluded, each with its reason (section 1)"
    tr = (ctx.get("training") or {}).get("doc") or {}
    t, net = tr.get("training") or {}, tr.get("network") or {}
    if t:
        f["model"] = (f"multi-branch CNN, one encoder shared by {', '.join(tr.get('sequences', []))} (stem {net.get('stem_width')}, "
                      f"widths {net.get('widths')}, blocks {net.get('blocks')}), concatenated features, one fully connected "
                      f"layer, {t.get('classes')} classes, input {net.get('input_size')} px")
        f["training"] = (f"Adam lr {t.get('lr')}, batch {t.get('batch_size')}, up to {t.get('epochs')} epochs, patience "
                         f"{t.get('patience')}, augmentation '{t.get('intensity_augmentation')}', sequence dropout "
                         f"{t.get('sequence_dropout', 0.0)}; {t.get('folds')}-fold patient-level stratified CV + final model "
                         f"(seed {t.get('seed')})")
        f["partition"] = (f"patient-level stratified {t.get('folds')}-fold cross-validation of the development cohort, "
                          f"{t.get('holdout')} of each training set held out for checkpoint selection; other cohorts "
                          "external; disjoint at patient level")
        f["init"] = f"Kaiming-normal convolutions from seed {t.get('seed')}; no transfer learning"
    ev = (ctx.get("evaluation") or {}).get("cohorts") or {}
    if ev:
        f["performance"] = "; ".join(f"{k}: AUC {v.get('auc'):.3f} (95 % CI {v['auc_ci'][0]:.3f}-{v['auc_ci'][1]:.3f})"
                                     for k, v in ev.items() if isinstance(v.get("auc"), float) and v["auc"] == v["auc"]
                                     and None not in v["auc_ci"])
    groups = ctx.get("groups") or {}
    if groups.get("dl") is not None:
        g = groups["dl"]
        f["groups"] = (f"figures per cohort and per scanner group ({len(g[g['group_type'] == 'scanner'])} scanner "
                       f"groups; source: {groups.get('source') or 'none recorded'}) in section 'Validation per site "
                       "and scanner'")
    tp = ctx.get("transport") or {}
    if tp:
        f["updating"] = ("recalibration (intercept; logistic) fitted on half of each external cohort and evaluated on "
                         "the other half, swapped; ComBat on features; image harmonisation variants (section "
                         "'Taking the model to another site')")
    return f


def _fill_tripod(item: str, f: dict, ctx: dict) -> str | None:
    syn = " (SYNTHETIC phantom)" if ctx.get("synthetic") else ""
    return {
        "5a": f.get("flow") and f"Cohorts{syn}: {f['flow']}; development cohort {_dev(ctx)}, others external (temporal).",
        "7": "Key slices (largest tumour diameter), enlarged box, resize, intensity normalisation as in section 11; "
             "`dlmvi validate` checks every image and mask (see Methods).",
        "8a": "Microvascular invasion on pathology of the resected specimen: present (M1/M2) vs absent (M0).",
        "11": f.get("excluded") and f"{f['excluded']}; clinical analyses use complete cases, dropped rows reported.",
        "12a": f.get("partition"),
        "12b": "Lab values dichotomised at the study's cut-offs for the nomogram; images normalised per the "
               "preprocessing settings.",
        "12c": f.get("model") and f"{f['model']}; {f.get('training', '')}; nomogram: multivariable logistic regression.",
        "12d": f.get("groups"),
        "12e": "AUC with DeLong 95 % CI, accuracy, sensitivity, specificity, F1; calibration intercept/slope, Brier "
               "(rms::val.prob definitions); decision curves; bootstrap optimism correction.",
        "12f": f.get("updating") or "No model updating was run (`dlmvi study --transport`, `dlmvi recalibrate`).",
        "12g": "Predictions by the exported model (`dlmvi export`, safetensors + model.json) and `dlmvi predict`; "
               "development predictions out-of-fold.",
        "15": "Probability of MVI (DL-MVI and nomogram); DL-MVI = 1 at probability >= 0.5 (the study's threshold).",
        "16": f.get("flow") and "External cohort(s) from another period/scanner; shift measured per sequence (section 5).",
        "18f": "Analysis code: dlmvi" + (f" (git {ctx['commit']})" if ctx.get("commit") else "") + ".",
        "20a": f.get("flow"),
        "21": f.get("flow") and f"Development: {_dev(ctx)}; evaluation: the other cohort(s) (section 1 and 4).",
        "22": ctx.get("formula") and f"Network weights + model.json (`dlmvi export`); nomogram {ctx['formula']}.",
        "23a": f.get("performance"),
        "23b": f.get("groups"),
        "24": f.get("updating") and "Before/after figures in section 'Taking the model to another site'.",
        "27a": "A missing sequence: blanked branch for models trained with sequence dropout, with its measured cost; "
               "otherwise the patient is refused with the reason.",
    }.get(item) or None


def _fill_claim(item: str, f: dict, ctx: dict) -> str | None:
    return {
        "1": None,
        "7": f.get("flow") and ("SYNTHETIC phantom cohort. " if ctx.get("synthetic") else "") + f["flow"],
        "9": "Reorientation to LPS, key slices, tumour box + margin, squaring, resizing, normalisation (section 11).",
        "10": f.get("flow") and f"Development cohort {_dev(ctx)}; other cohorts external.",
        "11": "Outputs carry no DICOM identifiers; `dlmvi import` writes de-identified NIfTI (no names, IDs, dates).",
        "12": f.get("excluded"),
        "19": f.get("partition"),
        "20": "Patient level: all slices and slice combinations of a patient stay in one partition.",
        "22": f.get("model"),
        "23": f"dlmvi {ctx.get('version')}, PyTorch, MONAI (bottleneck blocks), scikit-learn, statsmodels, lifelines.",
        "24": f.get("init"),
        "25": f.get("training"),
        "26": "Lowest validation loss on the held-out share of the training patients (early stopping).",
        "27": "No ensembling.",
        "28": "AUC, accuracy, precision, recall, specificity, F1; calibration intercept/slope, Brier.",
        "29": "DeLong 95 % CIs (as pROC); DeLong paired tests; bootstrap optimism correction; permutation p (MMD).",
        "30": ("Sequence ablation, cohort shift (separability, MMD), sequence removal costs"
               + ("; harmonisation and recalibration comparison" if ctx.get("transport") else "") + "."),
        "31": "Grad-CAM per sequence on the patient card (`predict-patient`); not validated against pathology.",
        "32": (f"Out-of-fold cross-validation of the development cohort; {f['performance']}" if f.get("performance")
               else None),
        "33": f.get("groups"),
        "35": f.get("flow"),
        "37": f.get("performance"),
        "38": f.get("performance"),
        "43": "Code: dlmvi" + (f" (git {ctx['commit']})" if ctx.get("commit") else "") +
              "; trained model: `dlmvi export` folder with a model card.",
    }.get(item) or None


def _dev(ctx: dict) -> str:
    from dlmvi.report.run_info import develop_cohort

    return str(develop_cohort(ctx["run_path"])) if ctx.get("run_path") else "?"


def checklist(items, filler, ctx: dict) -> pd.DataFrame:
    """One row per item: ``item, section, topic, status, from the run``."""
    facts = _run_facts(ctx)
    rows = []
    for num, section, topic in items:
        text = filler(num, facts, ctx)
        rows.append({"item": num, "section": section, "topic": topic, "status": FILLED if text else TO_COMPLETE,
                     "from the run": text or "–"})
    return pd.DataFrame(rows)


def checklists(ctx: dict) -> dict[str, pd.DataFrame]:
    """Both checklists for the report context of :func:`dlmvi.report.build.collect`."""
    return {"TRIPOD+AI (2024)": checklist(TRIPOD_AI, _fill_tripod, ctx),
            "CLAIM (2024 update)": checklist(CLAIM_2024, _fill_claim, ctx)}


__all__ = ["TRIPOD_AI", "CLAIM_2024", "checklist", "checklists", "TO_COMPLETE", "FILLED"]
