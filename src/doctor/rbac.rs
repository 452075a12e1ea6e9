//! Whether the operator's ServiceAccount may do everything `run` needs: one SubjectAccessReview
//! (authorization.k8s.io/v1, as `kubectl auth can-i --as`) per verb and resource of
//! [`operator_permissions`], the missing ones named.

use super::cluster::api_failure;
use super::permissions::{Permission, Scope, SelfManagedCerts, operator_permissions};
use super::report::{Line, RBAC};
use super::{DoctorArgs, WebhookCerts};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};

pub async fn check(client: &Client, args: &DoctorArgs, certs: WebhookCerts) -> Line {
    let (namespace, account) = (&args.namespace, &args.service_account);
    let what = format!("ServiceAccount {namespace}/{account}");
    match Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .get_opt(account)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Line::fail(
                RBAC,
                format!("{what} does not exist"),
                "install the chart (or kubectl apply -k deploy/), or pass --namespace/--service-account",
            );
        }
        Err(error) => return api_failure(RBAC, &format!("cannot read {what}"), &error),
    }
    let self_managed = (certs == WebhookCerts::SelfManaged).then(|| SelfManagedCerts {
        secret: &args.webhook_cert_secret,
        webhook_configuration: &args.webhook_configuration,
    });
    let permissions = operator_permissions(args.leader_elect, self_managed);
    let watched: Vec<Option<&str>> = if args.watch_namespaces.is_empty() {
        vec![None]
    } else {
        args.watch_namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut asks = Vec::new();
    for permission in &permissions {
        let namespaces = match permission.scope {
            Scope::Watched => watched.clone(),
            Scope::OperatorNamespace => vec![Some(namespace.as_str())],
            Scope::Cluster => vec![None],
        };
        for ns in namespaces {
            asks.push((permission, ns));
        }
    }
    let user = format!("system:serviceaccount:{namespace}:{account}");
    let groups = vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_owned(),
    ];
    let api = Api::<SubjectAccessReview>::all(client.clone());
    let answers = futures::future::join_all(asks.iter().map(|(permission, ns)| {
        let review = review(&user, &groups, permission, *ns);
        let api = api.clone();
        async move { api.create(&PostParams::default(), &review).await }
    }))
    .await;
    let mut missing = Vec::new();
    for ((permission, ns), answer) in asks.iter().zip(answers) {
        match answer {
            Ok(review) if review.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => missing.push((*permission, *ns)),
            Err(error) => return api_failure(RBAC, "cannot create a SubjectAccessReview", &error),
        }
    }
    if missing.is_empty() {
        Line::ok(
            RBAC,
            format!("{what} has all {} permissions the operator needs", asks.len()),
        )
    } else {
        let names: Vec<String> = missing.iter().map(|(p, ns)| describe(p, *ns)).collect();
        let (example, ns) = missing[0];
        Line::fail(
            RBAC,
            format!("{what} may not {}", names.join(", ")),
            format!(
                "apply the chart's RBAC (helm upgrade, or kubectl apply -f deploy/rbac.yaml); \
                 ask again with {}",
                can_i(example, ns, &user)
            ),
        )
    }
}

fn review(user: &str, groups: &[String], permission: &Permission, namespace: Option<&str>) -> SubjectAccessReview {
    let (resource, subresource) = match permission.resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub.to_owned())),
        None => (permission.resource, None),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(groups.to_vec()),
            resource_attributes: Some(ResourceAttributes {
                namespace: namespace.map(str::to_owned),
                group: Some(permission.group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                verb: Some(permission.verb.to_owned()),
                name: permission.name.clone(),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// `patch gitproviderconnections.gitprovider.dev/status (cluster-wide)`, as kubectl names it.
fn describe(permission: &Permission, namespace: Option<&str>) -> String {
    let mut resource = match permission.resource.split_once('/') {
        Some((resource, sub)) if !permission.group.is_empty() => format!("{resource}.{}/{sub}", permission.group),
        _ if !permission.group.is_empty() => format!("{}.{}", permission.resource, permission.group),
        _ => permission.resource.to_owned(),
    };
    if let Some(name) = &permission.name {
        resource = format!("{resource}/{name}");
    }
    match (namespace, permission.scope) {
        (Some(ns), _) => format!("{} {resource} in {ns}", permission.verb),
        (None, Scope::Cluster) => format!("{} {resource}", permission.verb),
        (None, _) => format!("{} {resource} (cluster-wide)", permission.verb),
    }
}

/// The kubectl command that asks the same question.
fn can_i(permission: &Permission, namespace: Option<&str>, user: &str) -> String {
    let (resource, subresource) = match permission.resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub)),
        None => (permission.resource, None),
    };
    let mut command = format!("kubectl auth can-i {} {resource}", permission.verb);
    if !permission.group.is_empty() {
        command = format!("{command}.{}", permission.group);
    }
    if let Some(name) = &permission.name {
        command = format!("{command}/{name}");
    }
    if let Some(sub) = subresource {
        command = format!("{command} --subresource={sub}");
    }
    match (namespace, permission.scope) {
        (Some(ns), _) => command = format!("{command} -n {ns}"),
        (None, Scope::Watched) => command.push_str(" -A"),
        (None, _) => {}
    }
    format!("{command} --as={user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_named_as_kubectl_names_them() {
        let status = Permission {
            scope: Scope::Watched,
            group: "gitprovider.dev",
            resource: "gitproviderconnections/status",
            verb: "patch",
            name: None,
        };
        assert_eq!(
            describe(&status, None),
            "patch gitproviderconnections.gitprovider.dev/status (cluster-wide)"
        );
        let lease = Permission {
            scope: Scope::OperatorNamespace,
            group: "coordination.k8s.io",
            resource: "leases",
            verb: "update",
            name: None,
        };
        assert_eq!(
            describe(&lease, Some("ops")),
            "update leases.coordination.k8s.io in ops"
        );
        let secret = Permission {
            scope: Scope::OperatorNamespace,
            group: "",
            resource: "secrets",
            verb: "get",
            name: Some("tls".into()),
        };
        assert_eq!(describe(&secret, Some("ops")), "get secrets/tls in ops");
        assert_eq!(
            can_i(&status, None, "u"),
            "kubectl auth can-i patch gitproviderconnections.gitprovider.dev --subresource=status -A --as=u"
        );
        assert_eq!(
            can_i(&secret, Some("ops"), "u"),
            "kubectl auth can-i get secrets/tls -n ops --as=u"
        );
    }
}
