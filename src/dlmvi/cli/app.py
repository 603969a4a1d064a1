"""The typer application that every command module registers on.

Command modules import only typer and the standard library at module level, so that
``dlmvi --help`` is instant; torch, matplotlib and friends load inside the commands.
"""

import contextlib
import warnings

import typer

app = typer.Typer(
    name="dlmvi",
    help=(
        "Predict microvascular invasion (MVI) of hepatocellular carcinoma from multiphase "
        "liver MRI and blood tests, and reproduce the study end to end: validate and prepare "
        "a cohort, train the network, evaluate, build the nomogram, analyse survival and "
        "write the report."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@contextlib.contextmanager
def echo_warnings(show: bool = True):
    """Collect the warnings of a command's work and print them once it is done.

    dlmvi's own warnings (:class:`dlmvi.errors.DlmviWarning`: a dropped patient, a fit on few
    events, ...) are printed to stderr as ``warning: ...``, each distinct message once;
    ``show=False`` drops them (a command that reports them itself). Other libraries'
    warnings are passed on unchanged.
    """
    from dlmvi.errors import DlmviWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DlmviWarning)
        yield caught
    seen = set()
    for w in caught:
        if issubclass(w.category, DlmviWarning):
            msg = str(w.message)
            if show and msg not in seen:
                seen.add(msg)
                typer.echo(f"warning: {msg}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def installed_version() -> str:
    """dlmvi's version as installed (wheel or editable), else the source tree's ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dlmvi")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        from dlmvi import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dlmvi {installed_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="Print dlmvi's version and exit."),
) -> None:
    pass
