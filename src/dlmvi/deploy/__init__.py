"""Deployment: the portable model folder (``dlmvi export``) and one new patient's prediction.

Comes after the statistics in the data's path (it carries the nomogram) and before the
report (whose patient card renders a :class:`~dlmvi.deploy.patient.PatientPrediction`).
"""
