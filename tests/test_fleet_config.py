"""Fleet files: the committed demo fleet is the embedded default, and bad files are named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from npuobs.simulator.fleet import FleetConfig

ROOT = Path(__file__).resolve().parents[1]


def test_demo_fleet_file_matches_the_embedded_default() -> None:
    assert FleetConfig.from_yaml(ROOT / "simulator" / "fleet-demo.yaml") == FleetConfig.default()


@pytest.mark.parametrize(("text", "message"), [
    ("nodes: []", "at least one node"),
    ("nodes: [{name: a, devices: [H9000]}]", "unknown device model 'H9000'"),
    ("nodes: [{name: a, devices: [RNGD]}]\nspeed: 3", "unknown key(s) speed"),
    ("nodes: [{name: a}]", "nodes[0] needs"),
    ("nodes: [{name: a, devices: [RNGD]}]\nload: {profile: lunar}", "unknown load profile"),
    ("nodes: [", "not valid YAML"),
])
def test_bad_fleet_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        FleetConfig.from_yaml(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
