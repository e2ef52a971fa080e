"""The Dockerfile, checked the way hadolint would for the rules that matter here (hadolint itself
does not install from the registries this project reaches, and no Docker engine runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
# python:3.11.11-slim-bookworm: an exact patch release (and suite), or any image pinned by digest.
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?|@sha256:[0-9a-f]{64})$")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            keyword, _, args = pending.partition(" ")
            out.append((keyword.upper(), args.strip()))
            pending = ""
    return out


INSTRUCTIONS = _instructions()


def _all(keyword: str) -> list[str]:
    return [args for kw, args in INSTRUCTIONS if kw == keyword]


def _exec_form(args: str) -> list[str]:
    """JSON-array (exec) form, or fail: shell form wraps the process in /bin/sh, which eats signals."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), args
    return value


def _base_images() -> list[str]:
    defaults = dict(a.split("=", 1) for a in _all("ARG") if "=" in a)
    images = []
    for args in _all("FROM"):
        image = args.split()[0]
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image))
    return images


def test_base_images_are_pinned_and_multi_stage() -> None:
    images = _base_images()
    assert len(images) >= 2, "multi-stage: build tools stay out of the runtime image"
    for image in images:
        assert PINNED.match(image) and ":latest" not in image, f"{image} is not pinned"
        assert "slim" in image or "@sha256:" in image, f"{image}: use a slim base"
    assert [a for a in _all("COPY") if a.startswith("--from=build ")], "the runtime stage copies the build"


def test_runs_as_a_numeric_non_root_user() -> None:
    last_stage = INSTRUCTIONS[max(i for i, (kw, _) in enumerate(INSTRUCTIONS) if kw == "FROM"):]
    users = [args for kw, args in last_stage if kw == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric UID, so Kubernetes runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) != 0


def test_healthcheck_asks_healthz_without_a_shell() -> None:
    [healthcheck] = _all("HEALTHCHECK")
    command = _exec_form(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python" and "/healthz" in " ".join(command)
    [expose] = _all("EXPOSE")
    assert f":{expose}/healthz" in " ".join(command)


@pytest.mark.parametrize("keyword", ["ENTRYPOINT", "CMD"])
def test_entrypoint_and_cmd_use_exec_form(keyword: str) -> None:
    [args] = _all(keyword)
    _exec_form(args)


def test_build_context_holds_only_what_is_copied() -> None:
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore is an allow-list"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = {src for args in _all("COPY") if not args.startswith("--from=") for src in args.split()[:-1]}
    assert sources == allowed
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: missing from the repository"
