"""Typed backend options: one frozen dataclass per backend, checked before the backend is built.

Options reach a backend from three places (the exporter config's ``backend_options``, CLI flags
such as ``npuobs devices --option key=value``, and ``auto`` handing options to its children), as
YAML values or as strings. Each backend declares what it takes as a dataclass; ``parse`` turns a
plain mapping into that dataclass, converting strings to the field's type, and rejects an unknown
name or a value of the wrong type with one message naming the option, so a typo
(``tool_pth``) is an error instead of a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar, Union

from npuobs.devices.base import BackendError

OptionsT = TypeVar("OptionsT", bound="BackendOptions")

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class BackendOptions:
    """What every backend takes: the node it runs on (some backends need it, the rest ignore it)."""

    node: str = ""


@dataclass(frozen=True)
class ToolOptions(BackendOptions):
    """A backend reading one vendor SMI tool: where the tool is and how long one call may take."""

    tool_path: str | None = None  # absolute path of the tool; default: looked up on PATH
    timeout: float = 5.0  # seconds one tool call may take


def names(cls: type[BackendOptions]) -> tuple[str, ...]:
    """The option names ``cls`` accepts, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls))


def parse(cls: type[OptionsT], values: Mapping[str, Any], *, backend: str) -> OptionsT:
    """``values`` as a ``cls``; BackendError naming the backend and the option on a bad one."""
    hints = typing.get_type_hints(cls)
    known = names(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise BackendError(f"backend {backend!r}: unknown option {key!r}; "
                               f"valid options: {', '.join(known) or 'none'}")
        kwargs[key] = _convert(value, hints[key], f"backend {backend!r}: option {key!r}")
    return cls(**kwargs)


def as_kwargs(options: BackendOptions) -> dict[str, Any]:
    """The options as constructor keywords (shallow: nested mappings stay as they are)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against (and, from a string, converted to) the type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("", "none", "null") and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if hint is Any:
        return value
    if hint is str:
        if isinstance(value, str):
            return value
        raise BackendError(f"{where} must be a string, got {value!r}")
    if hint is Path:
        if isinstance(value, str | PathLike):
            return Path(value)
        raise BackendError(f"{where} must be a path, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise BackendError(f"{where} must be true or false, got {value!r}")
    if hint in (int, float):
        number = _number(value, hint, where)
        if not math.isfinite(number):
            raise BackendError(f"{where} must be a finite number, got {value!r}")
        return number
    if origin is tuple:
        items = [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise BackendError(f"{where} must be a list, got {value!r}")
        return tuple(_convert(item, args[0], where) for item in items)
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise BackendError(f"{where} must be a mapping (set it in the config file), got {value!r}")
        return dict(value)
    raise BackendError(f"{where}: unsupported option type {hint!r}")  # a backend declared a type we cannot read


def _number(value: Any, hint: type, where: str) -> float | int:
    kind = "an integer" if hint is int else "a number"
    if isinstance(value, bool):
        raise BackendError(f"{where} must be {kind}, got {value!r}")
    if isinstance(value, str):
        try:
            return hint(value)
        except ValueError:
            raise BackendError(f"{where} must be {kind}, got {value!r}") from None
    if isinstance(value, int) or (hint is float and isinstance(value, float)):
        return hint(value)
    raise BackendError(f"{where} must be {kind}, got {value!r}")
