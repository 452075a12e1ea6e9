//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! and server-side apply. The last two are approximations, see each function.

use serde_json::Value;

use super::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    /// From the request's Content-Type (parameters such as `; charset=utf-8` ignored).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Media types the real server lists in its 415 answers.
pub const BUILTIN_PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
    "application/strategic-merge-patch+json",
];
pub const CUSTOM_PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

/// Parses a JSON body, answering 400 like the apiserver's decoder does.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// RFC 7386 merge patch onto `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch. A patch that does not apply (failed `test`, missing path) is a 422,
/// as upstream.
pub fn json_patch(target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

/// Strategic merge patch, approximated as a merge patch: lists are replaced rather than
/// merged by their `patchMergeKey`, and `$patch`/`$setElementOrder` directives are not
/// understood. Only reached for built-in types; custom resources get 415 as upstream.
pub fn strategic(target: &mut Value, patch: &Value) {
    merge(target, patch);
}

/// Parses an apply configuration (YAML, which includes JSON).
pub fn parse_apply(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("error decoding YAML: body is not UTF-8"))?;
    let v: Value = serde_saphyr::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the apply configuration must be an object",
        ));
    }
    Ok(v)
}

/// Server-side apply, approximated: the applied configuration is merged into the live object
/// (maps merged recursively, lists and scalars replaced, explicit nulls remove). Field
/// ownership is not tracked: there are no managedFields, no conflicts between managers
/// (`force` is accepted and changes nothing), and fields a manager stops applying are not
/// removed.
pub fn apply(live: &mut Value, config: &Value) {
    merge(live, config);
}
