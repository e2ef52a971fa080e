"""Bad input never gets a traceback: one line naming the value and where, exit 2 (issue 15 items 9, 10).

The cases the issue found are listed one by one; a Hypothesis property then drives every
subcommand with generated bad arguments and bad files. Both run ``npuobs``'s ``main()`` in-process
(fast); what would start real work if a bad value were accepted (an exporter, a fleet, a game day,
the demo stack) is replaced by a guard that fails the test, so an accepted bad value is caught
instead of hanging. A few cases also run as real subprocesses (``test_robustness_state``).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npuobs.cli.main import SUBCOMMANDS, main
from npuobs.simulator.fleet import Fleet, FleetConfig

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = yaml.safe_load((ROOT / "alerts" / "slo.yaml").read_text())


_UNIQUE = itertools.count()  # fresh file names: examples replay and shrink, names must not collide


class Accepted(Exception):
    """A bad value got past validation and the command began its real work."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files and directories the cases point at: a live fleet, a corrupt one, bad bytes, a plain file."""
    root = tmp_path_factory.mktemp("bad-input")
    sim = root / "sim"
    Fleet(FleetConfig.single_node(1, node="n"), sim).run(1)
    corrupt = root / "corrupt-fleet"
    Fleet(FleetConfig.single_node(1, node="n"), corrupt).run(1)
    (corrupt / "fleet.json").write_text('{"nodes": 5, "now": "x"}')
    binary = root / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00 not text \x80")
    plain = root / "plain-file"
    plain.write_text("x")
    files = {"sim": sim, "corrupt": corrupt, "binary": binary, "file": plain, "root": root}
    for name, text in {
        "sli-list": yaml.safe_dump({**DEFAULT_SPEC, "slos": [{**DEFAULT_SPEC["slos"][0], "sli": [1, 2]}]}),
        "openslo-bad": "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x, annotations: [1]}\nspec: [\n",
        "openslo-shape": "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x, annotations: [1]}\n"
                         "spec: {service: s, objectives: [{target: 0.9}]}\n",
        "neg-tick": "nodes:\n  - name: a\n    devices: [RNGD]\ntick_seconds: -1\n",
        "tiny-interval": "backend: sim\nnode: n\ninterval: 0.000001\n",
        "rules-int": "rules: 5\n",
        "tick-string": "nodes:\n  - name: a\n    devices: [RNGD]\ntick_seconds: '1'\n",
    }.items():
        (root / f"{name}.yaml").write_text(text)
        files[name] = root / f"{name}.yaml"
    return files


@pytest.fixture(autouse=True)
def guards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever would start real work raises Accepted instead."""
    def accepted(*_: Any, **__: Any) -> None:
        raise Accepted

    for target in ("npuobs.exporter.app.Exporter.start", "npuobs.simulator.fleet.Fleet.run",
                   "npuobs.gameday.soak.run_soak", "npuobs.gameday.runner.run_drills",
                   "npuobs.stack.embedded.EmbeddedStack.start", "npuobs.remediation.webhook.WebhookServer.start"):
        monkeypatch.setattr(target, accepted)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` in-process: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue()


def assert_one_line_exit_2(argv: list[str], needle: str = "") -> str:
    code, err = run_cli(argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, f"{argv}: traceback:\n{err}"
    assert code == 2, f"{argv}: exit {code}, stderr:\n{err}"
    assert len(lines) == 1, f"{argv}: {len(lines)} lines on stderr:\n{err}"
    assert needle in lines[0], f"{argv}: {needle!r} not in {lines[0]!r}"
    return lines[0]


def _sim_base(w: dict[str, Path]) -> list[str]:
    return ["sim", "run", "--devices", "1", "--duration", "1s", "--quiet", "--state-dir", str(w["root"] / "run")]


def _remediate_base(w: dict[str, Path]) -> list[str]:
    return ["remediate", "--control-url", "http://127.0.0.1:1", "--alertmanager", "http://127.0.0.1:1",
            "--state-dir", str(w["root"] / "rem")]


def _exporter_base(w: dict[str, Path]) -> list[str]:
    return ["exporter", "--backend", "sim", "--node", "n", "--state-dir", str(w["sim"]), "--listen", "127.0.0.1:0"]


# --- every case issue 15 lists ----------------------------------------------------------------------------

CASES: dict[str, tuple[Any, str]] = {
    # item 9
    "config not UTF-8": (lambda w: ["exporter", "--config", str(w["binary"])], "not UTF-8"),
    "web config not UTF-8": (lambda w: [*_exporter_base(w), "--web-config", str(w["binary"])], "not UTF-8"),
    "SLO spec not UTF-8": (lambda w: ["alerts", "generate", "--slo", str(w["binary"]), "--out",
                                      str(w["root"] / "o1")], "not UTF-8"),
    "sli as a list": (lambda w: ["alerts", "generate", "--slo", str(w["sli-list"]), "--out", str(w["root"] / "o2")],
                      "sli"),
    "malformed OpenSLO": (lambda w: ["alerts", "generate", "--slo", str(w["openslo-bad"]), "--out",
                                     str(w["root"] / "o3")], "not valid YAML"),
    "OpenSLO of the wrong shape": (lambda w: ["alerts", "generate", "--slo", str(w["openslo-shape"]), "--out",
                                              str(w["root"] / "o4")], "metadata.annotations"),
    "alerts --out naming a file": (lambda w: ["alerts", "generate", "--out", str(w["file"])], "not a directory"),
    "dashboards --out naming a file": (lambda w: ["dashboards", "generate", "--out", str(w["file"])],
                                       "not a directory"),
    "sim backend without --state-dir": (lambda w: ["exporter", "--backend", "sim", "--node", "n"], "--state-dir"),
    "--interval inf": (lambda w: [*_exporter_base(w), "--interval", "inf"], "'inf'"),
    "--interval 1e12": (lambda w: [*_exporter_base(w), "--interval", "1e12"], "'1e12'"),
    "sim run --seed -1": (lambda w: [*_sim_base(w), "--seed", "-1"], "--seed"),
    "negative tick_seconds": (lambda w: ["sim", "run", "--fleet", str(w["neg-tick"]), "--state-dir",
                                         str(w["root"] / "run")], "tick_seconds"),
    "malformed fleet.json (inject)": (lambda w: ["sim", "inject", "F1", "--state-dir", str(w["corrupt"])],
                                      "fleet.json"),
    "malformed fleet.json (status)": (lambda w: ["sim", "status", "--state-dir", str(w["corrupt"])], "fleet.json"),
    "gameday --soak 0s": (lambda w: ["gameday", "--soak", "0s"], "--soak"),
    "slo report --prometheus notaurl": (lambda w: ["slo", "report", "--prometheus", "notaurl"], "'notaurl'"),
    # item 10
    "interval: 1e-6": (lambda w: ["exporter", "--config", str(w["tiny-interval"]), "--state-dir", str(w["sim"])],
                       "interval"),
    "sim run --speed 0": (lambda w: [*_sim_base(w), "--speed", "0"], "--speed"),
    # found by the property test below
    "remediation policy not UTF-8": (lambda w: [*_remediate_base(w), "--policy", str(w["binary"])], "not UTF-8"),
    "remediation rules not a list": (lambda w: [*_remediate_base(w), "--policy", str(w["rules-int"])],
                                     "rules: expected a list"),
    "dashboards --cost-per-kwh nan": (lambda w: ["dashboards", "generate", "--out", str(w["root"] / "d"),
                                                 "--cost-per-kwh", "nan"], "--cost-per-kwh"),
    "demo --duration 0s": (lambda w: ["demo", "--duration", "0s"], "--duration"),
    "alerts maintenance --alertmanager notaurl": (lambda w: ["alerts", "maintenance", "list", "--alertmanager",
                                                             "notaurl"], "--alertmanager"),
    "fleet tick_seconds as a string": (lambda w: ["sim", "run", "--fleet", str(w["tick-string"]), "--state-dir",
                                                  str(w["root"] / "run")], "tick_seconds must be a number"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_case_from_the_issue_is_one_line_and_exit_2(world: dict[str, Path], case: str) -> None:
    argv, needle = CASES[case]
    assert_one_line_exit_2(argv(world), needle)


# --- generated bad input over every subcommand -----------------------------------------------------------

def _floats_outside(lo: float, hi: float) -> st.SearchStrategy[str]:
    """Text of numbers outside [lo, hi], non-numbers and non-finite ones."""
    return st.one_of(
        st.floats(max_value=lo, exclude_max=True, allow_nan=False).map(repr),
        st.floats(min_value=hi, exclude_min=True, allow_nan=False).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e309", "", "abc", "0x10", "1,5", "--"]),
    )


def _ints_outside(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.one_of(st.integers(max_value=lo - 1).map(str), st.integers(min_value=hi + 1).map(str),
                     st.sampled_from(["1.5", "", "one", "1e3", "0x1"]))


BAD_DURATION = st.one_of(st.sampled_from(["0s", "-1s", "0", "1y1", "s", "", "1.5.5s", "inf", "10 m"]),
                         st.text(alphabet="xyz!#", min_size=1))
BAD_URL = st.one_of(st.sampled_from(["notaurl", "ftp://x", "http://", "http://h:99999", "://x", "127.0.0.1:9090"]),
                    st.text(alphabet="abc./", max_size=12))
JUNK = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                    max_leaves=6)


def _mutated(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(base))
    parts = key.split(".")
    target = doc
    for p in parts[:-1]:
        target = target[int(p)] if isinstance(target, list) else target[p]
    if isinstance(target, list):
        target[int(parts[-1])] = value
    else:
        target[parts[-1]] = value
    return doc


def _bad_number_value(lo: float, hi: float) -> st.SearchStrategy[Any]:
    return st.one_of(st.floats(max_value=lo, exclude_max=True), st.floats(min_value=hi, exclude_min=True),
                     st.text(max_size=5), st.lists(st.integers(), max_size=2), st.booleans())


BAD_SPEC = st.one_of(
    st.tuples(st.just("slos.0.sli"), st.one_of(st.lists(st.integers(), max_size=3), st.integers(),
                                               st.text(max_size=6).filter(lambda t: t not in
                                                                          ("availability", "latency", "accuracy")))),
    st.tuples(st.just("slos.0.objective"), st.one_of(st.floats(min_value=100), st.floats(max_value=0),
                                                     st.text(max_size=4), st.lists(st.integers(), max_size=2))),
    st.tuples(st.just("slos.0.period"), st.one_of(st.integers(), st.sampled_from(["0d", "-1d", "abc", "1h"]))),
    st.tuples(st.just("version"), st.one_of(st.integers(), st.text(max_size=6))),
    st.tuples(st.just("slos"), st.one_of(st.integers(), st.text(max_size=4), st.just([]), st.dictionaries(
        st.text(max_size=3), st.integers(), max_size=2))),
    st.tuples(st.just("fleet"), st.one_of(st.integers(), st.lists(st.integers(), max_size=2))),
    st.tuples(st.just("slos.0.name"), st.one_of(st.integers(), st.just(""), st.just("Has Spaces"))),
)
EXPORTER_CONFIG = {"backend": "sim", "node": "n"}
BAD_EXPORTER_CONFIG = st.one_of(
    st.tuples(st.just("interval"), _bad_number_value(0.05, 3600)),
    st.tuples(st.just("sample_timeout"), _bad_number_value(0.01, 600)),
    st.tuples(st.just("listen"), st.one_of(st.sampled_from(["nocolon", "h:99999", ":", "a:b"]), st.integers())),
    st.tuples(st.just("log_format"), st.text(max_size=5).filter(lambda t: t not in ("json", "text"))),
    st.tuples(st.just("profile"), st.text(max_size=5).filter(lambda t: t not in ("minimal", "standard", "debug"))),
    st.tuples(st.just("backend"), st.one_of(st.integers(), st.sampled_from(["nope", ""]))),
    st.tuples(st.just("backend_options"), st.one_of(st.integers(), st.dictionaries(
        st.sampled_from(["tool_pth", "x"]), st.integers(), min_size=1))),
    st.tuples(st.text(alphabet="qwz", min_size=1, max_size=4), st.integers()),  # an unknown key
)
BAD_WEB_CONFIG = st.tuples(
    st.sampled_from(["tls_server_config", "basic_auth_users", "zz"]),
    st.one_of(st.integers(), st.lists(st.integers(), max_size=2),
              st.dictionaries(st.just("u"), st.sampled_from(["not-a-bcrypt-hash", ""]), min_size=1)))
NOT_A_MAPPING = st.one_of(st.integers(), st.text(min_size=1, max_size=4),
                          st.lists(st.integers(), min_size=1, max_size=2))
BAD_POLICY = st.one_of(st.tuples(st.sampled_from(["limits", "zz"]), JUNK),
                       st.tuples(st.sampled_from(["guardrails", "rules"]), NOT_A_MAPPING),
                       st.tuples(st.just("enabled"), st.one_of(st.integers(), st.text(max_size=4))))
FLEET = {"nodes": [{"name": "a", "devices": ["RNGD"]}], "tick_seconds": 1.0}
BAD_FLEET = st.one_of(
    st.tuples(st.just("tick_seconds"), _bad_number_value(0.01, 60)),
    st.tuples(st.just("seed"), st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32), st.text(max_size=3))),
    st.tuples(st.just("nodes"), st.one_of(st.integers(), st.just([]), st.lists(st.integers(), min_size=1, max_size=2))),
    st.tuples(st.just("nodes.0.name"), st.sampled_from(["../x", "", "a/b", ".hidden", "x" * 64])),
    st.tuples(st.just("nodes.0.devices"), st.one_of(st.integers(), st.lists(st.one_of(
        st.integers(), st.lists(st.integers()), st.just("NoSuchNPU")), min_size=1, max_size=2))),
    st.tuples(st.just("load"), st.one_of(st.integers(), st.fixed_dictionaries(
        {"rate_per_device": _bad_number_value(0, 1e6)}), st.fixed_dictionaries({"tenants": JUNK.filter(
            lambda v: not isinstance(v, dict) or any(not isinstance(x, int | float) or isinstance(x, bool)
                                                     or not (0 <= x < math.inf) for x in v.values()))}))),
)


def _bad_file(draw: st.DrawFn, root: Path, kind: str) -> Path:
    """A bad file for an option that reads ``kind`` (spec, exporter, web, fleet): bytes or a bad document."""
    path = root / f"gen-{kind}-{next(_UNIQUE)}.yaml"
    how = draw(st.sampled_from(["bytes", "directory", "missing", "document"]))
    if how == "bytes":
        path.write_bytes(b"\xff" + draw(st.binary(max_size=40)))
    elif how == "directory":
        path.mkdir()
    elif how == "document":
        base, bad = {"spec": (DEFAULT_SPEC, BAD_SPEC), "exporter": (EXPORTER_CONFIG, BAD_EXPORTER_CONFIG),
                     "fleet": (FLEET, BAD_FLEET), "web": ({}, BAD_WEB_CONFIG),
                     "policy": ({}, BAD_POLICY)}[kind]
        key, value = draw(bad)
        path.write_text(yaml.safe_dump(_mutated(base, key, value)))
    return path


@st.composite
def bad_invocation(draw: st.DrawFn, w: dict[str, Path]) -> list[str]:
    """One subcommand, otherwise complete, with exactly one bad argument or file."""
    root = w["root"]
    out = str(root / f"out-{next(_UNIQUE)}")
    spec = lambda: str(_bad_file(draw, root, "spec"))  # noqa: E731 - drawn lazily, only for the chosen case
    choices = {
        "exporter --interval": lambda: [*_exporter_base(w), "--interval", draw(_floats_outside(0.05, 3600))],
        "exporter --sample-timeout": lambda: [*_exporter_base(w), "--sample-timeout",
                                              draw(_floats_outside(0.01, 600))],
        "exporter --otlp-interval": lambda: [*_exporter_base(w), "--otlp-interval", draw(_floats_outside(0.1, 86400))],
        "exporter --config": lambda: ["exporter", "--state-dir", str(w["sim"]), "--listen", "127.0.0.1:0",
                                      "--config", str(_bad_file(draw, root, "exporter"))],
        "exporter --web-config": lambda: [*_exporter_base(w), "--web-config", str(_bad_file(draw, root, "web"))],
        "sim run --seed": lambda: [*_sim_base(w), "--seed", draw(_ints_outside(0, 2**32 - 1))],
        "sim run --speed": lambda: [*_sim_base(w), "--speed", draw(_floats_outside(0.01, 1e6))],
        "sim run --rate": lambda: [*_sim_base(w), "--rate", draw(_floats_outside(0, 1e6))],
        "sim run --devices": lambda: ["sim", "run", "--devices", draw(_ints_outside(1, 256)), "--state-dir",
                                      str(root / "run")],
        "sim run --duration": lambda: [*_sim_base(w)[:-2], "--state-dir", str(root / "run"), "--duration",
                                       draw(BAD_DURATION.filter(lambda t: not t.replace(".", "", 1).isdigit()))],
        "sim run --fleet": lambda: ["sim", "run", "--quiet", "--state-dir", str(root / "run"), "--fleet",
                                    str(_bad_file(draw, root, "fleet"))],
        "sim inject (corrupt fleet)": lambda: ["sim", "inject", "F2", "--state-dir", str(w["corrupt"])],
        "sim inject --duration": lambda: ["sim", "inject", "F2", "--state-dir", str(w["sim"]), "--duration",
                                          draw(st.sampled_from(["0", "-5s", "abc", "0s"]))],
        "sim inject fault": lambda: ["sim", "inject", draw(st.text(alphabet="XYZ9", min_size=1, max_size=4)),
                                     "--state-dir", str(w["sim"])],
        "alerts generate --slo": lambda: ["alerts", "generate", "--slo", spec(), "--out", out],
        "alerts generate --out": lambda: ["alerts", "generate", "--out", str(w["file"] / "sub")],
        "dashboards generate --slo": lambda: ["dashboards", "generate", "--slo", spec(), "--out", out],
        "slo report --prometheus": lambda: ["slo", "report", "--prometheus", draw(BAD_URL)],
        "alerts maintenance --alertmanager": lambda: ["alerts", "maintenance", "list", "--alertmanager",
                                                      draw(BAD_URL)],
        "remediate URLs": lambda: [*_remediate_base(w), draw(st.sampled_from(
            ["--control-url", "--alertmanager", "--prometheus", "--grafana-url", "--pagerduty-url"])), draw(BAD_URL)],
        "slo report --slo": lambda: ["slo", "report", "--prometheus", "http://127.0.0.1:1", "--slo", spec()],
        "gameday --soak": lambda: ["gameday", "--soak", draw(BAD_DURATION)],
        "gameday --speed": lambda: ["gameday", "--scenario", "F1", "--speed", draw(_floats_outside(0.01, 1e6))],
        "gameday --tick": lambda: ["gameday", "--soak", "1h", "--tick", draw(_floats_outside(0.01, 60))],
        "gameday --seed": lambda: ["gameday", "--soak", "1h", "--seed", draw(_ints_outside(0, 2**32 - 1))],
        "gameday --workers": lambda: ["gameday", "--soak", "1h", "--workers", draw(_ints_outside(1, 64))],
        "gameday --slo": lambda: ["gameday", "--scenario", "F1", "--slo", spec()],
        "demo --duration": lambda: ["demo", "--duration", draw(BAD_DURATION.filter(
            lambda t: not t.replace(".", "", 1).isdigit()))],
        "demo --fleet": lambda: ["demo", "--fleet", str(_bad_file(draw, root, "fleet"))],
        "dashboards generate --cost-per-kwh": lambda: ["dashboards", "generate", "--out", out, "--cost-per-kwh",
                                                       draw(_floats_outside(0, 1e6))],
        "remediate --policy": lambda: [*_remediate_base(w), "--policy", str(_bad_file(draw, root, "policy"))],
        "devices --timeout": lambda: ["devices", "--backend", "sim", "--state-dir", str(w["sim"]), "--timeout",
                                      draw(_floats_outside(0.01, 600))],
        "any subcommand, unknown flag": lambda: [draw(st.sampled_from(SUBCOMMANDS)), "--no-such-flag-" +
                                                 draw(st.text(alphabet="abc", max_size=3))],
    }
    return choices[draw(st.sampled_from(sorted(choices)))]()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_generated_bad_input_is_one_line_and_exit_2(world: dict[str, Path], data: st.DataObject) -> None:
    argv = data.draw(bad_invocation(world))
    try:
        assert_one_line_exit_2(argv)
    except Accepted:
        files = {a: Path(a).read_bytes()[:300] for a in argv if Path(a).is_file()}
        pytest.fail(f"bad input accepted: npuobs {' '.join(argv)} {files}")
