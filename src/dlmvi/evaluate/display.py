"""Figures without pyplot: every plot of dlmvi is drawn on a bare :class:`matplotlib.figure.Figure`.

pyplot keeps global state (the current figure, a backend chosen at import, figures alive until
closed) that is neither thread-safe nor needed to write a file; a bare Figure is freed with its
last reference and saved with the Agg renderer whatever backend the user's matplotlib has, so no
module calls ``matplotlib.use`` at run time. Display objects (``*Display``) hold their Figure as
``figure_`` (scikit-learn's convention).
"""

from __future__ import annotations

from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, squeeze: bool = True, sharex=False, sharey=False,
             subplot_kw=None, gridspec_kw=None, **fig_kw):
    """``matplotlib.pyplot.subplots`` on a bare Figure: returns (figure, axes) alike."""
    fig = Figure(figsize=figsize, **fig_kw)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, sharex=sharex, sharey=sharey, subplot_kw=subplot_kw,
                        gridspec_kw=gridspec_kw)
    return fig, axes
