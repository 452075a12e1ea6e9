"""RBAC: least privilege for every option."""

from __future__ import annotations

import pytest

from conftest import (
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    WRITE_VERBS,
    can,
    effective_values,
    find,
    grants,
    one,
    render,
)

FULLNAME = RELEASE
OWN_SECRET = f"{FULLNAME}-webhook-tls"


def test_no_wildcards_and_no_delete(scenario):
    name, values, objects = scenario
    for g in grants(objects):
        rule = g["rule"]
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), g
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} \
            & set(rule["verbs"]), g
        assert "nonResourceURLs" not in rule, g


def test_every_role_is_bound_and_every_binding_has_a_role(scenario):
    name, values, objects = scenario
    used = {g["role"] for g in grants(objects)}  # grants() asserts each roleRef exists
    roles = {f"{o['kind']}/{o['metadata']['name']}"
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    assert roles == used


def test_secret_writes_only_for_the_own_webhook_certificate(scenario):
    """No write verb on Secrets, except the operator's own webhook certificate Secret, in the
    release namespace, in self-managed certificate mode."""
    name, values, objects = scenario
    self_managed = not effective_values(values)["webhook"]["certManager"]["enabled"]
    secret_writes = [g for g in grants(objects)
                     if "secrets" in g["rule"]["resources"]
                     and WRITE_VERBS & set(g["rule"]["verbs"])]
    if not self_managed:
        assert secret_writes == []
        return
    assert all(g["scope"] == NAMESPACE and g["role"] == f"Role/{FULLNAME}-webhook-cert"
               for g in secret_writes), secret_writes
    rules = sorted((g["rule"] for g in secret_writes), key=lambda r: r["verbs"])
    assert rules == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [OWN_SECRET],
         "verbs": ["get", "update", "patch"]},
    ]
    assert can(objects, "create", "", "secrets", NAMESPACE)
    assert can(objects, "update", "", "secrets", NAMESPACE, OWN_SECRET)
    assert can(objects, "get", "", "secrets", NAMESPACE, OWN_SECRET)
    assert not can(objects, "update", "", "secrets", NAMESPACE, "someone-elses-secret")
    assert not can(objects, "patch", "", "secrets", "team-a", "anything")
    assert not can(objects, "create", "", "secrets", "team-a")
    assert not can(objects, "create", "", "secrets", None)


def test_configmaps_are_never_written(scenario):
    name, values, objects = scenario
    for g in grants(objects):
        if "configmaps" in g["rule"]["resources"]:
            assert set(g["rule"]["verbs"]) == {"get", "list", "watch"}


def _watch_rules():
    return [
        {"apiGroups": ["gitprovider.dev"], "resources": ["gitproviderconnections"],
         "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["gitprovider.dev"], "resources": ["gitproviderconnections/status"],
         "verbs": ["update", "patch"]},
        {"apiGroups": [""], "resources": ["secrets", "configmaps"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]


def test_cluster_wide_by_default():
    objects = render({})
    role = one(objects, "ClusterRole", FULLNAME)
    assert role["rules"] == _watch_rules()
    binding = one(objects, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": FULLNAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                    "namespace": NAMESPACE}]
    for verb in ("get", "list", "watch"):
        assert can(objects, verb, "", "secrets", None)
        assert can(objects, verb, "", "configmaps", None)
    assert can(objects, "patch", "gitprovider.dev", "gitproviderconnections", None)
    assert can(objects, "update", "gitprovider.dev", "gitproviderconnections/status", None)
    assert not can(objects, "update", "gitprovider.dev", "gitproviderconnections", None)
    assert not can(objects, "create", "gitprovider.dev", "gitproviderconnections", None)
    assert can(objects, "create", "", "events", "team-a")
    assert can(objects, "create", "events.k8s.io", "events", "team-a")


@pytest.mark.parametrize("name", ["watch-namespaces", "everything-ha"])
def test_watch_namespaces_list_has_no_cluster_wide_access(name):
    values = SCENARIOS[name]
    objects = render(values)
    watched = values["watchNamespaces"]
    # no ClusterRole touches connections, Secrets, ConfigMaps or events
    for g in grants(objects):
        if g["scope"] == "cluster":
            assert set(g["rule"]["resources"]) <= {"validatingwebhookconfigurations"}, g
    for verb in ("get", "list", "watch"):
        assert not can(objects, verb, "", "secrets", None)
        assert not can(objects, verb, "", "configmaps", None)
        assert not can(objects, verb, "gitprovider.dev", "gitproviderconnections", None)
        assert not can(objects, verb, "", "secrets", "not-watched")
    # one Role and RoleBinding per watched namespace, with the watch rules
    for ns in watched:
        role = one(objects, "Role", FULLNAME, ns)
        assert role["rules"] == _watch_rules()
        binding = one(objects, "RoleBinding", FULLNAME, ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                      "kind": "Role", "name": FULLNAME}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                        "namespace": NAMESPACE}]
        assert can(objects, "list", "", "secrets", ns)
        assert can(objects, "watch", "gitprovider.dev", "gitproviderconnections", ns)
        assert can(objects, "patch", "gitprovider.dev", "gitproviderconnections/status", ns)
        assert can(objects, "create", "events.k8s.io", "events", ns)
    watch_roles = [o for o in find(objects, "Role") if o["metadata"]["name"] == FULLNAME]
    assert sorted(o["metadata"]["namespace"] for o in watch_roles) == sorted(watched)


def test_leader_election_lease_role(scenario):
    name, values, objects = scenario
    enabled = effective_values(values)["leaderElection"]["enabled"]
    lease_grants = [g for g in grants(objects) if "leases" in g["rule"]["resources"]]
    if not enabled:
        assert lease_grants == []
        return
    assert len(lease_grants) == 1
    g = lease_grants[0]
    assert g["scope"] == NAMESPACE
    assert g["role"] == f"Role/{FULLNAME}-leader-election"
    assert g["rule"] == {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                         "verbs": ["get", "create", "update", "patch"]}
    assert not can(objects, "get", "coordination.k8s.io", "leases", "team-a")


def test_webhook_configuration_patch_rights(scenario):
    name, values, objects = scenario
    self_managed = not effective_values(values)["webhook"]["certManager"]["enabled"]
    vwc_grants = [g for g in grants(objects)
                  if "validatingwebhookconfigurations" in g["rule"]["resources"]]
    if not self_managed:
        assert vwc_grants == []
        return
    assert len(vwc_grants) == 1
    g = vwc_grants[0]
    assert g["scope"] == "cluster"
    assert g["rule"] == {"apiGroups": ["admissionregistration.k8s.io"],
                         "resources": ["validatingwebhookconfigurations"],
                         "resourceNames": [FULLNAME],
                         "verbs": ["get", "patch", "update"]}
    hook_name = one(objects, "ValidatingWebhookConfiguration")["metadata"]["name"]
    assert can(objects, "patch", "admissionregistration.k8s.io",
               "validatingwebhookconfigurations", None, hook_name)
    assert not can(objects, "patch", "admissionregistration.k8s.io",
                   "validatingwebhookconfigurations", None, "another-webhook")


def test_own_secret_name_matches_the_operator_flag():
    from conftest import container, parse_args

    objects = render({})
    _, flags = parse_args(container(objects)["args"])
    assert flags["--webhook-cert-secret"] == [OWN_SECRET]
    role = one(objects, "Role", f"{FULLNAME}-webhook-cert", NAMESPACE)
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert named[0]["resourceNames"] == flags["--webhook-cert-secret"]


def test_only_the_certificate_secret_may_be_created():
    """RBAC cannot limit "create" by name: the chart's ValidatingAdmissionPolicy does, for the
    operator's ServiceAccount only (tests/kubectl.rs proves it on a real kube-apiserver)."""
    objects = render({})
    policy = one(objects, "ValidatingAdmissionPolicy", f"{FULLNAME}-webhook-cert", None)
    condition = policy["spec"]["matchConditions"][0]["expression"]
    assert condition == f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{FULLNAME}'"
    validation = policy["spec"]["validations"][0]["expression"]
    assert f"object.metadata.name == '{OWN_SECRET}'" in validation
    assert f"request.namespace == '{NAMESPACE}'" in validation
    binding = one(objects, "ValidatingAdmissionPolicyBinding", f"{FULLNAME}-webhook-cert", None)
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    # With cert-manager the operator creates no Secret: no policy.
    kinds = {o["kind"] for o in render({"webhook": {"certManager": {"enabled": True}}})}
    assert "ValidatingAdmissionPolicy" not in kinds
