"""Dockerfile: multi-stage, distroless, non-root; its build command works and builds the
binary the chart runs. Docker is not available here, so the build runs on the host."""

from __future__ import annotations

import json
from pathlib import Path
import os
import re
import shlex
import subprocess

import pytest

from conftest import CHART_DIR, ROOT, container, parse_args, render, SCENARIOS

DOCKERFILE = ROOT / "Dockerfile"
# Where cargo puts it: CARGO_TARGET_DIR when set (CI caches, other checkouts), else ./target.
TARGET_DIR = Path(os.environ["CARGO_TARGET_DIR"]) if os.environ.get("CARGO_TARGET_DIR") else ROOT / "target"
if not TARGET_DIR.is_absolute():
    TARGET_DIR = ROOT / TARGET_DIR
BINARY = TARGET_DIR / "release" / "gitprovider-operator"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, args in _instructions():
        if instruction == "FROM":
            stages.append([])
        assert stages, "instruction before FROM"
        stages[-1].append((instruction, args))
    return stages


def _cargo_command() -> list[str]:
    runs = [args for ins, args in _stages()[0] if ins == "RUN"]
    commands = []
    for run in runs:
        run = re.sub(r"--mount=\S+", "", run)
        for part in re.split(r"&&|;", run):
            words = shlex.split(part)
            if words[:2] == ["cargo", "build"]:
                commands.append(words)
    assert len(commands) == 1, f"expected one cargo build in the builder stage: {commands}"
    return commands[0]


def test_multi_stage_distroless_nonroot():
    builder, final = _stages()
    assert re.fullmatch(r"rust:1-bookworm\s+AS\s+builder", builder[0][1], re.IGNORECASE)
    assert final[0][1] == "gcr.io/distroless/cc-debian12:nonroot"
    users = [args for ins, args in final if ins == "USER"]
    assert users and users[-1].split(":")[0] == "65532"
    entrypoint = [args for ins, args in final if ins == "ENTRYPOINT"]
    cmd = [args for ins, args in final if ins == "CMD"]
    assert [json.loads(e) for e in entrypoint] == [["/gitprovider-operator"]]
    assert [json.loads(c) for c in cmd] == [["run"]]
    # the final image gets the binary only, from the builder
    copies = [args for ins, args in final if ins in ("COPY", "ADD")]
    assert len(copies) == 1 and copies[0].startswith("--from=builder ")
    assert copies[0].split()[-1] == "/gitprovider-operator"
    assert not [ins for ins, _ in final if ins == "RUN"]


def test_build_command():
    assert _cargo_command() == ["cargo", "build", "--release", "--locked", "--bin",
                                "gitprovider-operator"]


def test_dockerignore_keeps_the_cargo_package():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert "target/" in patterns or "target" in patterns
    assert ".git/" in patterns or ".git" in patterns
    for needed in ("src", "Cargo.toml", "Cargo.lock", "crds"):
        assert not any(p.rstrip("/") == needed for p in patterns), needed


@pytest.fixture(scope="module")
def binary():
    """Build the operator exactly as the Dockerfile does (slow the first time)."""
    if os.environ.get("CHART_TESTS_SKIP_CARGO") == "1":
        pytest.skip("CHART_TESTS_SKIP_CARGO=1")
    result = subprocess.run(_cargo_command(), cwd=ROOT, capture_output=True, text=True,
                            timeout=3000)
    assert result.returncode == 0, result.stderr[-5000:]
    assert BINARY.is_file()
    return BINARY


def test_binary_prints_the_chart_crd(binary):
    result = subprocess.run([str(binary), "crd"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (CHART_DIR / "crds" / "gitproviderconnections.yaml").read_text()


def test_binary_accepts_the_chart_flags(binary):
    """Every flag the chart passes to `run` is one the binary knows."""
    result = subprocess.run([str(binary), "run", "--help"], capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0 and "unrecognized subcommand" in result.stderr:
        pytest.skip("the binary has no `run` subcommand yet")
    assert result.returncode == 0, result.stderr
    help_text = result.stdout
    flags = set()
    for name in SCENARIOS:
        _, parsed = parse_args(container(render(SCENARIOS[name]))["args"])
        flags |= set(parsed)
    missing = sorted(f for f in flags if not re.search(re.escape(f) + r"(?![\w-])", help_text))
    assert not missing, f"`run --help` does not list {missing}:\n{help_text}"
