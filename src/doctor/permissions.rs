//! Every permission `run` needs, in one list: what `doctor` asks the API server about for the
//! operator's ServiceAccount, held equal to the chart's rules (deploy/rbac.yaml, rendered from
//! charts/gitprovider-operator/templates/rbac.yaml) by the test below.

/// Where a permission must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every watched namespace (`run --namespace`), or the whole cluster when none is named.
    Watched,
    /// The operator's own namespace (its Lease, its certificate Secret).
    OperatorNamespace,
    /// Cluster-scoped objects.
    Cluster,
}

/// One verb on one resource (optionally one object of it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub scope: Scope,
    pub group: &'static str,
    pub resource: &'static str,
    pub verb: &'static str,
    pub name: Option<String>,
}

/// (group, resources, verbs) of what the controller reads and writes in watched namespaces.
const WATCH: &[(&str, &[&str], &[&str])] = &[
    (
        "gitprovider.dev",
        &["gitproviderconnections"],
        &["get", "list", "watch", "patch"],
    ),
    (
        "gitprovider.dev",
        &["gitproviderconnections/status"],
        &["update", "patch"],
    ),
    // Tokens and CA bundles are read, never written.
    ("", &["secrets", "configmaps"], &["get", "list", "watch"]),
    ("", &["events"], &["create", "patch"]),
    ("events.k8s.io", &["events"], &["create", "patch"]),
];
const LEASE_VERBS: &[&str] = &["get", "create", "update", "patch"];
const CERT_SECRET_VERBS: &[&str] = &["get", "update", "patch"];
const WEBHOOK_CONFIGURATION_VERBS: &[&str] = &["get", "patch", "update"];

/// What the operator issues for itself (`run --webhook-cert-secret`), by name.
pub struct SelfManagedCerts<'a> {
    pub secret: &'a str,
    pub webhook_configuration: &'a str,
}

/// The permissions `run` needs with leader election on or off and with or without a
/// self-managed webhook certificate.
pub fn operator_permissions(leader_elect: bool, certs: Option<SelfManagedCerts<'_>>) -> Vec<Permission> {
    let mut list = Vec::new();
    let mut add = |scope, group, resources: &[&'static str], verbs: &[&'static str], name: Option<&str>| {
        for resource in resources {
            for verb in verbs {
                list.push(Permission {
                    scope,
                    group,
                    resource,
                    verb,
                    name: name.map(str::to_owned),
                });
            }
        }
    };
    for (group, resources, verbs) in WATCH {
        add(Scope::Watched, group, resources, verbs, None);
    }
    if leader_elect {
        add(
            Scope::OperatorNamespace,
            "coordination.k8s.io",
            &["leases"],
            LEASE_VERBS,
            None,
        );
    }
    if let Some(certs) = certs {
        // RBAC cannot limit create by name.
        add(Scope::OperatorNamespace, "", &["secrets"], &["create"], None);
        add(
            Scope::OperatorNamespace,
            "",
            &["secrets"],
            CERT_SECRET_VERBS,
            Some(certs.secret),
        );
        add(
            Scope::Cluster,
            "admissionregistration.k8s.io",
            &["validatingwebhookconfigurations"],
            WEBHOOK_CONFIGURATION_VERBS,
            Some(certs.webhook_configuration),
        );
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// deploy/rbac.yaml's rules as permissions: the ClusterRole of the release's name holds the
    /// watch rules, the other ClusterRole cluster-scoped ones, Roles the operator namespace's.
    fn shipped() -> BTreeSet<Permission> {
        let text = include_str!("../../deploy/rbac.yaml");
        let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
        let mut set = BTreeSet::new();
        for document in text.split("\n---\n") {
            let object: Value = serde_saphyr::from_str(document).expect("deploy/rbac.yaml parses");
            let scope = match (object["kind"].as_str(), object["metadata"]["name"].as_str()) {
                (Some("ClusterRole"), Some("gitprovider-operator")) => Scope::Watched,
                (Some("ClusterRole"), _) => Scope::Cluster,
                (Some("Role"), _) => Scope::OperatorNamespace,
                _ => continue,
            };
            for rule in object["rules"].as_array().expect("rules") {
                let strings = |key: &str| -> Vec<&'static str> {
                    rule[key]
                        .as_array()
                        .map(|a| a.iter().map(|v| leak(v.as_str().expect("a string"))).collect())
                        .unwrap_or_default()
                };
                let names = strings("resourceNames");
                for group in strings("apiGroups") {
                    for resource in strings("resources") {
                        for verb in strings("verbs") {
                            let named: Vec<Option<String>> = if names.is_empty() {
                                vec![None]
                            } else {
                                names.iter().map(|n| Some((*n).to_owned())).collect()
                            };
                            for name in named {
                                set.insert(Permission {
                                    scope,
                                    group,
                                    resource,
                                    verb,
                                    name,
                                });
                            }
                        }
                    }
                }
            }
        }
        set
    }

    #[test]
    fn the_list_is_the_charts_rules() {
        let code: BTreeSet<Permission> = operator_permissions(
            true,
            Some(SelfManagedCerts {
                secret: "gitprovider-operator-webhook-tls",
                webhook_configuration: "gitprovider-operator",
            }),
        )
        .into_iter()
        .collect();
        let shipped = shipped();
        assert_eq!(
            code.difference(&shipped).collect::<Vec<_>>(),
            Vec::<&Permission>::new(),
            "in the code, not in deploy/rbac.yaml"
        );
        assert_eq!(
            shipped.difference(&code).collect::<Vec<_>>(),
            Vec::<&Permission>::new(),
            "in deploy/rbac.yaml, not in the code"
        );
    }
}
