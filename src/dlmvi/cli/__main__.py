"""``python -m dlmvi.cli``: the dlmvi command (also what torchrun launches)."""

from dlmvi.cli import main

main()
