"""The lean parameter coercion (segment.cli.coercion) against Typer's own (pydantic), on
every parameter of every command, and what ``segment quantize`` imports."""

import json
import subprocess
import sys
import types
from enum import Enum
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segment.cli.app import _command_for, app
from segment.cli.coercion import LeanCoercion

VALUES = {
    int: [
        "16",
        "0",
        "-3",
        "+5",
        "007",
        " 5",
        "5 ",
        "1_000",
        "1.0",
        "1e3",
        "abc",
        "",
        "300",
        "99999999999999999999",
        "٣",
        16,
        16.0,
        2.5,
    ],
    float: [
        "0.5",
        "1",
        "1.",
        ".5",
        "-0.0",
        "1e-3",
        "1E3",
        "+2.5",
        "inf",
        "nan",
        "-inf",
        " 1",
        "abc",
        "",
        "1_0",
        "0x10",
        "٣",
        1,
        0.25,
        "2",
        "1e400",
    ],
    str: ["abc", "", "30-40", "é", " x "],
    Path: ["a.png", "", "/tmp", ".", "-", "~/x", "out/", Path("a.png")],
    bool: [True, False, "true", "1", "no", "", "maybe"],
}


def _samples(annotation):
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        members = list(annotation)
        return [*members, members[0].value, members[-1].value.upper(), "nope", ""]
    return VALUES.get(annotation, [])


def _outcome(coercion, value, param, ctx):
    try:
        got = coercion.coerce(value, param=param, ctx=ctx)
    except Exception as err:  # the error itself is compared
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        return ("error", type(err).__name__, message)
    kinds = [type(v) for v in got] if isinstance(got, list) else type(got)
    return ("value", repr(got), kinds)  # repr: nan equals nan


def _params():
    for info in app.registered_commands:
        command, _ = _command_for([info.name])
        ctx = command.context_class(command, info_name=f"segment {info.name}")
        for param in command.params:
            if isinstance(param._runtime_param, LeanCoercion):
                yield info.name, command, ctx, param


@pytest.mark.parametrize("name", [c.name for c in app.registered_commands])
def test_every_parameter_coerces_as_typer_does(name):
    from typer._coercion import build_runtime_param

    checked = 0
    for cmd_name, _, ctx, param in _params():
        if cmd_name != name:
            continue
        lean = param._runtime_param
        typer_own = build_runtime_param(param.type_descriptor)
        leaf = lean.leaf
        values = [None, *_samples(leaf)]
        if lean.is_list:
            values = [None, [], *[[v] for v in _samples(leaf)], tuple(_samples(leaf)[:2])]
        for value in values:
            assert _outcome(lean, value, param, ctx) == _outcome(typer_own, value, param, ctx), (
                param.name,
                value,
            )
            checked += 1
    assert checked > 0


def test_every_parameter_of_the_commands_is_lean():
    # The commands' parameters all have plain annotations: none is left to pydantic.
    for info in app.registered_commands:
        command, _ = _command_for([info.name])
        for param in command.params:
            assert isinstance(param._runtime_param, LeanCoercion), (info.name, param.name)
            assert param._runtime_param.kind is not None, (info.name, param.name)


def test_errors_are_typer_messages(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src)
    r = subprocess.run(
        [sys.executable, "-m", "segment", "quantize", str(src), "-k", "300"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "'-k' / '--k'" in r.stderr and "256" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_quantize_imports_only_what_it_needs(tmp_path):
    """``segment quantize`` (the histogram quantiser, no --figures) imports neither pydantic
    (Typer's coercion) nor the scientific stack that other commands need."""
    src = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(src)
    code = (
        "import sys, json\n"
        "from segment.cli import main\n"
        "try:\n"
        f"    main(['quantize', {str(src)!r}, '-k', '8', '-o', {str(tmp_path / 'o.png')!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = ('pydantic', 'scipy', 'skimage', 'matplotlib', 'gmm', 'numpy.ma',\n"
        "         'PIL.TiffImagePlugin', 'PIL.PdfImagePlugin')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "o.png").exists()


def test_lazy_console_prints_and_copies():
    import copy
    import io
    import pickle

    from segment.cli.common import LazyConsole

    buf = io.StringIO()
    console = LazyConsole(file=buf, highlight=False)
    assert console._console is None  # nothing made (rich not needed) until first used
    console.print("[bold]x[/bold] :smile:", markup=False, emoji=False)
    assert buf.getvalue() == "[bold]x[/bold] :smile:\n"
    # Copies and pickles of an unused proxy do not recurse through __getattr__.
    fresh = LazyConsole(stderr=True)
    assert copy.copy(fresh)._settings == {"stderr": True}
    assert pickle.loads(pickle.dumps(fresh))._settings == {"stderr": True}


def test_without_typers_internals_every_parameter_is_left_to_typer(monkeypatch):
    """If a Typer release moves the functions the lean coercion calls, the parameters keep
    Typer's own coercion (slower start-up, same behaviour) instead of failing."""
    import typer._param_types

    from segment.cli import coercion

    monkeypatch.delattr(typer._param_types, "coerce_cli_path")
    coercion._typer_internals.cache_clear()
    try:
        param = types.SimpleNamespace(type_descriptor=object(), _runtime_param=None)
        assert coercion._lean(param)._runtime_param is None
    finally:
        monkeypatch.undo()
        coercion._typer_internals.cache_clear()
    assert coercion._typer_internals()
