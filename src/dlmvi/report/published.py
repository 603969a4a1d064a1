"""The published study's headline numbers (study.md), for the "this run vs the study" table."""

PUBLISHED = [
    # (key, label, published value, unit/comment)
    ("n_total", "Patients (development + external)", "321 (149 + 172)", ""),
    ("prevalence", "MVI present", "57.6 % (185/321)", ""),
    ("val_accuracy", "DL-MVI accuracy, development (T1+T1D+T1V)", "92.11 %", "one 9:1 split, ~15 validation patients"),
    ("ext_accuracy", "DL-MVI accuracy, external cohort", "68.69 %", ""),
    ("ext_precision", "DL-MVI precision, external cohort", "76.92 %", ""),
    ("ext_recall", "DL-MVI recall, external cohort", "75.76 %", ""),
    ("ext_f1", "DL-MVI F1, external cohort", "76.34 %", ""),
    ("dl_auc", "DL-MVI AUC with 95 % CI", "not reported", "a weakness dlmvi fixes"),
    ("or_afp", "Multivariate OR, AFP > 20 ng/mL", "4.634 (2.576-8.336)", ""),
    ("or_dl", "Multivariate OR, DL-MVI", "35.738 (14.027-91.056)", ""),
    ("formula", "Nomogram", "logit(p) = -3.51 + 1.53 AFP + 3.58 DL-MVI", ""),
    ("nomogram_auc", "Nomogram AUC", "0.824", ""),
    ("median_rfs_mvi", "Median RFS with MVI (months)", "32.5", "not reached without MVI"),
    ("median_os_dl", "Median OS, DL-MVI present (months)", "54.7", "not reached when absent"),
    ("median_rfs_dl", "Median RFS, DL-MVI present (months)", "36.3", "not reached when absent"),
]
