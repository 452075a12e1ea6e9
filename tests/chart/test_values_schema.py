"""values.schema.json: wrong types and values are refused before anything renders."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import CHART_DIR, SCENARIOS, default_values

BAD_VALUES = {
    "replicaCount is a string": {"replicaCount": "two"},
    "replicaCount is zero": {"replicaCount": 0},
    "failurePolicy Maybe": {"webhook": {"failurePolicy": "Maybe"}},
    "timeoutSeconds above 10": {"webhook": {"timeoutSeconds": 30}},
    "timeoutSeconds zero": {"webhook": {"timeoutSeconds": 0}},
    "timeoutSeconds is a string": {"webhook": {"timeoutSeconds": "5"}},
    "image tag latest": {"image": {"tag": "latest"}},
    "image tag is a number": {"image": {"tag": 1.0}},
    "unknown top-level key": {"replicas": 2},
    "unknown nested key": {"webhook": {"certManager": {"enable": True}}},
    "watchNamespaces is a string": {"watchNamespaces": "team-a"},
    "watchNamespaces bad name": {"watchNamespaces": ["Team_A"]},
    "uniquenessScope global": {"uniquenessScope": "global"},
    "logFormat xml": {"logFormat": "xml"},
    "tokenExpiryWarning mixing days": {"tokenExpiryWarning": "1d12h"},
    "tokenExpiryWarning without unit": {"tokenExpiryWarning": "336"},
    "tokenExpiryWarning a number": {"tokenExpiryWarning": 336},
    "maxConcurrentVerifications zero": {"maxConcurrentVerifications": 0},
    "maxInFlightPerHost a string": {"maxInFlightPerHost": "8"},
    "leaderElection.enabled a string": {"leaderElection": {"enabled": "yes"}},
    "certManager.enabled a string": {"webhook": {"certManager": {"enabled": "true"}}},
    "issuerRef without a name": {"webhook": {"certManager": {"issuerRef": {"kind": "Issuer"}}}},
    "webhook port too big": {"webhook": {"port": 70000}},
    "metrics port a string": {"metrics": {"port": "8080"}},
    "expiryWarningDays a string": {"metrics": {"prometheusRule": {"expiryWarningDays": "14"}}},
    "serviceMonitor labels not strings": {"metrics": {"serviceMonitor": {"labels": {"a": 1}}}},
    "namespaceSelector bad operator": {
        "webhook": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}},
    "resources wrong quantity": {"resources": {"limits": {"memory": "lots"}}},
    "pdb minAvailable a word": {"podDisruptionBudget": {"minAvailable": "one"}},
    "serviceAccount.create a string": {"serviceAccount": {"create": "false"}},
    "imagePullSecrets of strings": {"imagePullSecrets": ["regcred"]},
    "timeout without unit": {"timeout": "10"},
    "timeout a number": {"timeout": 10},
    "extraArgs not a flag": {"extraArgs": ["run"]},
    "extraArgs flag and value apart": {"extraArgs": ["--bind-address", "::"]},
    "extraArgs a number": {"extraArgs": [1]},
    "extraEnv without a name": {"extraEnv": [{"value": "x"}]},
    "extraEnv bad name": {"extraEnv": [{"name": "A B", "value": "x"}]},
    "extraEnv value and valueFrom": {"extraEnv": [{"name": "A", "value": "x",
                                                   "valueFrom": {"fieldRef": {}}}]},
    "extraEnv value a number": {"extraEnv": [{"name": "A", "value": 1}]},
    "extraEnv unknown key": {"extraEnv": [{"name": "A", "val": "x"}]},
    "proxy without scheme": {"proxy": {"httpsProxy": "proxy.example.com:3128"}},
    "proxy unknown key": {"proxy": {"https": "http://p:3128"}},
    "noProxy with spaces": {"proxy": {"noProxy": "a.example.com, b.example.com"}},
    "providerCABundle kind": {"providerCABundle": {"name": "ca", "kind": "Opaque"}},
    "providerCABundle bad name": {"providerCABundle": {"name": "Corp_CA"}},
    "denyCIDRs prefix too long": {"addresses": {"denyCIDRs": ["10.0.0.0/33"]}},
    "denyCIDRs octet too big": {"addresses": {"denyCIDRs": ["10.0.0.256/32"]}},
    "denyCIDRs IPv6 prefix too long": {"addresses": {"denyCIDRs": ["fd00::/129"]}},
    "denyCIDRs two double colons": {"addresses": {"denyCIDRs": ["fd00::1::/64"]}},
    "denyCIDRs a string": {"addresses": {"denyCIDRs": "10.0.0.0/8"}},
    "allowCIDRs a host name": {"addresses": {"allowCIDRs": ["intranet.example.com"]}},
    "allowCIDRs with a space": {"addresses": {"allowCIDRs": ["10.0.0.0/8 "]}},
    "addresses unknown key": {"addresses": {"deny": ["10.0.0.0/8"]}},
    "clientAuth caBundle kind": {"webhook": {"clientAuth": {"caBundle": {"name": "ca",
                                                                          "kind": "Opaque"}}}},
    "clientAuth clientName with a space": {"webhook": {"clientAuth": {"clientName": "kube apiserver"}}},
    "runbookBaseURL not a URL": {"metrics": {"prometheusRule": {"runbookBaseURL": "docs"}}},
    "grafanaDashboard.enabled a string": {"metrics": {"grafanaDashboard": {"enabled": "true"}}},
}


def _chart():
    import helm_python

    return helm_python.Chart.load(str(CHART_DIR))


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects(case):
    import helm_python

    with _chart() as chart:
        with pytest.raises(helm_python.HelmValuesError):
            chart.validate_schema(BAD_VALUES[case])
        # and `helm template` / `helm install` refuse them too
        with pytest.raises(helm_python.HelmValuesError):
            chart.render(BAD_VALUES[case], name="x", namespace="y")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_schema_accepts_the_scenarios(name):
    with _chart() as chart:
        chart.validate_schema(SCENARIOS[name])


@pytest.mark.parametrize("good", [
    {"tokenExpiryWarning": "1h30m"},
    {"tokenExpiryWarning": "1.5h"},
    {"tokenExpiryWarning": "14d"},
    {"podDisruptionBudget": {"minAvailable": "50%"}},
    {"resources": {"requests": {"cpu": 0.5, "memory": "1Gi"}, "limits": {"cpu": "2"}}},
    {"webhook": {"certManager": {"enabled": True, "issuerRef": {
        "name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}},
    {"global": {"imageRegistry": "x"}},
    {"addresses": {"denyCIDRs": ["10.0.0.0/8", "192.168.1.1", "fd00::/8", "64:ff9b::a9fe:a9fe/128",
                                 "::ffff:10.0.0.0/104", "::/0", "1:2:3:4:5:6:7:8/64"],
                   "allowCIDRs": ["0.0.0.0/0"]}},
])
def test_schema_accepts(good):
    with _chart() as chart:
        chart.validate_schema(good)


def test_defaults_are_documented_and_as_specified():
    values = default_values()
    assert values["image"] == {"repository": "ghcr.io/gitprovider-dev/gitprovider-operator",
                               "tag": "", "pullPolicy": "IfNotPresent"}
    assert values["imagePullSecrets"] == []
    assert values["replicaCount"] == 1
    assert values["watchNamespaces"] == []
    assert values["uniquenessScope"] == "namespace"
    assert values["maxConcurrentVerifications"] == 32
    assert values["maxInFlightPerHost"] == 8
    assert values["tokenExpiryWarning"] == "336h"
    assert values["logFormat"] == "json"
    assert values["logLevel"] == "info"
    assert values["timeout"] == "10s"
    assert values["proxy"] == {"httpsProxy": "", "httpProxy": "", "noProxy": ""}
    assert values["providerCABundle"] == {"name": "", "kind": "ConfigMap", "key": "ca.crt"}
    assert values["addresses"] == {"denyCIDRs": [], "allowCIDRs": []}
    assert values["extraEnv"] == [] and values["extraArgs"] == []
    assert values["leaderElection"] == {"enabled": True}
    assert values["webhook"] == {
        "port": 8443, "failurePolicy": "Fail", "timeoutSeconds": 5,
        "namespaceSelector": {}, "objectSelector": {},
        "clientAuth": {"caBundle": {"name": "", "kind": "ConfigMap", "key": "ca.crt"},
                       "clientName": ""},
        "certManager": {"enabled": False, "issuerRef": {}},
    }
    assert values["metrics"] == {
        "port": 8080,
        "serviceMonitor": {"enabled": False, "interval": "30s", "labels": {}},
        "prometheusRule": {"enabled": False, "expiryWarningDays": 14, "labels": {},
                           "runbookBaseURL": ""},
        "grafanaDashboard": {"enabled": False, "namespace": "", "labels": {}, "annotations": {}},
    }
    assert values["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                   "limits": {"memory": "256Mi"}}
    assert values["podDisruptionBudget"] == {"minAvailable": 1}
    for key in ("nodeSelector", "affinity", "podAnnotations", "podLabels"):
        assert values[key] == {}
    assert values["tolerations"] == []
    assert values["priorityClassName"] == ""
    assert values["serviceAccount"] == {"create": True, "name": "", "annotations": {}}
    # every key of values.yaml is declared in the schema, and described by a comment
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert set(values) <= set(schema["properties"])
    text = (CHART_DIR / "values.yaml").read_text().splitlines()
    for i, line in enumerate(text):
        if line and not line.startswith((" ", "#")) and ":" in line:
            above = text[i - 1].strip() if i else ""
            assert above.startswith("#") or line.rstrip().endswith(":"), \
                f"values.yaml: {line!r} has no comment"


def test_schema_is_valid_json_schema():
    import jsonschema

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(default_values(), schema)
    assert yaml.safe_load((CHART_DIR / "values.yaml").read_text()) == default_values()


# Values documented as a whole in the README (their parts are Kubernetes' own shapes).
WHOLE_VALUES = {"resources", "webhook.certManager.issuerRef", "webhook.namespaceSelector",
                "webhook.objectSelector"}


def _schema_values(node: dict, prefix: str = ""):
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        if path == "global":  # Helm's, for subcharts
            continue
        if "properties" in sub and path not in WHOLE_VALUES:
            yield from _schema_values(sub, path + ".")
        else:
            yield path


def _readme_values_table() -> dict[str, str]:
    """value -> default cell of the README's chart values table."""
    from conftest import ROOT

    text = (ROOT / "README.md").read_text()
    start = text.index("Chart values (every one;")
    rows = {}
    for line in text[start:].splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        match = re.match(r"^\| `([^`]+)` \| ([^|]*) \|", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} twice"
            rows[match.group(1)] = match.group(2).strip()
    return rows


def test_readme_values_table_lists_every_value_with_its_default():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    documented = _readme_values_table()
    values = list(_schema_values(schema))
    assert list(documented) == values, "the README's table must list the schema's values in order"
    defaults = default_values()
    for path in values:
        value = defaults
        for part in path.split("."):
            value = value[part]
        if path in WHOLE_VALUES and value:
            continue
        expected = f"`{json.dumps(value)}`" if value == "" else f"`{yaml.safe_dump(value).strip().removesuffix('...').strip()}`"
        assert documented[path] == expected, (path, documented[path], expected)
