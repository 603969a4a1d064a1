"""Reading saved settings back into their typed dataclasses."""

from __future__ import annotations

from dataclasses import fields

from dlmvi.errors import ModelError


def strict_from_dict(cls, d: dict, what: str):
    """``cls(**d)``, refusing settings this version of dlmvi does not know.

    A checkpoint written by a newer dlmvi may carry a setting that changes the result; silently
    dropping it would give another model, so it is an error naming the setting.
    """
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ModelError(
            f"the {what} has setting(s) {unknown} that this version of dlmvi cannot honour; "
            "upgrade dlmvi to the version that wrote it"
        )
    return cls(**d)
