"""The chart's knobs for the operator process: timeout, proxy, a CA bundle for every provider,
extra environment and arguments; the Grafana dashboard; the alerts' runbooks."""

from __future__ import annotations

import json
import re

import pytest

from conftest import (
    CHART_DIR,
    NAMESPACE,
    ROOT,
    SCENARIOS,
    chart_metadata,
    container,
    deployment,
    find,
    one,
    parse_args,
    render,
)

CA_DIR = "/etc/gitprovider-operator/provider-ca"
DASHBOARD = CHART_DIR / "dashboards" / "gitprovider-operator.json"


def _env(objects: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in container(objects)["env"]}


def test_no_proxy_no_extra_env_by_default():
    assert list(_env(render({}))) == ["POD_NAMESPACE", "POD_NAME", "RUST_LOG"]


def test_proxy_and_extra_env_reach_the_container():
    env = container(render(SCENARIOS["knobs"]))["env"]
    assert [e["name"] for e in env] == ["POD_NAMESPACE", "POD_NAME", "RUST_LOG", "HTTPS_PROXY",
                                        "HTTP_PROXY", "NO_PROXY", "TZ", "PROXY_PASSWORD"]
    by_name = {e["name"]: e for e in env}
    assert by_name["HTTPS_PROXY"] == {"name": "HTTPS_PROXY",
                                      "value": "http://proxy.example.com:3128"}
    assert by_name["NO_PROXY"]["value"] == ".example.com,10.0.0.0/8"
    assert by_name["PROXY_PASSWORD"] == SCENARIOS["knobs"]["extraEnv"][1]
    only_https = _env(render({"proxy": {"httpsProxy": "http://p:3128"}}))
    assert "HTTPS_PROXY" in only_https and "HTTP_PROXY" not in only_https


def test_a_proxy_variable_may_come_from_extra_env_when_proxy_leaves_it_empty():
    """A proxy URL with a password belongs in a Secret: valueFrom through extraEnv."""
    from_secret = {"name": "HTTPS_PROXY",
                   "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "url"}}}
    env = _env(render({"extraEnv": [from_secret]}))
    assert env["HTTPS_PROXY"] == from_secret


@pytest.mark.parametrize("name,values", [
    ("POD_NAMESPACE", {}),
    ("POD_NAME", {}),
    ("RUST_LOG", {}),
    ("https_proxy", {"proxy": {"httpsProxy": "http://p:3128"}}),
    ("NO_PROXY", {"proxy": {"noProxy": "localhost"}}),
])
def test_extra_env_may_not_override_the_chart(name, values):
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=f"extraEnv: {name} is set by the chart"):
        render({**values, "extraEnv": [{"name": name, "value": "x"}]})


def test_timeout_and_extra_args():
    args = container(render(SCENARIOS["knobs"]))["args"]
    _, flags = parse_args(args)
    assert flags["--timeout"] == ["30s"]
    assert args[-1] == "--bind-address=::"  # after the chart's own


def _chart_flags() -> set[str]:
    flags: set[str] = set()
    for values in SCENARIOS.values():
        own = {k: v for k, v in values.items() if k != "extraArgs"}
        flags |= set(parse_args(container(render(own))["args"])[1])
    return flags


def test_every_chart_flag_is_covered():
    assert {"--timeout", "--ca-file", "--namespace", "--tls-cert-file",
            "--webhook-cert-secret", "--deny-cidr", "--allow-cidr", "--webhook-client-ca",
            "--webhook-client-name"} <= _chart_flags()


@pytest.mark.parametrize("flag", sorted(_chart_flags()))
def test_extra_args_may_not_repeat_a_flag_the_chart_sets(flag):
    """Every flag any scenario renders is refused in extraArgs, with and without a value."""
    import helm_python

    for arg in (flag, f"{flag}=x"):
        with pytest.raises(helm_python.HelmRenderError,
                           match=f"extraArgs: {flag} is set by the chart"):
            render({"extraArgs": [arg]})


@pytest.mark.parametrize("name", ["knobs", "provider-ca-secret"])
def test_provider_ca_bundle_is_mounted_and_passed(name):
    values = SCENARIOS[name]["providerCABundle"]
    objects = render(SCENARIOS[name])
    c = container(objects)
    _, flags = parse_args(c["args"])
    assert flags["--ca-file"] == [f"{CA_DIR}/ca.crt"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["provider-ca"] == {"name": "provider-ca", "mountPath": CA_DIR,
                                     "readOnly": True}
    volumes = {v["name"]: v for v in deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    items = [{"key": values.get("key", "ca.crt"), "path": "ca.crt"}]
    if values.get("kind") == "Secret":
        assert volumes["provider-ca"]["secret"] == {"secretName": values["name"], "items": items,
                                                    "defaultMode": 0o444}
        # beside cert-manager's certificate
        assert "webhook-tls" in volumes and "webhook-tls" in mounts
    else:
        assert volumes["provider-ca"]["configMap"] == {"name": values["name"], "items": items,
                                                       "defaultMode": 0o444}


def test_address_ranges_are_repeated_flags():
    values = SCENARIOS["addresses-and-client-auth"]["addresses"]
    _, flags = parse_args(container(render(SCENARIOS["addresses-and-client-auth"]))["args"])
    assert flags["--deny-cidr"] == values["denyCIDRs"]
    assert flags["--allow-cidr"] == values["allowCIDRs"]
    _, default = parse_args(container(render({}))["args"])
    assert "--deny-cidr" not in default and "--allow-cidr" not in default


def test_webhook_client_ca_is_mounted_and_passed():
    values = SCENARIOS["addresses-and-client-auth"]["webhook"]["clientAuth"]
    objects = render(SCENARIOS["addresses-and-client-auth"])
    c = container(objects)
    _, flags = parse_args(c["args"])
    client_ca_dir = "/etc/gitprovider-operator/webhook-client-ca"
    assert flags["--webhook-client-ca"] == [f"{client_ca_dir}/ca.crt"]
    assert flags["--webhook-client-name"] == [values["clientName"]]
    assert c["volumeMounts"] == [{"name": "webhook-client-ca", "mountPath": client_ca_dir,
                                  "readOnly": True}]
    volumes = deployment(objects)["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "webhook-client-ca", "secret": {
        "secretName": "apiserver-ca", "items": [{"key": "client-ca.pem", "path": "ca.crt"}],
        "defaultMode": 0o444}}]
    # a ConfigMap, without a name to require
    c = container(render({"webhook": {"clientAuth": {"caBundle": {"name": "apiserver-ca"}}}}))
    _, flags = parse_args(c["args"])
    assert "--webhook-client-name" not in flags and "--webhook-client-ca" in flags
    _, default = parse_args(container(render({}))["args"])
    assert "--webhook-client-ca" not in default


def test_webhook_client_name_needs_the_ca():
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="clientName needs webhook.clientAuth.caBundle.name"):
        render({"webhook": {"clientAuth": {"clientName": "kube-apiserver"}}})


def test_no_provider_ca_bundle_by_default():
    c = container(render({}))
    assert "--ca-file" not in c["args"] and "volumeMounts" not in c
    assert "volumes" not in deployment(render({}))["spec"]["template"]["spec"]


# --- Grafana dashboard -----------------------------------------------------------------------

def test_dashboard_is_off_by_default():
    assert find(render({}), "ConfigMap") == []


def test_dashboard_config_map_for_the_sidecar():
    cm = one(render(SCENARIOS["knobs"]), "ConfigMap")
    assert cm["metadata"]["name"] == "gitprovider-operator-dashboard"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["team"] == "platform"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    assert list(cm["data"]) == ["gitprovider-operator.json"]
    assert json.loads(cm["data"]["gitprovider-operator.json"]) == json.loads(DASHBOARD.read_text())
    default_ns = one(render({"metrics": {"grafanaDashboard": {"enabled": True}}}), "ConfigMap")
    assert default_ns["metadata"]["namespace"] == NAMESPACE


def _registered_metrics() -> set[str]:
    """Metric names as exposed, from src/metrics.rs: the registered name, counters with _total."""
    source = (ROOT / "src" / "metrics.rs").read_text()
    kinds = dict(re.findall(r"^\s+(\w+): (Family<\w+, \w+>|Histogram),$", source, re.MULTILINE))
    # Each metric is a field made by `register.metric("name", "help", ...)`.
    registered = re.findall(r'^\s+(\w+): register\.metric\(\s*"(\w+)",', source, re.MULTILINE)
    assert len(registered) >= 9, registered
    return {f"gitprovider_{name}" + ("_total" if "Counter" in kinds[var] else "")
            for var, name in registered}


def test_dashboard_queries_only_exposed_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "gitprovider-operator"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    readme = (ROOT / "README.md").read_text()
    exposed = _registered_metrics()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for metric in re.findall(r"\bgitprovider_[a-z_]+", target["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                assert base in exposed, (panel["title"], metric, exposed)
                assert f"`{base}`" in readme, f"{base} is not in the README's metrics table"
                used.add(base)
    # every metric the operator exposes is on the dashboard
    assert used == exposed, exposed - used


# --- Alerts ----------------------------------------------------------------------------------

def _alerts(values: dict) -> dict[str, dict]:
    rule = one(render(values), "PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def test_runbook_urls_point_at_the_docs_of_this_version():
    alerts = _alerts({"metrics": {"prometheusRule": {"enabled": True}}})
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^## (.+)$", runbooks, re.MULTILINE)}
    base = (f"{chart_metadata()['home']}/blob/v{chart_metadata()['appVersion']}"
            "/docs/runbooks.md")
    for name, alert in alerts.items():
        url = alert["annotations"]["runbook_url"]
        assert url == f"{base}#{name.lower()}"
        assert name.lower() in anchors, f"docs/runbooks.md has no section {name}"
    custom = _alerts(SCENARIOS["knobs"])
    assert custom["GitProviderConnectionNotReady"]["annotations"]["runbook_url"] == \
        "https://wiki.example.com/gpo#gitproviderconnectionnotready"
