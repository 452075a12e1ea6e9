"""deploy/: the plain manifests for `kubectl apply -k deploy/` match a fresh chart render."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import NAMESPACE, ROOT, load_script, validate_objects, kubernetes_versions

DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def render_deploy():
    return load_script("render-deploy.py")


def test_deploy_matches_a_fresh_render(render_deploy):
    expected = render_deploy.generate()
    actual = render_deploy.existing()
    delta = render_deploy.diff(expected, actual)
    assert not delta, ("deploy/ is out of date; run python3 scripts/render-deploy.py\n"
                       + delta[:5000])


def test_generator_check_mode(render_deploy):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "render-deploy.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generator_detects_drift(render_deploy, tmp_path):
    files = render_deploy.generate()
    render_deploy.write(files, tmp_path)
    assert render_deploy.diff(files, render_deploy.existing(tmp_path)) == ""
    (tmp_path / "deployment.yaml").write_text(files["deployment.yaml"].replace("65532", "0"))
    (tmp_path / "stale.yaml").write_text("kind: ConfigMap\n")
    delta = render_deploy.diff(files, render_deploy.existing(tmp_path))
    assert "deploy/deployment.yaml" in delta and "deploy/stale.yaml" in delta
    render_deploy.write(files, tmp_path)
    assert render_deploy.diff(files, render_deploy.existing(tmp_path)) == ""


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    manifests = sorted(str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*.yaml")
                       if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == manifests
    assert kustomization["resources"][0] == "namespace.yaml"


def test_deploy_crd_is_the_top_level_crd():
    assert filecmp.cmp(DEPLOY / "crds" / "gitproviderconnections.yaml",
                       ROOT / "crds" / "gitproviderconnections.yaml", shallow=False)


def _deploy_objects():
    objects = []
    for p in sorted(DEPLOY.rglob("*.yaml")):
        if p.name == "kustomization.yaml":
            continue
        objects += [d for d in yaml.safe_load_all(p.read_text()) if d]
    return objects


def test_deploy_has_no_helm_leftovers():
    text = "".join(p.read_text() for p in DEPLOY.rglob("*.yaml"))
    assert "helm.sh/chart" not in text
    assert "managed-by: Helm" not in text
    assert "{{" not in text
    kinds = {(o["kind"], o["metadata"]["name"]) for o in _deploy_objects()}
    assert ("Namespace", NAMESPACE) in kinds
    assert ("CustomResourceDefinition", "gitproviderconnections.gitprovider.dev") in kinds
    assert ("Deployment", "gitprovider-operator") in kinds
    namespace = [o for o in _deploy_objects() if o["kind"] == "Namespace"][0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("version", kubernetes_versions())
def test_deploy_validates(version):
    assert validate_objects(_deploy_objects(), version) == set()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds():
    """What `kubectl apply -k deploy/` would send (built offline)."""
    result = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(objects) == len(_deploy_objects())
    for obj in objects:
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole",
                               "ClusterRoleBinding", "ValidatingWebhookConfiguration"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
    assert validate_objects(objects, kubernetes_versions()[0]) == set()
