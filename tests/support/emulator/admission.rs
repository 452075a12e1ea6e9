//! Validating admission webhooks: matching a request against `ValidatingWebhookConfiguration`
//! objects and calling each matching webhook with a real `admission.k8s.io/v1`
//! `AdmissionReview` over HTTPS, then turning its answer into the apiserver's response (a
//! denial Status) or, when the call fails, applying `failurePolicy`. Webhooks' `warnings` are
//! not relayed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::error::ApiError;
use super::registry::ResourceDef;
use super::tls::client_config_trusting;
use super::util::{b64_decode, new_uid};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

impl Operation {
    fn wire(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
        }
    }
}

/// Emulator-wide admission settings.
#[derive(Clone, Debug, Default)]
pub struct AdmissionConfig {
    /// `(namespace, service name)` → local address, for `clientConfig.service`.
    pub service_endpoints: HashMap<(String, String), SocketAddr>,
}

/// The request being admitted (objects in the request view).
pub struct Attributes<'a> {
    pub def: &'a ResourceDef,
    pub subresource: Option<&'a str>,
    pub operation: Operation,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
}

/// Runs every matching webhook of `configs` (concurrently, like the apiserver): the first
/// denial (or failed call under `failurePolicy: Fail`) is the request's error.
pub async fn validate(cfg: &AdmissionConfig, configs: &[Arc<Value>], attrs: &Attributes<'_>) -> Result<(), ApiError> {
    let hooks: Vec<&Value> = configs
        .iter()
        .flat_map(|c| c.get("webhooks").and_then(Value::as_array).into_iter().flatten())
        .filter(|h| matches(h, attrs))
        .collect();
    let results = futures::future::join_all(hooks.into_iter().map(|h| run_one(cfg, h, attrs))).await;
    results.into_iter().collect()
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether webhook `h` applies to the request: its rules (operations, groups, versions,
/// resources, scope). `namespaceSelector`, `objectSelector` and `matchConditions` are not
/// evaluated: a webhook with them matches as if they selected everything.
fn matches(h: &Value, a: &Attributes<'_>) -> bool {
    h.get("rules").and_then(Value::as_array).into_iter().flatten().any(|r| {
        let ops = strs(r.get("operations"));
        let groups = strs(r.get("apiGroups"));
        let versions = strs(r.get("apiVersions"));
        let resources = strs(r.get("resources"));
        let scope = r.get("scope").and_then(Value::as_str).unwrap_or("*");
        let any = |list: &[&str], x: &str| list.iter().any(|v| *v == "*" || *v == x);
        let resource_ok = resources.iter().any(|pat| {
            let (pr, ps) = pat.split_once('/').unwrap_or((pat, ""));
            let res_ok = pr == "*" || pr == a.def.plural;
            let sub_ok = match a.subresource {
                None => ps.is_empty(),
                Some(s) => ps == "*" || ps == s,
            };
            res_ok && sub_ok
        });
        let scope_ok = match scope {
            "Cluster" => !a.def.namespaced,
            "Namespaced" => a.def.namespaced,
            _ => true,
        };
        any(&ops, a.operation.wire())
            && any(&groups, &a.def.group)
            && any(&versions, &a.def.version)
            && resource_ok
            && scope_ok
    })
}

/// The `AdmissionReview` a webhook is sent (`userInfo` is always `kubernetes-admin`).
fn review(a: &Attributes<'_>, uid: &str) -> Value {
    let gvk = json!({"group": a.def.group, "version": a.def.version, "kind": a.def.kind});
    let gvr = json!({"group": a.def.group, "version": a.def.version, "resource": a.def.plural});
    let mut req = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": a.name,
        "operation": a.operation.wire(),
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "object": a.object.cloned().unwrap_or(Value::Null),
        "oldObject": a.old_object.cloned().unwrap_or(Value::Null),
        "dryRun": false,
    });
    if let Some(ns) = a.namespace {
        req["namespace"] = json!(ns);
    }
    if let Some(s) = a.subresource {
        req["subResource"] = json!(s);
        req["requestSubResource"] = json!(s);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

/// One webhook: call, interpret, apply failurePolicy.
async fn run_one(cfg: &AdmissionConfig, h: &Value, a: &Attributes<'_>) -> Result<(), ApiError> {
    let name = h.get("name").and_then(Value::as_str).unwrap_or("");
    let uid = new_uid();
    let body = review(a, &uid);
    let timeout = h.get("timeoutSeconds").and_then(Value::as_u64).unwrap_or(10);
    let answer = call(cfg, h, &body, timeout)
        .await
        .and_then(|resp| interpret(name, &uid, &resp));
    match answer {
        Ok(verdict) => verdict,
        Err(_) if h.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") => Ok(()),
        Err(why) => Err(ApiError::internal(&format!("failed calling webhook {name:?}: {why}"))),
    }
}

/// The webhook's verdict, or why its answer is not one (then failurePolicy decides).
fn interpret(name: &str, uid: &str, review: &Value) -> Result<Result<(), ApiError>, String> {
    let resp = review
        .get("response")
        .ok_or("received invalid webhook response: response is missing")?;
    let got = resp.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!(
            "received invalid webhook response: expected response.uid={uid:?}, got {got:?}"
        ));
    }
    if resp.get("allowed").and_then(Value::as_bool) == Some(true) {
        return Ok(Ok(()));
    }
    // Upstream `webhookerrors.ToStatusErr`.
    let status = resp.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut err = ApiError::from_status(&status, 400);
    let denied_by = format!("admission webhook {name:?} denied the request");
    err.message = if !err.message.is_empty() {
        format!("{denied_by}: {}", err.message)
    } else if !err.reason.is_empty() {
        format!("{denied_by}: {}", err.reason)
    } else {
        format!("{denied_by} without explanation")
    };
    Ok(Err(err))
}

/// POSTs the review; `Err` describes the failure like the apiserver's error text.
async fn call(cfg: &AdmissionConfig, h: &Value, body: &Value, timeout: u64) -> Result<Value, String> {
    let cc = h.get("clientConfig").cloned().unwrap_or_else(|| json!({}));
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout))
        .redirect(reqwest::redirect::Policy::none());
    let base = if let Some(url) = cc.get("url").and_then(Value::as_str) {
        url.to_owned()
    } else if let Some(svc) = cc.get("service") {
        let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
        let svc_name = svc.get("name").and_then(Value::as_str).unwrap_or("");
        let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443);
        let path = svc.get("path").and_then(Value::as_str).unwrap_or("/");
        let host = format!("{svc_name}.{ns}.svc");
        let display = format!("https://{host}:{port}{path}");
        let Some(addr) = cfg.service_endpoints.get(&(ns.to_owned(), svc_name.to_owned())) else {
            return Err(format!(
                "failed to call webhook: Post \"{display}?timeout={timeout}s\": service \"{svc_name}\" not found"
            ));
        };
        // The certificate is verified for `<service>.<namespace>.svc`, as the apiserver does;
        // the name is resolved to the local address the test registered. No port in the URL,
        // so the registered address's port is used.
        builder = builder.resolve(&host, *addr);
        format!("https://{host}{path}")
    } else {
        return Err("failed to call webhook: clientConfig has neither url nor service".into());
    };
    let url = format!("{base}{}timeout={timeout}s", if base.contains('?') { '&' } else { '?' });
    let bundle = cc
        .get("caBundle")
        .and_then(Value::as_str)
        .and_then(b64_decode)
        .unwrap_or_default();
    let tls = client_config_trusting(&bundle).map_err(|e| format!("failed to call webhook: Post \"{url}\": {e}"))?;
    let client = builder
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| format!("failed to call webhook: {e}"))?;
    let resp = client
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, */*")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .send()
        .await
        .map_err(|e| format!("failed to call webhook: Post \"{url}\": {}", describe(&e)))?;
    let code = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("failed to call webhook: {}", describe(&e)))?;
    if !(200..300).contains(&code) {
        return Err(format!(
            "failed to call webhook: the server responded with the status code {code} but did not return more information (post {url})"
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("received invalid webhook response: {e}"))
}

/// An error's message with its causes, timeouts named as Go names them.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "context deadline exceeded".into();
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
