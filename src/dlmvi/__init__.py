"""dlmvi: preoperative prediction of microvascular invasion (MVI) of hepatocellular
carcinoma from multiphase liver MRI and blood tests.

Light on import: heavy libraries (torch, matplotlib) load inside the functions that need them.
"""

__version__ = "0.1.0"

from dlmvi.errors import CohortError, DlmviError  # noqa: E402

__all__ = ["__version__", "DlmviError", "CohortError", "predict_patient"]


def __getattr__(name):
    # Lazy: `dlmvi.predict_patient` pulls torch in only when used.
    if name == "predict_patient":
        from dlmvi.deploy.patient import predict_patient

        return predict_patient
    raise AttributeError(name)
