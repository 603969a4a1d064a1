"""The whole study as resumable stages (``dlmvi study``, ``dlmvi demo``): the last stage
before the command line, composing every other one."""
