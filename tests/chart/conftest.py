"""Shared helpers for the chart tests: rendering, parsing, schema validation, RBAC evaluation.

Everything runs offline: helm-python-sdk renders and lints the chart with Helm v4's Go SDK
(shipped as a shared library in the wheel), kubernetes-validate ships the Kubernetes schemas.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "gitprovider-operator"
RELEASE = "gitprovider-operator"
NAMESPACE = "gitprovider-system"

# Kinds defined by CRDs of other projects, for which kubernetes-validate has no schema.
FOREIGN_CRD_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

# Every option the chart has, one render each (plus the defaults).
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "cert-manager": {"webhook": {"certManager": {"enabled": True}}},
    "cert-manager-issuer": {
        "webhook": {"certManager": {"enabled": True,
                                    "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}
    },
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "replicas-2": {"replicaCount": 2},
    "monitoring": {"metrics": {"serviceMonitor": {"enabled": True},
                               "prometheusRule": {"enabled": True}}},
    "failure-policy-ignore": {"webhook": {"failurePolicy": "Ignore"}},
    "leader-election-off": {"leaderElection": {"enabled": False}},
    "custom": {
        "image": {"repository": "registry.example.com/gpo", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "uniquenessScope": "cluster",
        "maxConcurrentVerifications": 4,
        "maxInFlightPerHost": 2,
        "tokenExpiryWarning": "72h",
        "logFormat": "text",
        "logLevel": "debug,kube=info",
        "metrics": {"port": 9090, "serviceMonitor": {"enabled": True, "interval": "1m",
                                                     "labels": {"release": "prom"}},
                    "prometheusRule": {"enabled": True, "expiryWarningDays": 7,
                                       "labels": {"release": "prom"}}},
        "webhook": {"port": 9443, "timeoutSeconds": 10,
                    "namespaceSelector": {"matchLabels": {"gitprovider.dev/enabled": "true"}},
                    "objectSelector": {"matchExpressions": [
                        {"key": "skip-validation", "operator": "DoesNotExist"}]}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"cpu": "1", "memory": "512Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops",
                         "effect": "NoSchedule"}],
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"example.com/cost-center": "42"},
        "priorityClassName": "platform-high",
        "serviceAccount": {"annotations": {"example.com/role": "gpo"}},
    },
    "knobs": {
        "timeout": "30s",
        "proxy": {"httpsProxy": "http://proxy.example.com:3128",
                  "httpProxy": "http://proxy.example.com:3128",
                  "noProxy": ".example.com,10.0.0.0/8"},
        "providerCABundle": {"name": "corp-ca"},
        "extraEnv": [{"name": "TZ", "value": "UTC"},
                     {"name": "PROXY_PASSWORD",
                      "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "password"}}}],
        "extraArgs": ["--bind-address=::"],
        "metrics": {"prometheusRule": {"enabled": True,
                                       "runbookBaseURL": "https://wiki.example.com/gpo"},
                    "grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                         "labels": {"team": "platform"},
                                         "annotations": {"grafana_folder": "Platform"}}},
    },
    "provider-ca-secret": {
        "providerCABundle": {"name": "corp-ca", "kind": "Secret", "key": "bundle.pem"},
        "webhook": {"certManager": {"enabled": True}},
    },
    "addresses-and-client-auth": {
        "addresses": {"denyCIDRs": ["10.0.0.0/8", "fd00::/8"], "allowCIDRs": ["0.0.0.0/0", "::/0"]},
        "webhook": {"clientAuth": {"caBundle": {"name": "apiserver-ca", "kind": "Secret",
                                                "key": "client-ca.pem"},
                                   "clientName": "kube-apiserver-webhook-client"}},
    },
    "everything-ha": {
        "replicaCount": 3,
        "watchNamespaces": ["team-a", "gitprovider-system"],
        "webhook": {"certManager": {"enabled": True}, "failurePolicy": "Ignore"},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "podDisruptionBudget": {"minAvailable": 2},
    },
}


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def default_values() -> dict:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def effective_values(overrides: dict) -> dict:
    return deep_merge(default_values(), overrides)


def chart_metadata() -> dict:
    return yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())


@functools.lru_cache(maxsize=None)
def _render_cached(values_json: str, name: str, namespace: str) -> dict[str, str]:
    import helm_python

    with helm_python.Chart.load(str(CHART_DIR)) as chart:
        return chart.render(json.loads(values_json), name=name, namespace=namespace,
                            is_install=True)


def render_templates(values: dict | None = None, *, name: str = RELEASE,
                     namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, like `helm template` (NOTES.txt included)."""
    return dict(_render_cached(json.dumps(values or {}, sort_keys=True), name, namespace))


def render(values: dict | None = None, **kwargs) -> list[dict]:
    """The rendered Kubernetes objects (NOTES.txt excluded)."""
    objects = []
    for path, text in sorted(render_templates(values, **kwargs).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def find(objects: list[dict], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[dict]:
    return [
        o for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objects: list[dict], kind: str, name: str | None = None,
        namespace: str | None = None) -> dict:
    found = find(objects, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def deployment(objects: list[dict]) -> dict:
    return one(objects, "Deployment")


def container(objects: list[dict]) -> dict:
    containers = deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def parse_args(args: list[str]) -> tuple[str, dict[str, list[str]]]:
    """Split `run --flag value --flag=value ...` into the subcommand and flag -> values."""
    assert args, "no args"
    subcommand, rest = args[0], args[1:]
    flags: dict[str, list[str]] = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        assert token.startswith("--"), f"expected a flag at {rest[i:]}"
        if "=" in token:
            flag, value = token.split("=", 1)
            i += 1
        else:
            assert i + 1 < len(rest) and not rest[i + 1].startswith("--"), (
                f"flag {token} has no value")
            flag, value = token, rest[i + 1]
            i += 2
        flags.setdefault(flag, []).append(value)
    return subcommand, flags


def min_kube_version() -> str:
    """The oldest Kubernetes minor version Chart.yaml's kubeVersion admits, as "1.30"."""
    constraint = chart_metadata()["kubeVersion"]
    match = re.fullmatch(r">=\s*v?(\d+)\.(\d+)\.\d+(-0)?", constraint)
    assert match, f"unexpected kubeVersion constraint {constraint!r}"
    return f"{match.group(1)}.{match.group(2)}"


def kubernetes_versions() -> list[str]:
    """The current Kubernetes version kubernetes-validate knows, and the oldest we support."""
    from kubernetes_validate import utils

    latest = utils.major_minor(utils.latest_version())
    oldest = min_kube_version()
    known = {utils.major_minor(v) for v in utils.all_versions()}
    assert oldest in known, f"kubernetes-validate has no schemas for {oldest}"
    return [latest, oldest] if latest != oldest else [latest]


def validate_objects(objects: list[dict], version: str) -> set[tuple[str, str]]:
    """Validate every object strictly; return the (apiVersion, kind) pairs that were skipped
    because they are foreign CRD kinds. Anything else without a schema is a failure."""
    from kubernetes_validate import utils

    skipped = set()
    errors = []
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in FOREIGN_CRD_KINDS:
            skipped.add(key)
            continue
        try:
            utils.validate(obj, version, strict=True)
        except utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")
        except utils.SchemaNotFoundError as e:
            errors.append(e.message)
    assert not errors, f"invalid for Kubernetes {version}:\n" + "\n".join(errors)
    return skipped


# --- RBAC ------------------------------------------------------------------------------------

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*",
               "escalate", "bind", "impersonate"}


def service_account(objects: list[dict]) -> tuple[str, str]:
    spec = deployment(objects)["spec"]["template"]["spec"]
    return spec["serviceAccountName"], deployment(objects)["metadata"]["namespace"]


def grants(objects: list[dict]) -> list[dict]:
    """Every rule granted to the operator's ServiceAccount, with where it applies:
    {"scope": "cluster" | <namespace>, "role": "<Kind>/<name>", "rule": {...}}."""
    sa_name, sa_ns = service_account(objects)
    roles = {}
    for obj in objects:
        if obj["kind"] in ("Role", "ClusterRole"):
            roles[(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
    out = []
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa_name
                   and s.get("namespace") == sa_ns for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        bns = binding["metadata"].get("namespace")
        role_ns = bns if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        assert role is not None, f"{binding['kind']} {binding['metadata']['name']} refers to " \
                                 f"a missing {ref['kind']} {ref['name']}"
        scope = "cluster" if binding["kind"] == "ClusterRoleBinding" else bns
        for rule in role.get("rules", []):
            out.append({"scope": scope, "role": f"{role['kind']}/{role['metadata']['name']}",
                        "rule": rule})
    return out


def can(objects: list[dict], verb: str, group: str, resource: str,
        namespace: str | None = None, name: str | None = None) -> bool:
    """Whether the operator may do `verb` on the resource (namespace None = cluster-wide)."""
    for g in grants(objects):
        rule = g["rule"]
        if g["scope"] != "cluster" and g["scope"] != namespace:
            continue
        if verb not in rule.get("verbs", []) and "*" not in rule.get("verbs", []):
            continue
        if group not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
            continue
        if resource not in rule.get("resources", []) and "*" not in rule.get("resources", []):
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue
        return True
    return False


@pytest.fixture(params=sorted(SCENARIOS), ids=sorted(SCENARIOS))
def scenario(request):
    """(name, values, rendered objects) for each option."""
    name = request.param
    return name, SCENARIOS[name], render(SCENARIOS[name])


def load_script(name: str):
    """Import a script from scripts/ whose file name has dashes."""
    path = ROOT / "scripts" / name
    spec = importlib.util.spec_from_file_location(name.replace("-", "_").removesuffix(".py"),
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
