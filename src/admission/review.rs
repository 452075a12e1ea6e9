//! Reading an AdmissionReview body and writing the answer.
//!
//! Only what a decision reads (the objects' name, namespace, generation and `spec`) is kept; the
//! rest of the objects, `userInfo` and the options are skipped over without being built (reading
//! them into a typed `AdmissionReview<DynamicObject>` cost as much CPU as TLS and HTTP together).

use super::decision::{Decision, ObjectView, Rejection, Subject};
use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, GroupVersionKind, Status, TypeMeta};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A decoded review: its envelope and its request.
pub(super) struct Decoded {
    api_version: String,
    kind: String,
    pub(super) request: RequestBody,
}

/// Decodes a review body; anything that is not an `admission.k8s.io` AdmissionReview with a
/// request is a [`Rejection::BadRequest`].
pub(super) fn decode(body: &[u8]) -> Result<Decoded, Rejection> {
    let review: ReviewBody = serde_json::from_slice(body)
        .map_err(|e| Rejection::BadRequest(format!("the body is not an AdmissionReview: {e}")))?;
    if review.kind != "AdmissionReview" || !review.api_version.starts_with("admission.k8s.io/") {
        return Err(Rejection::BadRequest(format!(
            "expected kind AdmissionReview of admission.k8s.io/v1, got kind {:?} apiVersion {:?}",
            review.kind, review.api_version
        )));
    }
    let Some(request) = review.request else {
        return Err(Rejection::BadRequest("the AdmissionReview has no request".to_owned()));
    };
    Ok(Decoded {
        api_version: review.api_version,
        kind: review.kind,
        request,
    })
}

/// The answer to `decoded` carrying `decision`: what `AdmissionResponse::from(&AdmissionRequest)`
/// makes, without a typed request.
pub(super) fn answer(decoded: Decoded, decision: Decision) -> AdmissionReview<DynamicObject> {
    let mut response = AdmissionResponse::invalid("");
    response.types = TypeMeta {
        api_version: decoded.api_version,
        kind: decoded.kind,
    };
    response.uid = decoded.request.uid;
    response.allowed = true;
    response.result = Status::default();
    if !decision.allowed {
        response = response.deny(decision.message);
    }
    if !decision.warnings.is_empty() {
        response.warnings = Some(decision.warnings);
    }
    response.into_review()
}

/// An AdmissionReview as [`decode`] reads it: the envelope, and of the request what a
/// decision or the answer needs. The fields kube's `AdmissionRequest` requires are required here
/// too (`resource` and `userInfo` are checked for presence only).
#[derive(Deserialize)]
struct ReviewBody {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    #[serde(default)]
    request: Option<RequestBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestBody {
    uid: String,
    kind: GroupVersionKind,
    #[serde(rename = "resource")]
    _resource: IgnoredAny,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    pub(super) operation: Operation,
    #[serde(rename = "userInfo")]
    _user_info: IgnoredAny,
    #[serde(default)]
    object: Option<ObjectBody>,
    #[serde(default)]
    old_object: Option<ObjectBody>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
struct ObjectBody {
    #[serde(default)]
    metadata: MetadataBody,
    /// `Some(Value::Null)` for `"spec": null`, as `DynamicObject::data.get("spec")` has it.
    #[serde(default, deserialize_with = "present")]
    spec: Option<Value>,
}

#[derive(Deserialize, Default)]
struct MetadataBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl RequestBody {
    pub(super) fn subject(&self) -> Subject<'_> {
        fn object(o: &ObjectBody) -> ObjectView<'_> {
            ObjectView {
                name: o.metadata.name.as_deref(),
                namespace: o.metadata.namespace.as_deref(),
                generation: o.metadata.generation,
                spec: o.spec.as_ref(),
            }
        }
        Subject {
            kind: &self.kind,
            operation: &self.operation,
            sub_resource: self.sub_resource.as_deref(),
            namespace: self.namespace.as_deref(),
            name: &self.name,
            dry_run: self.dry_run,
            object: self.object.as_ref().map(object),
            old_object: self.old_object.as_ref().map(object),
        }
    }
}

pub(super) fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}
