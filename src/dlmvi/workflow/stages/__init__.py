"""The stages of ``dlmvi study``, one small object each (:class:`~dlmvi.workflow.stages.base.Stage`):
its name, whether it runs, its resume key, the outputs that let a rerun skip it, and its work.

:data:`dlmvi.workflow.study.PIPELINE` is their order, the data's: prepare -> train -> predict -> evaluate -> ablate ->
shift -> transport -> clinical -> survival -> report.
"""
