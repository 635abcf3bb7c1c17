"""Typer's parameter coercion without pydantic on the way to a valid value.

Typer (>= 0.29) coerces every command-line value through a pydantic ``TypeAdapter`` built per
parameter: importing pydantic and building the adapters costs 0.1–0.2 s of every command,
more than ``segment quantize`` spends on the pixels of a 2 MP photo. The parameters of this
CLI have plain annotations (int and float with bounds, str, bool, Path, Enum, list[Path]), so
:func:`lean_coercion` gives each parameter of a built command a coercion that converts the
values Typer would accept, exactly as Typer does (paths and choices through Typer's own
functions), and hands everything else — an error, an unusual spelling, another annotation —
to Typer's own coercion, built only then. Values and error messages are Typer's; the tests
compare both ways on every parameter of every command.

If Typer's internals change shape (no ``type_descriptor`` or ``_runtime_param`` on a
parameter, or the functions used below moved), the parameters are left to Typer: slower
start-up, same behaviour.
"""

import functools
import math
import re
from enum import Enum
from pathlib import Path

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _Delegate(Exception):
    """The value is left to Typer's own coercion (an error, or a form not handled here)."""


def _typer_coercion(descriptor):
    from typer._coercion import build_runtime_param

    return build_runtime_param(descriptor)


class LeanCoercion:
    """The coercion of one parameter (see the module's docstring); Typer's ``RuntimeParam``
    interface: ``coerce(value, param, ctx)``."""

    def __init__(self, descriptor):
        self.descriptor = descriptor
        self._typer = None
        info = descriptor.parameter_info
        annotation = descriptor.annotation
        self.is_list = getattr(annotation, "__origin__", None) is list
        self.leaf = annotation.__args__[0] if self.is_list else annotation
        self.kind = _kind(self.leaf, info)

    def typer(self):
        if self._typer is None:
            self._typer = _typer_coercion(self.descriptor)
        return self._typer

    def coerce(self, value, param, ctx):
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        try:
            if self.kind is None or (multi and isinstance(value, str)):
                raise _Delegate
            if self.is_list:
                if not isinstance(value, list | tuple):
                    value = [value]
                return [self._leaf(v, param, ctx) for v in value]
            return self._leaf(value, param, ctx)
        except _Delegate:
            return self.typer().coerce(value, param=param, ctx=ctx)

    def _leaf(self, value, param, ctx):
        info = self.descriptor.parameter_info
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
        elif kind == "str":
            if isinstance(value, str):
                return value
        elif kind in ("int", "float"):
            return _number(value, kind, info)
        elif kind == "path":
            if isinstance(value, Path) or (isinstance(value, str) and value and "\0" not in value):
                from typer._param_types import coerce_cli_path

                try:
                    return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
                except Exception:
                    raise _Delegate from None
        elif kind == "enum":
            from typer._param_types import coerce_cli_choice

            try:
                return coerce_cli_choice(
                    value, choices=list(self.leaf), case_sensitive=info.case_sensitive, ctx=ctx
                )
            except Exception:
                raise _Delegate from None
        raise _Delegate


def _kind(annotation, info):
    """What :class:`LeanCoercion` converts itself; None: everything goes to Typer."""
    if getattr(info, "parser", None) is not None or getattr(info, "clamp", False):
        return None
    if annotation is bool:
        return "bool"
    if annotation is str:
        return "str"
    if annotation is int or annotation is float:
        return annotation.__name__
    if annotation is Path and not getattr(info, "path_type", None):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "enum"
    return None


def _number(value, kind, info):
    if isinstance(value, bool):
        raise _Delegate
    if kind == "int":
        if isinstance(value, str) and _INT.fullmatch(value):
            value = int(value)
        elif not isinstance(value, int):
            raise _Delegate
    else:
        if isinstance(value, str) and _FLOAT.fullmatch(value):
            value = float(value)
        elif isinstance(value, int | float):
            value = float(value)
        else:
            raise _Delegate
        if not math.isfinite(value):
            raise _Delegate
    lo, hi = info.min, info.max
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _Delegate  # Typer says what the bounds are
    return value


def lean_coercion(command):
    """Give every parameter of a built click command (Typer's) a :class:`LeanCoercion`,
    the help option too (click makes it when a command line is parsed); returns the
    command."""
    for param in getattr(command, "params", ()):
        _lean(param)
    get_help_option = getattr(command, "get_help_option", None)
    if get_help_option is not None:

        def lean_help_option(ctx):
            return _lean(get_help_option(ctx))

        command.get_help_option = lean_help_option
    return command


@functools.cache
def _typer_internals():
    """Whether the Typer functions this module calls exist (their modules do not import
    pydantic)."""
    try:
        from typer import _coercion, _param_types
    except ImportError:
        return False
    return (
        hasattr(_coercion, "build_runtime_param")
        and hasattr(_param_types, "coerce_cli_path")
        and hasattr(_param_types, "coerce_cli_choice")
    )


def _lean(param):
    descriptor = getattr(param, "type_descriptor", None)
    if (
        _typer_internals()
        and descriptor is not None
        and getattr(param, "_runtime_param", True) is None
        and getattr(descriptor, "file_annotation", None) is None
    ):
        param._runtime_param = LeanCoercion(descriptor)
    return param
