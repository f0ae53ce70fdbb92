"""What the CLI knows about this invocation, handed to the commands that record or re-launch it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Invocation:
    """The resolved command, passed explicitly by `culturalign.cli.run` (never through module state)."""

    config_yaml: str = ""
    """The resolved options as YAML (written to each run folder as config.yaml)."""
    from_command_line: bool = True
    """False when `cli.run(argv)` was called from Python with an argv that is not this process's
    command line (tests, notebooks): multi-process launches re-run sys.argv and must refuse."""
