"""Loading a file never runs code; model code runs only by explicit flag; run names stay inside the root.

The source scan walks the syntax tree of the package and the bundled plugins: nothing there may
import pickle (or dill, cloudpickle, marshal) or subclass an unpickler, and a `torch.load` must be
`weights_only=True`. Black-box optimizer state is a record of asks and tells in safetensors,
replayed on resume, so a run folder never holds anything that is unpickled.
"""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import pytest
import torch

from culturalign.checkpoint.format import load_last, sanitise_run_name, save_last
from culturalign.errors import CulturalignError
from culturalign.fit.run import RunArgs, prepare_run_dir

REPO = Path(__file__).resolve().parents[2]
UNPICKLERS = {"pickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
SOURCES = sorted((REPO / "culturalign").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f"{f.value.id}.{f.attr}"
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                else (f.id if isinstance(f, ast.Name) else "")
            )
            yield name, node


def test_source_has_no_unchecked_deserialisation_or_remote_code():
    problems = []
    for path in SOURCES:
        if ".egg-info" in str(path):
            continue
        tree = ast.parse(path.read_text(), str(path))
        where = lambda node, path=path: f"{path.relative_to(REPO)}:{node.lineno}"  # noqa: E731
        for name, call in _calls(tree):
            kwargs = {k.arg: k.value for k in call.keywords}
            if name in ("pickle.load", "pickle.loads", "marshal.loads", "dill.loads", "eval", "exec"):
                problems.append(f"{where(call)} calls {name}; nothing may unpickle (store tensors in safetensors)")
            if name == "torch.load" and not (isinstance(kwargs.get("weights_only"), ast.Constant) and kwargs["weights_only"].value is True):
                problems.append(f"{where(call)} calls torch.load without weights_only=True")
            if name == "yaml.load" or name == "yaml.unsafe_load":
                problems.append(f"{where(call)} calls {name}; use yaml.safe_load")
            value = kwargs.get("trust_remote_code")
            if isinstance(value, ast.Constant) and value.value is True:
                problems.append(f"{where(call)} passes trust_remote_code=True")
        for node in ast.walk(tree):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            if any(m.split(".")[0] in UNPICKLERS for m in modules):
                problems.append(f"{where(node)} imports {', '.join(modules)}; nothing may unpickle (store tensors in safetensors)")
            if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases):
                problems.append(f"{where(node)} subclasses an unpickler")
            # Defaults: `trust_remote_code: bool = True` in a dataclass or a signature.
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == "trust_remote_code"
                and isinstance(node.value, ast.Constant)
                and node.value.value
            ):
                problems.append(f"{where(node)} defaults trust_remote_code to True")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults + node.args.kw_defaults
                for arg, default in zip(args, defaults):
                    if arg.arg == "trust_remote_code" and isinstance(default, ast.Constant) and default.value:
                        problems.append(f"{where(node)} defaults trust_remote_code to True")
    assert not problems, "\n".join(problems)
    assert len(SOURCES) > 20  # the scan saw the package, not an empty folder


def test_cli_trust_remote_code_is_off_by_default():
    import inspect

    from culturalign.commands.common import ModelArgs
    from culturalign.model.backbone import load_backbone

    assert ModelArgs().trust_remote_code is False
    assert inspect.signature(load_backbone).parameters["trust_remote_code"].default is False


def _stack_global_call(module: str, name: str, arg: str) -> bytes:
    """A hand-assembled protocol-4 pickle that calls module.name(arg)."""
    s = lambda t: pickle.SHORT_BINUNICODE + bytes([len(t)]) + t.encode()  # noqa: E731
    return b"\x80\x04" + s(module) + s(name) + pickle.STACK_GLOBAL + s(arg) + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


GADGETS = {
    "os.system": lambda cmd: pickle.dumps(_System(cmd)),
    "builtins.eval": lambda cmd: _stack_global_call("builtins", "eval", f"__import__('os').system({cmd!r})"),
    "builtins.exec": lambda cmd: _stack_global_call("builtins", "exec", f"import os; os.system({cmd!r})"),
    # An allowed module's own import of os, reached by a dotted name (protocol 4 resolves those).
    "random._os.system": lambda cmd: _stack_global_call("random", "_os.system", cmd),
    "collections._sys.modules": lambda cmd: _stack_global_call("collections", "_sys.modules", cmd),
    # Functions living inside allowed packages that run code or touch files.
    "numpy.testing runstring": lambda cmd: _stack_global_call("numpy.testing._private.utils", "runstring", cmd),
    "numpy.ctypeslib.load_library": lambda cmd: _stack_global_call("numpy.ctypeslib", "load_library", cmd),
    "numpy.memmap": lambda cmd: _stack_global_call("numpy", "memmap", cmd),
    "nevergrad re-export": lambda cmd: _stack_global_call("nevergrad.common.tools", "os", cmd),
    # A class of an allowed package called with chosen arguments (cma evaluates option strings).
    "cma class call": lambda cmd: _stack_global_call("cma.evolution_strategy", "CMAEvolutionStrategy", cmd),
    "getattr escape": lambda cmd: (
        b"\x80\x04"
        + pickle.SHORT_BINUNICODE
        + b"\x08builtins"
        + pickle.SHORT_BINUNICODE
        + b"\x07getattr"
        + pickle.STACK_GLOBAL
        + pickle.SHORT_BINUNICODE
        + b"\x0bnevergrad.p"
        + pickle.SHORT_BINUNICODE
        + b"\x0b__globals__"
        + pickle.TUPLE2
        + pickle.REDUCE
        + pickle.STOP
    ),
}


def _resume_point_with(run_dir: Path, optimizer_state: bytes) -> None:
    """A last/ as culturalign <= 0.1 wrote it: the optimizer as pickle bytes beside the history."""
    save_last(run_dir, torch.zeros(2, 3), {"step": 1}, {"optimizer": optimizer_state, "history": torch.zeros(1, 6, dtype=torch.float64)})


@pytest.mark.parametrize("gadget", list(GADGETS))
def test_pickled_optimizer_state_is_refused_unread(gadget, tmp_path):
    """Every gadget that was thrown at the old allow-list unpickler: now refused before a byte is parsed."""
    from culturalign.blackbox.replay import AskTellRecord

    marker = tmp_path / "pwned"
    _resume_point_with(tmp_path, GADGETS[gadget](f"touch {marker}"))
    with pytest.raises(CulturalignError) as err:
        AskTellRecord.from_state(load_last(tmp_path)[2], tmp_path / "last")
    assert not marker.exists()
    assert str(err.value) == (
        f"{tmp_path / 'last'} holds a pickled optimizer state from an older culturalign, which is "
        "no longer read (a pickle can run code); pass --run.resume false to start the run over"
    )


def test_resume_state_without_a_valid_record_is_refused_with_a_clear_error(tmp_path):
    from culturalign.blackbox.replay import AskTellRecord

    good = {"asks_sha256": torch.zeros(2, 32, dtype=torch.uint8), "losses": torch.zeros(2, 4, dtype=torch.float64)}
    AskTellRecord.from_state(good, tmp_path)  # the checks below are not refusing everything
    for state in (
        {},
        {**good, "asks_sha256": torch.zeros(2, 31, dtype=torch.uint8)},
        {**good, "asks_sha256": torch.zeros(3, 32, dtype=torch.uint8)},
        {**good, "losses": torch.zeros(2, 4)},
        {**good, "losses": torch.zeros(2, dtype=torch.float64)},
    ):
        with pytest.raises(CulturalignError, match="has no valid asks_sha256/losses record; delete that last/ folder"):
            AskTellRecord.from_state(state, tmp_path)


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "/etc", "a\\b", ".hidden", "", "a" * 101, "x\n", "~root", "a..b"])
def test_run_names_cannot_leave_the_output_root(name, tmp_path):
    with pytest.raises(CulturalignError, match="run name"):
        sanitise_run_name(name)
    if name:  # an empty --run.name means "the default name"
        with pytest.raises(CulturalignError, match="run name"):
            prepare_run_dir(RunArgs(name=name, root=str(tmp_path / "root")), "de-sau")
    assert not (tmp_path / "x").exists() and not (tmp_path / "root").exists()


def test_good_run_names_stay_one_folder_below_the_root(tmp_path):
    for name in ("de-sau", "cmaes_usa.2", "A1"):
        run_dir = prepare_run_dir(RunArgs(name=name, root=str(tmp_path)), "de-sau")
        assert run_dir.parent == tmp_path and run_dir.name == name
