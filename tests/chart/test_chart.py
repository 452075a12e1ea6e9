"""The Helm chart: lint, Kubernetes schema validation, and what each value does."""

from __future__ import annotations

import filecmp
import re

import jsonschema
import pytest
import yaml

from conftest import (
    CHART_DIR,
    FOREIGN_CRD_KINDS,
    NAMESPACE,
    RELEASE,
    ROOT,
    SCENARIOS,
    chart_metadata,
    container,
    deployment,
    effective_values,
    find,
    kubernetes_versions,
    min_kube_version,
    one,
    parse_args,
    render,
    render_templates,
    validate_objects,
)

FULLNAME = RELEASE  # the release name contains the chart name
TOP_LEVEL_CRD = ROOT / "crds" / "gitproviderconnections.yaml"
CHART_CRD = CHART_DIR / "crds" / "gitproviderconnections.yaml"


# --- Chart metadata and lint -----------------------------------------------------------------

def test_chart_metadata():
    meta = chart_metadata()
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "gitprovider-operator"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0"
    assert isinstance(meta["appVersion"], str)
    assert meta["kubeVersion"] == ">=1.30.0-0"
    assert min_kube_version() == "1.30"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_helm_lint_strict(name):
    """`helm lint --strict` with each option's values: no errors and no warnings, both with
    Helm's default Kubernetes version and with the oldest our kubeVersion admits."""
    import helm_python

    for kube_version in (None, f"v{min_kube_version()}.0"):
        report = helm_python.lint(str(CHART_DIR), SCENARIOS[name], strict=True,
                                  namespace=NAMESPACE, kube_version=kube_version)
        assert report["total_charts_linted"] == 1
        assert report["errors"] == [], report
        worse_than_info = [m for m in report["messages"] if m["severity"] >= 2]
        assert worse_than_info == [], worse_than_info


def test_helm_lint_catches_bad_values():
    """The lint really runs the schema: a wrong type is an error."""
    import helm_python

    report = helm_python.lint(str(CHART_DIR), {"replicaCount": "two"}, strict=True)
    assert report["errors"], report


# --- Kubernetes schema validation ------------------------------------------------------------

@pytest.mark.parametrize("version", kubernetes_versions())
def test_renders_validate_against_kubernetes(scenario, version):
    """Every rendered object passes kubernetes-validate in strict mode (unknown fields are
    errors), for the current Kubernetes and for the oldest the chart's kubeVersion admits.
    Only cert-manager and Prometheus Operator kinds are skipped (no schema there)."""
    name, values, objects = scenario
    skipped = validate_objects(objects, version)
    assert skipped <= FOREIGN_CRD_KINDS
    merged = effective_values(values)
    expected_skipped = set()
    if merged["webhook"]["certManager"]["enabled"]:
        expected_skipped.add(("cert-manager.io/v1", "Certificate"))
        if not merged["webhook"]["certManager"]["issuerRef"]:
            expected_skipped.add(("cert-manager.io/v1", "Issuer"))
    if merged["metrics"]["serviceMonitor"]["enabled"]:
        expected_skipped.add(("monitoring.coreos.com/v1", "ServiceMonitor"))
    if merged["metrics"]["prometheusRule"]["enabled"]:
        expected_skipped.add(("monitoring.coreos.com/v1", "PrometheusRule"))
    assert skipped == expected_skipped


@pytest.mark.parametrize("version", kubernetes_versions())
def test_crd_validates_against_kubernetes(version):
    crd = yaml.safe_load(CHART_CRD.read_text())
    assert validate_objects([crd], version) == set()


def test_validation_catches_a_wrong_field():
    """The strict validation is not a no-op."""
    from kubernetes_validate import utils

    objects = render({})
    broken = deployment(objects)
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(utils.ValidationError):
        utils.validate(broken, kubernetes_versions()[0], strict=True)


def test_default_render_kinds():
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in render({}))
    assert kinds == sorted([
        ("ServiceAccount", FULLNAME),
        ("ClusterRole", FULLNAME),
        ("ClusterRoleBinding", FULLNAME),
        ("Role", f"{FULLNAME}-leader-election"),
        ("RoleBinding", f"{FULLNAME}-leader-election"),
        ("Role", f"{FULLNAME}-webhook-cert"),
        ("RoleBinding", f"{FULLNAME}-webhook-cert"),
        ("ClusterRole", f"{FULLNAME}-webhook-cert"),
        ("ClusterRoleBinding", f"{FULLNAME}-webhook-cert"),
        ("ValidatingAdmissionPolicy", f"{FULLNAME}-webhook-cert"),
        ("ValidatingAdmissionPolicyBinding", f"{FULLNAME}-webhook-cert"),
        ("Service", f"{FULLNAME}-webhook"),
        ("Service", f"{FULLNAME}-metrics"),
        ("Deployment", FULLNAME),
        ("ValidatingWebhookConfiguration", FULLNAME),
    ])


def test_namespaced_objects_are_in_the_release_namespace(scenario):
    name, values, objects = scenario
    watched = effective_values(values)["watchNamespaces"]
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding",
                           "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
                           "ValidatingAdmissionPolicyBinding"):
            assert ns is None, obj["metadata"]
        elif obj["kind"] in ("Role", "RoleBinding") and ns in watched:
            continue
        elif obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-dashboard"):
            # where the Grafana sidecar looks, when set
            dashboard_ns = effective_values(values)["metrics"]["grafanaDashboard"]["namespace"]
            assert ns == (dashboard_ns or NAMESPACE), obj["metadata"]
        else:
            assert ns == NAMESPACE, obj["metadata"]


def test_release_name_is_used_for_names():
    objects = render({}, name="acme", namespace="ops")
    assert deployment(objects)["metadata"]["name"] == "acme-gitprovider-operator"
    assert deployment(objects)["metadata"]["namespace"] == "ops"
    hook = one(objects, "ValidatingWebhookConfiguration")
    assert hook["webhooks"][0]["clientConfig"]["service"] == {
        "name": "acme-gitprovider-operator-webhook", "namespace": "ops",
        "path": "/validate", "port": 443}
    for long_name in (render({}, name="r" * 53), render({"fullnameOverride": "x" * 63})):
        for svc in find(long_name, "Service"):
            assert len(svc["metadata"]["name"]) <= 63


# --- The Deployment --------------------------------------------------------------------------

def test_image_defaults_to_app_version():
    image = container(render({}))["image"]
    assert image == f"ghcr.io/gitprovider-dev/gitprovider-operator:{chart_metadata()['appVersion']}"
    assert not image.endswith(":latest")
    assert container(render({"image": {"tag": "1.2.3"}}))["image"].endswith(":1.2.3")


def test_image_never_latest(scenario):
    name, values, objects = scenario
    image = container(objects)["image"]
    repo, _, tag = image.rpartition(":")
    assert repo and tag and tag != "latest"


def test_pod_security_restricted(scenario):
    name, values, objects = scenario
    pod = deployment(objects)["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 65532
    assert psc["runAsGroup"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    assert not pod.get("initContainers")
    csc = container(objects)["securityContext"]
    assert csc["runAsNonRoot"] is True
    assert csc["runAsUser"] == 65532
    assert csc["runAsGroup"] == 65532
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc.get("privileged", False) is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    for volume in pod.get("volumes", []):
        assert "hostPath" not in volume


def test_resources_default():
    assert container(render({}))["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert container(render(SCENARIOS["custom"]))["resources"] == \
        SCENARIOS["custom"]["resources"]


def test_env_from_downward_api_and_log_level(scenario):
    name, values, objects = scenario
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["RUST_LOG"]["value"] == effective_values(values)["logLevel"]


def test_probes_and_ports(scenario):
    name, values, objects = scenario
    merged = effective_values(values)
    c = container(objects)
    ports = {p["name"]: p for p in c["ports"]}
    assert set(ports) == {"webhook", "metrics"}
    assert ports["webhook"]["containerPort"] == merged["webhook"]["port"]
    assert ports["metrics"]["containerPort"] == merged["metrics"]["port"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    _, flags = parse_args(c["args"])
    assert flags["--metrics-port"] == [str(merged["metrics"]["port"])]
    assert flags["--webhook-port"] == [str(merged["webhook"]["port"])]


def test_default_ports_are_the_documented_ones():
    ports = {p["name"]: p["containerPort"] for p in container(render({}))["ports"]}
    assert ports == {"webhook": 8443, "metrics": 8080}


def test_default_args():
    assert container(render({}))["args"] == [
        "run",
        "--metrics-port", "8080",
        "--webhook-port", "8443",
        "--uniqueness-scope", "namespace",
        "--max-concurrent-verifications", "32",
        "--max-in-flight-per-host", "8",
        "--token-expiry-warning", "336h",
        "--timeout", "10s",
        "--log-format", "json",
        "--leader-elect=true",
        "--leader-election-namespace", "$(POD_NAMESPACE)",
        "--leader-election-id", FULLNAME,
        "--webhook-cert-secret", f"{FULLNAME}-webhook-tls",
        "--webhook-configuration", FULLNAME,
        "--webhook-service", f"{FULLNAME}-webhook",
    ]


def test_args_follow_values(scenario):
    name, values, objects = scenario
    merged = effective_values(values)
    subcommand, flags = parse_args(container(objects)["args"])
    assert subcommand == "run"
    assert flags["--uniqueness-scope"] == [merged["uniquenessScope"]]
    assert flags["--max-concurrent-verifications"] == [str(merged["maxConcurrentVerifications"])]
    assert flags["--max-in-flight-per-host"] == [str(merged["maxInFlightPerHost"])]
    assert flags["--token-expiry-warning"] == [merged["tokenExpiryWarning"]]
    assert flags["--timeout"] == [merged["timeout"]]
    assert flags["--log-format"] == [merged["logFormat"]]
    assert flags.get("--namespace", []) == merged["watchNamespaces"]
    assert flags["--leader-elect"] == [str(merged["leaderElection"]["enabled"]).lower()]
    assert flags["--leader-election-namespace"] == ["$(POD_NAMESPACE)"]
    assert flags["--leader-election-id"] == [FULLNAME]
    cert_manager = merged["webhook"]["certManager"]["enabled"]
    if cert_manager:
        assert flags["--tls-cert-file"] == ["/tls/tls.crt"]
        assert flags["--tls-key-file"] == ["/tls/tls.key"]
        for flag in ("--webhook-cert-secret", "--webhook-configuration", "--webhook-service"):
            assert flag not in flags
    else:
        assert flags["--webhook-cert-secret"] == [f"{FULLNAME}-webhook-tls"]
        assert flags["--webhook-configuration"] == [FULLNAME]
        assert flags["--webhook-service"] == [f"{FULLNAME}-webhook"]
        assert "--tls-cert-file" not in flags and "--tls-key-file" not in flags


def test_watch_namespaces_args():
    _, flags = parse_args(container(render(SCENARIOS["watch-namespaces"]))["args"])
    assert flags["--namespace"] == ["team-a", "team-b"]


def test_custom_values_reach_the_pod():
    objects = render(SCENARIOS["custom"])
    c = container(objects)
    pod = deployment(objects)["spec"]["template"]
    assert c["image"] == "registry.example.com/gpo:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"] == SCENARIOS["custom"]["tolerations"]
    assert pod["spec"]["priorityClassName"] == "platform-high"
    assert pod["metadata"]["annotations"]["example.com/team"] == "platform"
    assert pod["metadata"]["labels"]["example.com/cost-center"] == "42"
    sa = one(objects, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"example.com/role": "gpo"}


def test_service_account_name_and_no_create():
    objects = render({"serviceAccount": {"create": False, "name": "existing-sa"}})
    assert find(objects, "ServiceAccount") == []
    assert deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"] == "existing-sa"
    for binding in find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "existing-sa", "namespace": NAMESPACE}]
    objects = render({})
    sa = one(objects, "ServiceAccount")
    assert deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"] == \
        sa["metadata"]["name"]


def test_cert_manager_mounts_the_certificate_secret():
    objects = render(SCENARIOS["cert-manager"])
    pod = deployment(objects)["spec"]["template"]["spec"]
    cert = one(objects, "Certificate")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = container(objects)["volumeMounts"]
    assert len(mounts) == 1
    assert mounts[0]["mountPath"] == "/tls"
    assert mounts[0]["readOnly"] is True
    assert volumes[mounts[0]["name"]]["secret"]["secretName"] == cert["spec"]["secretName"]
    # the default mode has no volume: the operator keeps the certificate in memory
    assert "volumes" not in deployment(render({}))["spec"]["template"]["spec"]
    assert "volumeMounts" not in container(render({}))


def test_selector_matches_pod_labels(scenario):
    name, values, objects = scenario
    dep = deployment(objects)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    for svc in find(objects, "Service"):
        assert svc["spec"]["selector"] == selector


# --- High availability -----------------------------------------------------------------------

def test_single_replica_has_no_pdb_or_spread():
    objects = render({})
    assert deployment(objects)["spec"]["replicas"] == 1
    assert find(objects, "PodDisruptionBudget") == []
    pod = deployment(objects)["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in pod
    assert "affinity" not in pod


def test_two_replicas_get_pdb_and_spread():
    objects = render(SCENARIOS["replicas-2"])
    dep = deployment(objects)
    assert dep["spec"]["replicas"] == 2
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    constraints = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
    keys = {c["topologyKey"] for c in constraints}
    assert "kubernetes.io/hostname" in keys
    for c in constraints:
        assert c["maxSkew"] == 1
        assert c["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    _, flags = parse_args(container(objects)["args"])
    assert flags["--leader-elect"] == ["true"]


def test_pdb_min_available_from_values():
    pdb = one(render(SCENARIOS["everything-ha"]), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2


def test_replicas_without_leader_election_are_refused():
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="leaderElection"):
        render({"replicaCount": 2, "leaderElection": {"enabled": False}})


# --- The webhook -----------------------------------------------------------------------------

def test_webhook_wiring(scenario):
    name, values, objects = scenario
    merged = effective_values(values)
    hook_config = one(objects, "ValidatingWebhookConfiguration")
    assert hook_config["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert hook_config["metadata"]["name"] == FULLNAME
    assert len(hook_config["webhooks"]) == 1
    hook = hook_config["webhooks"][0]
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["failurePolicy"] == merged["webhook"]["failurePolicy"]
    assert hook["timeoutSeconds"] == merged["webhook"]["timeoutSeconds"]
    assert hook["rules"] == [{
        "apiGroups": ["gitprovider.dev"],
        "apiVersions": ["v1alpha1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["gitproviderconnections"],
        "scope": "Namespaced",
    }]
    ref = hook["clientConfig"]["service"]
    assert ref["path"] == "/validate"
    assert ref["port"] == 443
    assert ref["namespace"] == NAMESPACE
    assert "url" not in hook["clientConfig"]
    # the Service it names exists, listens on 443 and forwards to the container's webhook port
    svc = one(objects, "Service", ref["name"], NAMESPACE)
    assert len(svc["spec"]["ports"]) == 1
    port = svc["spec"]["ports"][0]
    assert port["port"] == 443
    container_ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert port["targetPort"] in container_ports
    assert container_ports[port["targetPort"]] == merged["webhook"]["port"]


def test_webhook_failure_policy_and_timeout():
    hook = one(render(SCENARIOS["failure-policy-ignore"]),
               "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["failurePolicy"] == "Ignore"
    hook = one(render({}), "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["failurePolicy"] == "Fail"
    assert hook["timeoutSeconds"] == 5


def test_webhook_selectors():
    hook = one(render({}), "ValidatingWebhookConfiguration")["webhooks"][0]
    assert "namespaceSelector" not in hook and "objectSelector" not in hook
    hook = one(render(SCENARIOS["custom"]), "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["namespaceSelector"] == SCENARIOS["custom"]["webhook"]["namespaceSelector"]
    assert hook["objectSelector"] == SCENARIOS["custom"]["webhook"]["objectSelector"]
    # watching a list of namespaces: the webhook only sees those
    hook = one(render(SCENARIOS["watch-namespaces"]),
               "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["namespaceSelector"] == {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]}


def test_self_managed_certificate_wiring():
    objects = render({})
    hook_config = one(objects, "ValidatingWebhookConfiguration")
    assert "annotations" not in hook_config["metadata"]
    assert "caBundle" not in hook_config["webhooks"][0]["clientConfig"]
    assert find(objects, "Certificate") == [] and find(objects, "Issuer") == []
    _, flags = parse_args(container(objects)["args"])
    assert flags["--webhook-configuration"] == [hook_config["metadata"]["name"]]
    assert flags["--webhook-service"] == \
        [hook_config["webhooks"][0]["clientConfig"]["service"]["name"]]


@pytest.mark.parametrize("name", ["cert-manager", "cert-manager-issuer"])
def test_cert_manager_wiring(name):
    objects = render(SCENARIOS[name])
    hook_config = one(objects, "ValidatingWebhookConfiguration")
    cert = one(objects, "Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["metadata"]["namespace"] == NAMESPACE
    assert hook_config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{NAMESPACE}/{cert['metadata']['name']}"
    svc = hook_config["webhooks"][0]["clientConfig"]["service"]["name"]
    assert cert["spec"]["dnsNames"] == [f"{svc}.{NAMESPACE}.svc",
                                        f"{svc}.{NAMESPACE}.svc.cluster.local"]
    assert cert["spec"]["secretName"]
    assert "server auth" in cert["spec"]["usages"]
    issuer_ref = cert["spec"]["issuerRef"]
    if name == "cert-manager":
        issuer = one(objects, "Issuer")
        assert issuer["spec"] == {"selfSigned": {}}
        assert issuer["metadata"]["namespace"] == NAMESPACE
        assert issuer_ref == {"name": issuer["metadata"]["name"], "kind": "Issuer",
                              "group": "cert-manager.io"}
    else:
        assert find(objects, "Issuer") == []
        assert issuer_ref == {"name": "corp-ca", "kind": "ClusterIssuer",
                              "group": "cert-manager.io"}


# --- Metrics ---------------------------------------------------------------------------------

DOCUMENTED_METRICS = {
    "gitprovider_reconciliations_total",
    "gitprovider_reconcile_duration_seconds",
    "gitprovider_verifications_total",
    "gitprovider_webhook_reviews_total",
    "gitprovider_webhook_review_duration_seconds",
    "gitprovider_token_expiry_timestamp_seconds",
    "gitprovider_connection_ready",
    "gitprovider_connection_suspended",
}


def test_metrics_service(scenario):
    name, values, objects = scenario
    merged = effective_values(values)
    svc = one(objects, "Service", f"{FULLNAME}-metrics")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": merged["metrics"]["port"],
                                     "targetPort": "metrics", "protocol": "TCP"}]
    assert one(render({}), "Service", f"{FULLNAME}-metrics")["spec"]["ports"][0]["port"] == 8080


def test_monitoring_is_off_by_default():
    objects = render({})
    assert find(objects, "ServiceMonitor") == [] and find(objects, "PrometheusRule") == []


@pytest.mark.parametrize("name", ["monitoring", "custom"])
def test_service_monitor(name):
    objects = render(SCENARIOS[name])
    merged = effective_values(SCENARIOS[name])
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == NAMESPACE
    for key, value in merged["metrics"]["serviceMonitor"]["labels"].items():
        assert monitor["metadata"]["labels"][key] == value
    selected = [svc for svc in find(objects, "Service")
                if monitor["spec"]["selector"]["matchLabels"].items()
                <= svc["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == [f"{FULLNAME}-metrics"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    endpoint, = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == merged["metrics"]["serviceMonitor"]["interval"]


@pytest.mark.parametrize("name", ["monitoring", "custom"])
def test_prometheus_rule(name):
    merged = effective_values(SCENARIOS[name])
    rule = one(render(SCENARIOS[name]), "PrometheusRule")
    for key, value in merged["metrics"]["prometheusRule"]["labels"].items():
        assert rule["metadata"]["labels"][key] == value
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"GitProviderTokenExpiringSoon", "GitProviderConnectionNotReady"}
    days = merged["metrics"]["prometheusRule"]["expiryWarningDays"]
    expiring = alerts["GitProviderTokenExpiringSoon"]
    assert expiring["expr"] == (
        f"gitprovider_token_expiry_timestamp_seconds - time() < {days}*86400")
    not_ready = alerts["GitProviderConnectionNotReady"]
    # a deliberate suspend pages no one
    assert not_ready["expr"] == ("gitprovider_connection_ready == 0 unless on (namespace, name) "
                                 "gitprovider_connection_suspended == 1")
    assert not_ready["for"] == "15m"
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("warning", "critical")
        metrics = set(re.findall(r"\bgitprovider_[a-z_]+", alert["expr"]))
        assert metrics and metrics <= DOCUMENTED_METRICS
        # Prometheus templates survive Helm's templating
        assert "{{ $labels.namespace }}/{{ $labels.name }}" in alert["annotations"]["summary"]
        assert "{{ $labels.namespace }}/{{ $labels.name }}" in \
            alert["annotations"]["description"]
    assert f"less than {days} days" in expiring["annotations"]["description"]


# --- NOTES -----------------------------------------------------------------------------------

def _notes(values: dict) -> str:
    notes = [text for path, text in render_templates(values).items()
             if path.endswith("NOTES.txt")]
    assert len(notes) == 1
    return notes[0]


def _strict_crd_schema(schema: dict) -> dict:
    """The CRD's OpenAPI schema as JSON Schema, rejecting fields it does not declare (the API
    server would prune them)."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {k: _strict_crd_schema(v) for k, v in schema["properties"].items()}
        schema.setdefault("additionalProperties", False)
    if "items" in schema:
        schema["items"] = _strict_crd_schema(schema["items"])
    return schema


@pytest.mark.parametrize("name", ["default", "watch-namespaces"])
def test_notes_explain_a_first_connection(name):
    notes = _notes(SCENARIOS[name])
    assert "{{" not in notes and "<no value>" not in notes
    # step 1: a Secret with the key "token"
    secret_cmd = re.search(r"kubectl -n (\S+) create secret generic (\S+) --from-file=token=",
                           notes)
    assert secret_cmd, notes
    namespace, secret_name = secret_cmd.groups()
    watched = effective_values(SCENARIOS[name])["watchNamespaces"]
    if watched:
        assert namespace in watched
    # step 2: a GitProviderConnection, valid against our CRD
    example = re.search(r"<<'EOF' \| kubectl apply -f -\n(.*?)\n\s*EOF\n", notes, re.DOTALL)
    assert example, notes
    connection = yaml.safe_load(example.group(1))
    assert connection["apiVersion"] == "gitprovider.dev/v1alpha1"
    assert connection["kind"] == "GitProviderConnection"
    assert connection["metadata"]["namespace"] == namespace
    assert connection["spec"]["tokenSecretRef"] == {"name": secret_name, "key": "token"}
    crd = yaml.safe_load(CHART_CRD.read_text())
    version, = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    jsonschema.validate(connection["spec"], _strict_crd_schema(spec_schema))


def test_notes_mention_the_certificate_mode():
    assert f"Secret {FULLNAME}-webhook-tls" in _notes({})
    assert "cert-manager" in _notes(SCENARIOS["cert-manager"])


# --- The CRD copy ----------------------------------------------------------------------------

def test_chart_crd_is_a_copy_of_the_top_level_crd():
    assert TOP_LEVEL_CRD.is_file(), "crds/gitproviderconnections.yaml is missing"
    assert filecmp.cmp(CHART_CRD, TOP_LEVEL_CRD, shallow=False), (
        "charts/gitprovider-operator/crds/gitproviderconnections.yaml differs from "
        "crds/gitproviderconnections.yaml: cp crds/gitproviderconnections.yaml "
        "charts/gitprovider-operator/crds/ && python3 scripts/render-deploy.py")
    assert sorted(p.name for p in (CHART_DIR / "crds").iterdir()) == \
        ["gitproviderconnections.yaml"]


def test_crd_is_the_documented_resource():
    crd = yaml.safe_load(CHART_CRD.read_text())
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "gitproviderconnections.gitprovider.dev"
    assert crd["spec"]["group"] == "gitprovider.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == "GitProviderConnection"
    assert crd["spec"]["names"]["plural"] == "gitproviderconnections"
    served = [v["name"] for v in crd["spec"]["versions"] if v["served"]]
    assert "v1alpha1" in served
