"""A Go-template interpreter for exactly the subset of Go templates and Sprig the chart uses.

Deliberately *stricter* than Helm: printing a missing value is an error here (Helm would print an
empty string), and an unsupported construct fails loudly instead of rendering something Helm
would not. ``parse`` turns one template file into nodes (and the templates it ``define``s);
``Renderer`` evaluates nodes against a data root. The chart renderer (``npuobs.deploy.chart``)
supplies Helm's objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml


class TemplateError(ValueError):
    """A template uses something this renderer does not support, or evaluates to an error."""


# ---------------------------------------------------------------------------------------------
# Go template subset: lexer and parser
# ---------------------------------------------------------------------------------------------

# ``{{- `` trims the whitespace before an action, `` -}}`` the whitespace after it (Go requires
# the space next to the dash).
_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*")
   |(?P<num>-?\d+)
   |(?P<decl>:=)
   |(?P<punct>[|(),])
   |(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
   |(?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
   |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)
_KEYWORDS = {"if", "else", "end", "range", "with", "define"}


@dataclass(frozen=True)
class _Operand:
    """One argument: a field chain on dot, a variable (maybe with fields), a literal or a sub-pipeline."""

    kind: str  # "field" | "var" | "lit" | "ident" | "pipe"
    value: Any = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Command:
    operands: tuple[_Operand, ...]


@dataclass(frozen=True)
class _Pipeline:
    decl: tuple[str, ...]
    commands: tuple[_Command, ...]


@dataclass
class _Node:
    """A parsed template node; ``kind`` is text, output, if, range, with or define."""

    kind: str
    text: str = ""
    pipeline: _Pipeline | None = None
    body: list[_Node] = field(default_factory=list)
    else_body: list[_Node] = field(default_factory=list)


def _tokens(source: str, where: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    source = source.rstrip()
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"{where}: cannot parse {source[pos:]!r}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _split_chain(token: str) -> tuple[str, tuple[str, ...]]:
    head, *rest = token.split(".")
    return head, tuple(rest)


class _PipelineParser:
    """Recursive descent over one action's tokens: ``[$a[, $b] :=] command | command ...``."""

    def __init__(self, tokens: list[tuple[str, str]], where: str) -> None:
        self.tokens, self.pos, self.where = tokens, 0, where

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> _Pipeline:
        decl: list[str] = []
        decl_end = next((i for i, (k, _) in enumerate(self.tokens) if k == "decl"), None)
        if decl_end is not None:
            names = [v for k, v in self.tokens[:decl_end] if k != "punct"]
            if not names or any(not n.startswith("$") or "." in n for n in names):
                raise TemplateError(f"{self.where}: bad variable declaration")
            decl, self.pos = names, decl_end + 1
        pipeline = self._pipeline()
        if self._peek() is not None:
            raise TemplateError(f"{self.where}: unexpected {self._peek()!r}")
        return _Pipeline(tuple(decl), pipeline.commands)

    def _pipeline(self) -> _Pipeline:
        commands = [self._command()]
        while self._peek() == ("punct", "|"):
            self.pos += 1
            commands.append(self._command())
        return _Pipeline((), tuple(commands))

    def _command(self) -> _Command:
        operands = []
        while (tok := self._peek()) is not None and tok not in (("punct", "|"), ("punct", ")")):
            operands.append(self._operand())
        if not operands:
            raise TemplateError(f"{self.where}: empty command")
        return _Command(tuple(operands))

    def _operand(self) -> _Operand:
        kind, text = self.tokens[self.pos]
        self.pos += 1
        if kind == "str":
            return _Operand("lit", json.loads(text))
        if kind == "num":
            return _Operand("lit", int(text))
        if kind == "field":
            return _Operand("field", fields=tuple(text.split(".")[1:]) if text != "." else ())
        if kind == "var":
            name, fields = _split_chain(text)
            return _Operand("var", name, fields)
        if kind == "ident":
            if text in ("true", "false"):
                return _Operand("lit", text == "true")
            return _Operand("ident", text)
        if (kind, text) == ("punct", "("):
            inner = self._pipeline()
            if self._peek() != ("punct", ")"):
                raise TemplateError(f"{self.where}: missing ')'")
            self.pos += 1
            return _Operand("pipe", inner)
        raise TemplateError(f"{self.where}: unexpected {text!r}")


def _lex(source: str, where: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", s) items, with the trim markers already applied."""
    pos, pending_trim, parts = 0, False, []
    for m in _ACTION.finditer(source):
        text = source[pos:m.start()]
        if pending_trim:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        parts.append(("text", text))
        parts.append(("action", m.group(2).strip()))
        pending_trim, pos = bool(m.group(3)), m.end()
    tail = source[pos:]
    parts.append(("text", tail.lstrip(" \t\r\n") if pending_trim else tail))
    if "{{" in "".join(t for k, t in parts if k == "text"):
        raise TemplateError(f"{where}: unterminated action")
    return parts


def parse(source: str, where: str) -> tuple[list[_Node], dict[str, list[_Node]]]:
    """Parse a template file into nodes and the templates it ``define``s."""
    defines: dict[str, list[_Node]] = {}
    root: list[_Node] = []
    # Each open block: (node, list currently being filled).
    stack: list[tuple[_Node, list[_Node]]] = []

    def target() -> list[_Node]:
        return stack[-1][1] if stack else root

    for kind, text in _lex(source, where):
        if kind == "text":
            if text:
                target().append(_Node("text", text=text))
            continue
        if text.startswith("/*"):
            if not text.endswith("*/"):
                raise TemplateError(f"{where}: unterminated comment")
            continue
        tokens = _tokens(text, where)
        head = tokens[0][1] if tokens and tokens[0][0] == "ident" and tokens[0][1] in _KEYWORDS else None
        if head in ("if", "range", "with"):
            node = _Node(head, pipeline=_PipelineParser(tokens[1:], where).parse())
            target().append(node)
            stack.append((node, node.body))
        elif head == "define":
            if stack or len(tokens) != 2 or tokens[1][0] != "str":
                raise TemplateError(f"{where}: define takes one name and must be at top level")
            node = _Node("define", text=json.loads(tokens[1][1]))
            stack.append((node, node.body))
        elif head == "else":
            if not stack or stack[-1][0].kind == "define" or len(tokens) > 1:
                raise TemplateError(f"{where}: bare else only, inside if/range/with")
            node, _ = stack[-1]
            stack[-1] = (node, node.else_body)
        elif head == "end":
            if not stack:
                raise TemplateError(f"{where}: end without a block")
            node, _ = stack.pop()
            if node.kind == "define":
                defines[node.text] = node.body
        else:
            target().append(_Node("output", pipeline=_PipelineParser(tokens, where).parse()))
    if stack:
        raise TemplateError(f"{where}: missing end")
    return root, defines


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings, lists and maps are false."""
    return bool(value)


def _text(value: Any, where: str) -> str:
    if value is None:
        raise TemplateError(f"{where}: value is missing (Helm would print an empty string)")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise TemplateError(f"{where}: cannot print a {type(value).__name__}; use toYaml")
    if isinstance(value, int) and abs(value) >= 1_000_000:
        # Helm reads every number in values.yaml as a float64 and prints this one as 1e+06.
        raise TemplateError(f"{where}: Helm would print {value} in exponent form; quote it in values.yaml")
    return str(value)


def _to_yaml(value: Any) -> str:
    """Sprig/Helm ``toYaml``: keys sorted, block style, no trailing newline."""
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True, width=1_000).rstrip("\n")


def _indent(width: int, text: str) -> str:
    pad = " " * width
    return pad + text.replace("\n", "\n" + pad)


def _quote(*values: Any) -> str:
    return " ".join(json.dumps(v if isinstance(v, str) else _text(v, "quote")) for v in values
                    if v is not None)


def _first(pick: Callable[[Any], bool], values: Sequence[Any]) -> Any:
    for value in values:
        if pick(value):
            return value
    return values[-1]



class Renderer:
    def __init__(self, defines: dict[str, list[_Node]]) -> None:
        self.defines = defines
        self.functions: dict[str, Callable[..., Any]] = {
            "include": self._include,
            "toYaml": _to_yaml,
            "nindent": lambda width, text: "\n" + _indent(width, text),
            "indent": _indent,
            "quote": _quote,
            "default": lambda fallback, value=None: value if _truthy(value) else fallback,
            "or": lambda *values: _first(_truthy, values),
            "and": lambda *values: _first(lambda v: not _truthy(v), values),
            "not": lambda value: not _truthy(value),
        }

    def _include(self, name: str, data: Any) -> str:
        if name not in self.defines:
            raise TemplateError(f"include: no template named {name!r}")
        out: list[str] = []
        self.run(self.defines[name], data, [{"$": data}], out, f"include {name!r}")
        return "".join(out)

    @staticmethod
    def _field(value: Any, name: str, where: str) -> Any:
        if value is None:
            raise TemplateError(f"{where}: nil pointer evaluating .{name}")
        if isinstance(value, dict):
            return value.get(name)
        if hasattr(value, name):
            return getattr(value, name)
        raise TemplateError(f"{where}: can't evaluate field {name} in {type(value).__name__}")

    def _lookup(self, scopes: list[dict[str, Any]], name: str, where: str) -> Any:
        for scope in reversed(scopes):
            if name in scope:
                return scope[name]
        raise TemplateError(f"{where}: undefined variable {name}")

    def _operand(self, op: _Operand, dot: Any, scopes: list[dict[str, Any]], where: str) -> Any:
        if op.kind == "lit":
            return op.value
        if op.kind == "pipe":
            return self.pipeline(op.value, dot, scopes, where)
        value = dot if op.kind == "field" else self._lookup(scopes, op.value, where)
        for name in op.fields:
            value = self._field(value, name, where)
        return value

    def _command(self, cmd: _Command, dot: Any, scopes: list[dict[str, Any]], where: str,
                 piped: tuple[Any, ...]) -> Any:
        first, rest = cmd.operands[0], cmd.operands[1:]
        args = [self._operand(op, dot, scopes, where) for op in rest]
        if first.kind == "ident":
            if first.value not in self.functions:
                raise TemplateError(f"{where}: function {first.value!r} is not supported")
            return self.functions[first.value](*args, *piped)
        value = self._operand(first, dot, scopes, where)
        if callable(value):  # a method such as .Files.Get
            return value(*args, *piped)
        if args or piped:
            raise TemplateError(f"{where}: {first} is not a function")
        return value

    def pipeline(self, pipe: _Pipeline, dot: Any, scopes: list[dict[str, Any]], where: str) -> Any:
        piped: tuple[Any, ...] = ()
        for cmd in pipe.commands:
            piped = (self._command(cmd, dot, scopes, where, piped),)
        if pipe.decl:
            if len(pipe.decl) != 1:
                raise TemplateError(f"{where}: only range declares two variables")
            scopes[-1][pipe.decl[0]] = piped[0]
        return piped[0]

    def run(self, nodes: list[_Node], dot: Any, scopes: list[dict[str, Any]], out: list[str],
            where: str) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "output":
                assert node.pipeline is not None
                value = self.pipeline(node.pipeline, dot, scopes, where)
                if not node.pipeline.decl:
                    out.append(_text(value, where))
            elif node.kind in ("if", "with"):
                assert node.pipeline is not None
                inner = scopes + [{}]  # variables declared in the condition live until the block's end
                value = self.pipeline(node.pipeline, dot, inner, where)
                branch, inner_dot = (node.body, value if node.kind == "with" else dot) if _truthy(value) \
                    else (node.else_body, dot)
                self.run(branch, inner_dot, inner, out, where)
            elif node.kind == "range":
                self._range(node, dot, scopes, out, where)
            else:
                raise TemplateError(f"{where}: unexpected node {node.kind}")

    def _range(self, node: _Node, dot: Any, scopes: list[dict[str, Any]], out: list[str],
               where: str) -> None:
        assert node.pipeline is not None
        decl = node.pipeline.decl
        value = self.pipeline(_Pipeline((), node.pipeline.commands), dot, scopes, where)
        if isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value)]  # Go ranges over maps in key order
        elif isinstance(value, list):
            items = list(enumerate(value))
        elif value is None:
            items = []
        else:
            raise TemplateError(f"{where}: range over a {type(value).__name__}")
        if not items:
            self.run(node.else_body, dot, scopes + [{}], out, where)
        for key, item in items:
            scope: dict[str, Any] = {}
            if len(decl) == 1:
                scope[decl[0]] = item
            elif len(decl) == 2:
                scope[decl[0]], scope[decl[1]] = key, item
            elif decl:
                raise TemplateError(f"{where}: range declares at most two variables")
            self.run(node.body, item, scopes + [scope], out, where)
