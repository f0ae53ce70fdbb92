"""The command line: a table of typed functions whose signatures ARE the options (jsonargparse).

    culturalign fit --optimizer DE            culturalign survey --json
    culturalign evaluate checkpoints/de-sau   culturalign generate --prompt "Who are you?"
    culturalign bench --json                  culturalign targets

Shorthands: `--model X`, `--target X`, `--survey X`, `--data X` stand for `--model.name X`,
`--target.country X`, `--survey.name X`, `--data.name X` (a group cannot take a bare value in
jsonargparse, and these are the forms users type).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from culturalign.errors import CulturalignError

SHORTHANDS = {"--model": "name", "--target": "country", "--survey": "name", "--data": "name"}
# Verbs whose leading bare arguments fill a list option (`culturalign evaluate RUN_DIR ...`);
# jsonargparse has no positional form for a list with a default.
POSITIONAL_LISTS = {"evaluate": "--runs"}
# List options that take space-separated values (`--survey.paraphrases 1 2`), as users type them.
LIST_OPTIONS = ("--survey.paraphrases", "--survey.heldout", "--survey.validation")
# Boolean options that may be given bare, like --json (`culturalign bench --quick`).
BARE_FLAGS = ("--quick", "--reused_heap")


def commands() -> dict[str, Callable[..., Any]]:
    """Verb -> function. Imported lazily so `--help` stays fast."""
    from culturalign.commands.bench import bench
    from culturalign.commands.evaluate import evaluate
    from culturalign.commands.fit import fit
    from culturalign.commands.generate import generate
    from culturalign.commands.survey import survey
    from culturalign.commands.targets import targets

    return {"fit": fit, "survey": survey, "evaluate": evaluate, "generate": generate, "bench": bench, "targets": targets}


def expand_shorthands(argv: list[str]) -> list[str]:
    import json

    out: list[str] = []
    i = 0
    if argv and argv[0] in POSITIONAL_LISTS:
        j = 1
        while j < len(argv) and not argv[j].startswith("-"):
            j += 1
        if j > 1:
            argv = [argv[0], f"{POSITIONAL_LISTS[argv[0]]}={json.dumps(argv[1:j])}"] + argv[j:]
    while i < len(argv):
        arg = argv[i]
        key, eq, value = arg.partition("=")
        if key in LIST_OPTIONS and not eq:
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            values = argv[i + 1 : j]
            if len(values) == 1 and values[0].startswith("["):  # already a JSON list
                out += [arg, values[0]]
            else:
                out.append(f"{arg}={json.dumps([int(v) if v.isdigit() else v for v in values])}")
            i = j
            continue
        if arg == "--json":  # a flag users expect; jsonargparse booleans take a value
            out.append("--json_output=true")
        elif arg in BARE_FLAGS and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            out.append(f"{arg}=true")
        elif key in SHORTHANDS:
            field = SHORTHANDS[key]
            if eq:
                out.append(f"{key}.{field}={value}")
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                out += [f"{key}.{field}", argv[i + 1]]
                i += 1
            else:
                out.append(arg)
        else:
            out.append(arg)
        i += 1
    return out


def optimizer_name(argv: list[str]) -> str:
    """The optimizer a `fit` command line asks for (last --optimizer, else --config's, else DE).

    Read before parsing because the method's own option groups (`--search.*` or `--data.*`) are
    added to the parser for that optimizer only.
    """
    import yaml

    name = "DE"
    for i, arg in enumerate(argv):
        key, eq, value = arg.partition("=")
        if key in ("--optimizer", "--optimizer.class_path"):
            name = value if eq else (argv[i + 1] if i + 1 < len(argv) else name)
        elif key == "--config":
            path = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            try:
                cfg = yaml.safe_load(Path(path).read_text()) if path and os.path.isfile(path) else None
            except yaml.YAMLError:
                cfg = None  # the parser reports the broken file itself
            opt = cfg.get("optimizer") if isinstance(cfg, dict) else None
            name = (opt.get("class_path", name) if isinstance(opt, dict) else opt) or name
    return str(name).rsplit(".", 1)[-1]


def _method_groups(argv: list[str], registry: dict[str, type]) -> dict[str, type]:
    """The chosen optimizer's option groups; a group of another method gets one line naming both."""
    name = optimizer_name(argv)
    if name not in registry:
        raise CulturalignError(f"--optimizer {name} is not installed; installed: {', '.join(sorted(registry))}")
    groups = registry[name].option_groups()
    owners: dict[str, list[str]] = {}
    for other, cls in registry.items():
        for group in cls.option_groups():
            owners.setdefault(group, []).append(other)
    for arg in argv:
        group = arg.lstrip("-").split(".", 1)[0].split("=", 1)[0]
        if arg.startswith("--") and group in owners and group not in groups:
            raise CulturalignError(
                f"--{group} is an option of {', '.join(sorted(owners[group]))}, not of --optimizer "
                f"{name}; drop it or pick --optimizer {sorted(owners[group])[0]}"
            )
    return groups


def build_parser(argv: list[str] | None = None) -> Any:
    from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

    from culturalign import __version__
    from culturalign.optimizers.base import discover

    argv = argv or []
    # Field docstrings of the argument dataclasses become --help text.
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    # Load every optimizer before parsing so `--optimizer NAME` resolves plugins' short class names.
    registry = discover()
    parser = ArgumentParser(prog="culturalign", description="Align a frozen LLM with a culture through a soft prompt.", version=__version__)
    sub = parser.add_subcommands(dest="command")
    verb = argv[0] if argv else None
    for name, fn in commands().items():
        p = ArgumentParser(description=(fn.__doc__ or "").strip().splitlines()[0])
        p.add_argument("--config", action=ActionConfigFile, help="YAML config file (see configs/).")
        p.add_function_arguments(fn, fail_untyped=False, as_group=False, skip={"invocation"})
        if name == "fit" and verb == "fit":
            for group, cls in _method_groups(argv[1:], registry).items():
                p.add_class_arguments(cls, group, help=(cls.__doc__ or group).strip().splitlines()[0])
        sub.add_subcommand(name, p, help=(fn.__doc__ or "").strip().splitlines()[0])
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exit code 0 on success, 2 with a one-line message on bad input."""
    run(argv)


def run(argv: list[str] | None = None) -> Any:
    """Run one command and return its result (tests call this)."""
    import inspect

    from culturalign.commands.invocation import Invocation

    from_command_line = argv is None or list(argv) == sys.argv[1:]  # multi-process launch re-runs sys.argv
    argv = expand_shorthands(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        parser = build_parser(argv)
        cfg = parser.parse_args(argv)
        name = cfg.command
        fn = commands()[name]
        init = parser.instantiate_classes(cfg)
        kwargs = {k: v for k, v in vars(init[name]).items() if k != "config"}
        if "invocation" in inspect.signature(fn).parameters:
            kwargs["invocation"] = Invocation(parser.dump(cfg, skip_check=True), from_command_line)
        return fn(**kwargs)
    except CulturalignError as err:
        print(f"culturalign: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
