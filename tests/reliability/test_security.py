"""Loading a file never runs code; model code runs only by explicit flag; run names stay inside the root.

The source scan walks the syntax tree of the package and the bundled plugins, so a new
`pickle.loads` or `torch.load` anywhere fails here until it goes through the checked loaders.
"""

from __future__ import annotations

import ast
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from culturalign.checkpoint.format import safe_loads, sanitise_run_name
from culturalign.errors import CulturalignError
from culturalign.fit.run import RunArgs, prepare_run_dir

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / "culturalign").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else (
                f.id if isinstance(f, ast.Name) else "")
            yield name, node


def test_source_has_no_unchecked_deserialisation_or_remote_code():
    problems = []
    for path in SOURCES:
        if ".egg-info" in str(path):
            continue
        tree = ast.parse(path.read_text(), str(path))
        where = lambda node: f"{path.relative_to(REPO)}:{node.lineno}"  # noqa: E731
        for name, call in _calls(tree):
            kwargs = {k.arg: k.value for k in call.keywords}
            if name in ("pickle.load", "pickle.loads", "marshal.loads", "dill.loads", "eval", "exec"):
                problems.append(f"{where(call)} calls {name}; use checkpoint.format.safe_loads")
            if name == "torch.load" and not (isinstance(kwargs.get("weights_only"), ast.Constant)
                                             and kwargs["weights_only"].value is True):
                problems.append(f"{where(call)} calls torch.load without weights_only=True")
            if name == "yaml.load" or name == "yaml.unsafe_load":
                problems.append(f"{where(call)} calls {name}; use yaml.safe_load")
            value = kwargs.get("trust_remote_code")
            if isinstance(value, ast.Constant) and value.value is True:
                problems.append(f"{where(call)} passes trust_remote_code=True")
        for node in ast.walk(tree):
            # Defaults: `trust_remote_code: bool = True` in a dataclass or a signature.
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and node.target.id == "trust_remote_code" and isinstance(node.value, ast.Constant) and node.value.value:
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
    from culturalign.commands.common import ModelArgs
    from culturalign.model.backbone import load_backbone
    import inspect

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
    "getattr escape": lambda cmd: (b"\x80\x04" + pickle.SHORT_BINUNICODE + b"\x08builtins" + pickle.SHORT_BINUNICODE
                                   + b"\x07getattr" + pickle.STACK_GLOBAL + pickle.SHORT_BINUNICODE + b"\x0bnevergrad.p"
                                   + pickle.SHORT_BINUNICODE + b"\x0b__globals__" + pickle.TUPLE2 + pickle.REDUCE
                                   + pickle.STOP),
}


@pytest.mark.parametrize("gadget", list(GADGETS))
def test_safe_loads_refuses_code_execution(gadget, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(CulturalignError) as err:
        safe_loads(GADGETS[gadget](f"touch {marker}"))
    assert not marker.exists()
    # Refused by the allow-list itself, not by luck (a call failing on its arguments would say "damaged").
    assert "not allowed in a checkpoint" in str(err.value) and "delete the run's last/ folder" in str(err.value)


def test_safe_loads_refuses_garbage_with_a_clear_error():
    for data in (b"", b"not a pickle", pickle.dumps(list(range(10)))[:-3], bytes(random.Random(0).randbytes(64))):
        with pytest.raises(CulturalignError, match="optimizer state|not allowed"):
            safe_loads(data)


def test_every_registered_optimizer_state_round_trips_through_the_allow_list():
    """The allow-list is not so tight that real states (DE and every installed plugin) fail to resume."""
    from culturalign.blackbox.protocol import BlackBoxOptimizer, SearchSetup
    from culturalign.optimizers.base import discover

    checked = []
    for name, cls in discover().items():
        if not issubclass(cls, BlackBoxOptimizer):
            continue
        for dim in (8, 1500):  # small: full covariance; large: diagonal/other code paths
            a, b = cls(popsize=4), cls(popsize=4)
            for opt in (a, b):
                opt.setup(SearchSetup(dim=dim, budget=64, sigma=0.5, seed=1))
            for _ in range(3):
                z = a.ask()
                a.tell(z, (z ** 2).sum(1))
            b.load_state(a.state_bytes())
            assert np.array_equal(a.ask(), b.ask()), f"{name} at dim {dim} does not resume exactly"
        checked.append(name)
    assert "DE" in checked


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
