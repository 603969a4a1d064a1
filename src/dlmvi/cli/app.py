"""The typer application that every command module registers on.

Command modules import only typer and the standard library at module level, so that
``dlmvi --help`` is instant; torch, matplotlib and friends load inside the commands.
"""

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
