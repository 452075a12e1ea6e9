//! The first two checks: the API server answers, and the CRD it serves is the one this binary
//! writes (installed, Established, serving this binary's version with this binary's schema).

use super::report::{API_SERVER, CRD, Line};
use crate::api::GitProviderConnection;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, CustomResourceExt, Resource};
use serde_json::Value;

const APPLY_CRD: &str = "gitprovider-operator crd | kubectl apply --server-side --force-conflicts -f -";

/// A failure reaching the API server, as one line of `check`.
pub fn api_failure(check: &'static str, what: &str, error: &kube::Error) -> Line {
    match error {
        kube::Error::Api(status) if status.code == 401 => Line::fail(
            check,
            format!("{what}: the API server refuses your kubeconfig's credentials (401)"),
            "renew them (e.g. log in again), or pass --kubeconfig/--context",
        ),
        kube::Error::Api(status) if status.code == 403 => Line::fail(
            check,
            format!("{what}: forbidden for your kubeconfig's user ({})", status.message),
            "run doctor as a cluster admin (it reads cluster-scoped objects and creates access reviews)",
        ),
        _ => Line::fail(
            check,
            format!("{what}: {}", crate::api_server::describe(error)),
            "check --kubeconfig/--context and that the API server is up (kubectl cluster-info)",
        ),
    }
}

pub async fn api_server(client: &Client, server: &str) -> Line {
    match client.apiserver_version().await {
        Ok(info) => Line::ok(API_SERVER, format!("{server} answers: Kubernetes {}", info.git_version)),
        Err(error) => api_failure(API_SERVER, &format!("{server} does not answer"), &error),
    }
}

/// The CRD line, and whether the CRD is installed at all (what the webhook probe needs).
pub async fn crd(client: &Client) -> (Line, bool) {
    let expected = GitProviderConnection::crd();
    let name = GitProviderConnection::crd_name();
    let version = GitProviderConnection::version(&());
    let installed = match Api::<CustomResourceDefinition>::all(client.clone()).get_opt(name).await {
        Ok(Some(crd)) => crd,
        Ok(None) => {
            return (
                Line::fail(
                    CRD,
                    format!("CustomResourceDefinition {name} is not installed"),
                    APPLY_CRD,
                ),
                false,
            );
        }
        Err(error) => return (api_failure(CRD, &format!("cannot read {name}"), &error), false),
    };
    let established = installed
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    if !established {
        return (
            Line::fail(
                CRD,
                format!("{name} is not Established yet"),
                format!("kubectl wait --for=condition=Established crd/{name}; kubectl describe crd {name}"),
            ),
            true,
        );
    }
    let Some(served) = installed.spec.versions.iter().find(|v| v.name == version) else {
        let known: Vec<&str> = installed.spec.versions.iter().map(|v| v.name.as_str()).collect();
        return (
            Line::fail(
                CRD,
                format!(
                    "{name} does not have version {version}, which this binary writes (it has {})",
                    known.join(", ")
                ),
                APPLY_CRD,
            ),
            true,
        );
    };
    if !served.served {
        return (
            Line::fail(CRD, format!("{name} does not serve {version}"), APPLY_CRD),
            true,
        );
    }
    let schema_of = |crd: &CustomResourceDefinition| {
        crd.spec
            .versions
            .iter()
            .find(|v| v.name == version)
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| serde_json::to_value(&s.open_api_v3_schema).ok())
            .unwrap_or(Value::Null)
    };
    match first_difference(&schema_of(&expected), &schema_of(&installed), "") {
        None => (
            Line::ok(CRD, format!("{name} serves {version} with this binary's schema")),
            true,
        ),
        Some(path) => (
            Line::fail(
                CRD,
                format!(
                    "{name} serves {version} with a schema other than this binary's (first difference at {}): \
                     it is older or newer than this binary",
                    if path.is_empty() { "the root" } else { &path }
                ),
                format!("if this binary is the newer, {APPLY_CRD}; otherwise use the binary of the installed release"),
            ),
            true,
        ),
    }
}

/// Where two JSON values first differ, as a dotted path (`None` when they are equal).
fn first_difference(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|key| match (a.get(key), b.get(key)) {
                (Some(x), Some(y)) => first_difference(x, y, &join(key)),
                _ => Some(join(key)),
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        _ if expected == actual => None,
        _ => Some(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let a = json!({"properties": {"spec": {"properties": {"url": {"type": "string"}, "x": {}}}}});
        assert_eq!(first_difference(&a, &a.clone(), ""), None);
        let mut b = a.clone();
        b["properties"]["spec"]["properties"]["url"]["type"] = json!("integer");
        assert_eq!(
            first_difference(&a, &b, "").as_deref(),
            Some("properties.spec.properties.url.type")
        );
        let mut c = a.clone();
        c["properties"]["spec"]["properties"]
            .as_object_mut()
            .unwrap()
            .remove("x");
        assert_eq!(
            first_difference(&a, &c, "").as_deref(),
            Some("properties.spec.properties.x")
        );
        assert_eq!(
            first_difference(&json!({"r": [1, 2]}), &json!({"r": [1, 3]}), "").as_deref(),
            Some("r[1]")
        );
    }
}
