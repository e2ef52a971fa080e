"""Render the Helm chart in ``deploy/helm/npuobs`` without Helm, and keep every deploy artifact in sync.

Why this exists: no ``helm`` binary installs from the registries this project can reach, yet the
chart and the plain manifests in ``deploy/manifests`` must never drift apart. So the chart is the
single source of truth and this module is a small interpreter for exactly the subset of Go
templates, Helm objects and Sprig functions the chart uses. It is deliberately *stricter* than
Helm: printing a missing value is an error here (Helm would print an empty string), and an
unsupported construct fails loudly instead of rendering something Helm would not. The tests
compare its output with Helm v4's own engine (``helm-python-sdk``, a ~250 MB native wheel this
module deliberately does not need).

``python -m npuobs.deploy_render`` (re)writes, from their sources:

- ``deploy/helm/npuobs/files/prometheus-rules.yaml``: the ``spec`` of the generated
  ``alerts/generated/prometheusrule.yaml`` (the chart's PrometheusRule embeds it with ``.Files.Get``);
- ``deploy/compose/alertmanager.yml``: the generated Alertmanager config with the PagerDuty URL
  pointed at the compose stack's sink;
- ``deploy/manifests/``: the chart rendered for its default values, one object per file, plus a
  Namespace and a ``kustomization.yaml``.

``--check`` writes nothing and exits 1 when any of those is stale (the tests do the same).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from npuobs.alerting import conventions as cv
from npuobs.alerting.amconfig import AlertmanagerOptions
from npuobs.alerting.generate import dump_yaml, render
from npuobs.config import Config

CHART_DIR = Path("deploy/helm/npuobs")
MANIFESTS_DIR = Path("deploy/manifests")
CHART_RULES_FILE = CHART_DIR / "files" / "prometheus-rules.yaml"
COMPOSE_ALERTMANAGER_FILE = Path("deploy/compose/alertmanager.yml")
SLO_SPEC = Path("alerts/slo.yaml")
GENERATED_PROMETHEUS_RULE = Path("alerts/generated") / cv.PROMETHEUS_RULE_FILE

RELEASE_NAME = "npuobs"
NAMESPACE = "npuobs"
# The compose stack's PagerDuty stand-in (service ``pagerduty-sink`` in docker-compose.yml).
COMPOSE_PAGERDUTY_URL = "http://pagerduty-sink:8080/v2/enqueue"

REGENERATE = "python -m npuobs.deploy_render"


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


def _parse(source: str, where: str) -> tuple[list[_Node], dict[str, list[_Node]]]:
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


@dataclass(frozen=True)
class Release:
    name: str = RELEASE_NAME
    namespace: str = NAMESPACE


class _Files:
    """Helm's ``.Files``: read-only access to the chart's non-template files."""

    def __init__(self, chart_dir: Path) -> None:
        self._chart_dir = chart_dir

    def Get(self, name: str) -> str:  # noqa: N802 - Helm's method name
        path = (self._chart_dir / name).resolve()
        if self._chart_dir.resolve() not in path.parents or not path.is_file():
            raise TemplateError(f".Files.Get: no file {name!r} in the chart")
        return path.read_text(encoding="utf-8")


class _Renderer:
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


# ---------------------------------------------------------------------------------------------
# The chart
# ---------------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Helm's value coalescing for what ``--set``/``-f`` do: maps merge, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def chart_metadata(chart_dir: Path) -> dict[str, Any]:
    """Chart.yaml as Helm exposes it to templates (``.Chart.Name``, ``.Chart.AppVersion``...)."""
    doc = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    return {key[:1].upper() + key[1:]: value for key, value in doc.items()}


def render_chart(chart_dir: Path, overrides: dict[str, Any] | None = None,
                 release: Release = Release()) -> list[tuple[str, dict[str, Any]]]:
    """Render every template for ``values.yaml`` merged with ``overrides``: [(template, object)]."""
    values = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8")) or {}
    root = {
        "Values": _merge(values, overrides or {}),
        "Release": {"Name": release.name, "Namespace": release.namespace, "Service": "Helm"},
        "Chart": chart_metadata(chart_dir),
        "Files": _Files(chart_dir),
    }
    templates = sorted(p for p in (chart_dir / "templates").iterdir() if p.suffix in (".yaml", ".tpl"))
    parsed, defines = {}, {}
    for path in templates:
        nodes, file_defines = _parse(path.read_text(encoding="utf-8"), path.name)
        parsed[path.name] = nodes
        defines.update(file_defines)
    renderer = _Renderer(defines)
    objects = []
    for name, nodes in parsed.items():
        if name.startswith("_"):
            continue  # partials only define templates, as in Helm
        out: list[str] = []
        renderer.run(nodes, root, [{"$": root}], out, name)
        try:
            docs = list(yaml.safe_load_all("".join(out)))
        except yaml.YAMLError as exc:
            raise TemplateError(f"{name}: rendered output is not YAML: {exc}") from exc
        objects.extend((name, doc) for doc in docs if doc is not None)
    return objects


# ---------------------------------------------------------------------------------------------
# Generated artifacts
# ---------------------------------------------------------------------------------------------


def chart_rules_file(root: Path) -> str:
    """The chart's copy of the generated PrometheusRule's ``spec`` (rule groups)."""
    crd = yaml.safe_load((root / GENERATED_PROMETHEUS_RULE).read_text(encoding="utf-8"))
    header = (f"# Copied from {GENERATED_PROMETHEUS_RULE} (its spec) by `{REGENERATE}`; do not edit.\n"
              f"# templates/prometheusrule.yaml embeds it with .Files.Get.\n")
    return dump_yaml(crd["spec"], header)


def compose_alertmanager_config(root: Path) -> str:
    """The generated Alertmanager config, PagerDuty pointed at the compose stack's sink."""
    config = Config.load(root / SLO_SPEC, alertmanager=AlertmanagerOptions(pagerduty_url=COMPOSE_PAGERDUTY_URL))
    return render(config)[cv.ALERTMANAGER_FILE]


def namespace_object() -> dict[str, Any]:
    """The Namespace for the plain manifests (Helm users pass ``--create-namespace`` and label it).

    Pod Security ``restricted``: every default DaemonSet meets it; the one that needs a hostPath
    (neuron) runs isolated in its own ``privileged`` namespace, which the chart renders itself.
    """
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {
                "app.kubernetes.io/name": "npuobs",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            }}}


def manifest_files(root: Path) -> dict[str, str]:
    """File name -> content of ``deploy/manifests`` (default values, release ``npuobs``)."""
    header = (f"# Rendered from {CHART_DIR} (default values, release {RELEASE_NAME!r}) by `{REGENERATE}`; "
              "do not edit.\n")
    objects = [("namespace", namespace_object())] + render_chart(root / CHART_DIR)
    files: dict[str, str] = {}
    for _, obj in objects:
        name = f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        if name in files:
            raise TemplateError(f"two objects render to {name}")
        files[name] = dump_yaml(obj, header)
    # no kustomization-wide namespace: it would pull the isolated accelerators' objects (and rename
    # their Namespace) into the restricted one; every object names its namespace itself
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": list(files)}
    files["kustomization.yaml"] = dump_yaml(kustomization, header)
    return files


def expected_files(root: Path) -> dict[Path, str]:
    """Every file this module owns, relative to the repository root, with its expected content.

    The chart's rules copy comes first: rendering the manifests reads it.
    """
    return {CHART_RULES_FILE: chart_rules_file(root),
            COMPOSE_ALERTMANAGER_FILE: compose_alertmanager_config(root)}


def stale(root: Path) -> list[Path]:
    """Owned files whose content differs from what would be written (or that are missing/extra)."""
    out = [path for path, content in expected_files(root).items()
           if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != content]
    manifests = manifest_files(root)
    present = {p.name for p in (root / MANIFESTS_DIR).glob("*.yaml")}
    out += [MANIFESTS_DIR / name for name in sorted(present | set(manifests))
            if name not in manifests or name not in present
            or (root / MANIFESTS_DIR / name).read_text(encoding="utf-8") != manifests[name]]
    return out


def write_all(root: Path) -> list[Path]:
    written = []
    for path, content in expected_files(root).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content, encoding="utf-8")
        written.append(path)
    out_dir = root / MANIFESTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    manifests = manifest_files(root)
    for old in out_dir.glob("*.yaml"):
        if old.name not in manifests:
            old.unlink()
    for name, content in manifests.items():
        (out_dir / name).write_text(content, encoding="utf-8")
        written.append(MANIFESTS_DIR / name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="repository root (default: the current directory); `npuobs generate` does this and more")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is stale")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale(args.root)
        for path in outdated:
            print(f"stale: {path}", file=sys.stderr)
        if outdated:
            print(f"run `{REGENERATE}` and commit the result", file=sys.stderr)
        return 1 if outdated else 0
    for path in write_all(args.root):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
