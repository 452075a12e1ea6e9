"""The release workflow (.github/workflows/release.yml) and scripts/release-metadata.

The workflow cannot run here (no Docker engine, no registry): what can be checked is its
structure, that it builds the Dockerfile for two platforms and pushes to the repository the
chart names, that the names it uses come from the repository, and that its chart packaging
step works as written with the real helm (scripts/control-plane helm)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import CHART_DIR, ROOT, chart_metadata, default_values

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
METADATA = ROOT / "scripts" / "release-metadata"


def _workflow() -> dict:
    # PyYAML reads the key `on` as the boolean True (YAML 1.1).
    return yaml.safe_load(WORKFLOW.read_text())


def _steps() -> dict[str, dict]:
    steps = _workflow()["jobs"]["release"]["steps"]
    names = [s["name"] for s in steps]
    assert len(names) == len(set(names)), names
    return {s["name"]: s for s in steps}


def _metadata(tag: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(METADATA), tag], capture_output=True, text=True, timeout=30)


def _release_tag() -> str:
    return f"v{chart_metadata()['version']}"


def test_triggered_by_version_tags_only():
    workflow = _workflow()
    trigger = workflow[True]
    assert list(trigger) == ["push"]
    assert trigger["push"] == {"tags": ["v*.*.*"]}
    assert workflow["permissions"] == {"contents": "read"}
    job = workflow["jobs"]["release"]
    assert job["permissions"] == {"contents": "write", "packages": "write"}


def test_metadata_comes_from_the_repository():
    result = _metadata(_release_tag())
    assert result.returncode == 0, result.stderr
    out = dict(line.split("=", 1) for line in result.stdout.splitlines())
    image = default_values()["image"]["repository"]
    assert out == {
        "version": chart_metadata()["version"],
        "image": image,
        "chart_oci": "oci://" + image.rsplit("/", 1)[0] + "/charts",
    }
    # the image the chart installs by default is the one the workflow pushes
    assert chart_metadata()["appVersion"] == out["version"]


@pytest.mark.parametrize("tag", ["v9.9.9", "0.1.0", "v0.1", "latest"])
def test_metadata_refuses_a_tag_that_does_not_match(tag):
    result = _metadata(tag)
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr.startswith("error: tag "), result.stderr


def test_metadata_usage():
    result = subprocess.run([str(METADATA)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_the_image_is_built_from_the_dockerfile_for_two_platforms():
    steps = _steps()
    assert steps["Release metadata"]["run"].strip() == \
        'scripts/release-metadata "${GITHUB_REF_NAME}" >> "$GITHUB_OUTPUT"'
    assert steps["Release metadata"]["id"] == "meta"
    build = steps["Build and push the image"]
    assert build["uses"].startswith("docker/build-push-action@")
    w = build["with"]
    assert w["context"] == "."
    assert w["file"] == "Dockerfile" and (ROOT / w["file"]).is_file()
    assert w["platforms"].split(",") == ["linux/amd64", "linux/arm64"]
    assert w["push"] is True
    assert w["tags"] == "${{ steps.meta.outputs.image }}:${{ steps.meta.outputs.version }}"
    assert w["sbom"] is True
    assert "org.opencontainers.image.licenses=Apache-2.0" in w["labels"]
    # QEMU and buildx come before the build, the registry login too
    order = list(steps)
    for before in ("Set up QEMU (arm64 build stage)", "Set up Docker Buildx",
                   "Log in to the registry"):
        assert order.index(before) < order.index("Build and push the image"), before
    assert steps["Log in to the registry"]["with"]["registry"] == \
        default_values()["image"]["repository"].split("/")[0]


def test_the_dockerfile_keeps_one_target_cache_per_platform():
    """Two platforms built at once must not share target/ (one could copy the other's binary)."""
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG TARGETPLATFORM" in text
    assert "--mount=type=cache,target=/src/target,id=gpo-target-${TARGETPLATFORM}" in text


def test_the_chart_is_pushed_where_the_metadata_says():
    steps = _steps()
    push = steps["Push the chart"]
    assert push["env"]["CHART_OCI"] == "${{ steps.meta.outputs.chart_oci }}"
    assert 'helm push "dist/gitprovider-operator-${VERSION}.tgz" "$CHART_OCI"' in push["run"]
    assert "--password-stdin" in push["run"]
    assert steps["Install Helm"]["with"]["version"] == "v4.3.2"
    release = steps["GitHub release"]["run"]
    assert "dist/SHA256SUMS" in release and "dist/*.tgz" in release


@pytest.fixture(scope="module")
def helm() -> str:
    """The real helm: $HELM, else scripts/control-plane's cached build (built if missing)."""
    result = subprocess.run([str(ROOT / "scripts" / "control-plane"), "helm"],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    path = result.stdout.strip().splitlines()[-1]
    assert os.access(path, os.X_OK), path
    return path


def test_the_packaging_step_works_with_the_real_helm(helm, tmp_path):
    """The step's own shell text, run with the real helm: a chart archive of the tag's version
    with its schema and CRD, the CRD beside it, and checksums that verify."""
    step = _steps()["Package the chart"]
    assert step["env"]["DIST"] == "dist"
    version = chart_metadata()["version"]
    dist = tmp_path / "dist"
    env = dict(os.environ,
               VERSION=version,
               DIST=str(dist),
               PATH=f"{Path(helm).parent}{os.pathsep}{os.environ['PATH']}",
               HELM_CACHE_HOME=str(tmp_path / "cache"),
               HELM_CONFIG_HOME=str(tmp_path / "config"),
               HELM_DATA_HOME=str(tmp_path / "data"))
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", step["run"]], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    archive = dist / f"gitprovider-operator-{version}.tgz"
    assert sorted(p.name for p in dist.iterdir()) == sorted(
        [archive.name, "gitproviderconnections.yaml", "SHA256SUMS"])
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        packaged = yaml.safe_load(tar.extractfile("gitprovider-operator/Chart.yaml").read())
    for needed in ("Chart.yaml", "values.yaml", "values.schema.json",
                   "crds/gitproviderconnections.yaml", "templates/deployment.yaml",
                   "dashboards/gitprovider-operator.json"):
        assert f"gitprovider-operator/{needed}" in names, needed
    assert packaged["version"] == version and packaged["appVersion"] == version
    assert packaged["home"] and packaged["sources"] and packaged["maintainers"]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (dist / "gitproviderconnections.yaml").read_text() == \
        (CHART_DIR / "crds" / "gitproviderconnections.yaml").read_text()


def test_license():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    cargo = (ROOT / "Cargo.toml").read_text()
    assert '\nlicense = "Apache-2.0"\n' in cargo
    meta = chart_metadata()
    assert meta["home"] == "https://github.com/gitprovider-dev/gitprovider-operator"
    assert meta["sources"] == [meta["home"]]
    assert all(m["name"] for m in meta["maintainers"])
