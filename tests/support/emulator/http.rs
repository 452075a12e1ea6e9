//! HTTP-level plumbing: parsing request paths into routes, query parameters, content
//! negotiation (`Accept`: full objects or `PartialObjectMetadata`), and building JSON / Status
//! responses.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::record::Target;
use super::registry::Registry;

/// What a path addresses: a resource (`/api/v1/...`, `/apis/{group}/{version}/...`) or
/// nothing served (discovery, `/version` and health paths included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Resource(ResourcePath),
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Splits a path into a route. Needs the registry to tell `/api/v1/namespaces/{ns}/{resource}`
/// from `/api/v1/namespaces/{name}/{subresource}`.
pub fn parse_route(path: &str, registry: &Registry) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["api", v, rest @ ..] => resource_route("", v, rest, registry),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest, registry),
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str], registry: &Registry) -> Route {
    let namespaced_res = |r: &str| registry.find(group, version, r).is_some_and(|d| d.namespaced);
    let (namespace, rest) = if rest.len() >= 3 && rest[0] == "namespaces" && namespaced_res(rest[2]) {
        (Some(rest[1].to_owned()), &rest[2..])
    } else {
        (None, rest)
    };
    let p = |i: usize| rest.get(i).map(|s| (*s).to_owned());
    if rest.is_empty() || rest.len() > 3 {
        return Route::Unknown;
    }
    Route::Resource(ResourcePath {
        group: group.to_owned(),
        version: version.to_owned(),
        resource: rest[0].to_owned(),
        namespace,
        name: p(1),
        subresource: p(2),
    })
}

/// The Kubernetes verb of a resource request.
pub fn verb_of(method: &str, rp: &ResourcePath, query: &Query) -> &'static str {
    match (method, rp.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if query.flag("watch") => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("POST", true) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

pub fn target_of(method: &str, rp: &ResourcePath, query: &Query) -> Target {
    Target {
        verb: verb_of(method, rp, query).to_owned(),
        group: rp.group.clone(),
        version: rp.version.clone(),
        resource: rp.resource.clone(),
        namespace: rp.namespace.clone(),
        name: rp.name.clone(),
        subresource: rp.subresource.clone(),
    }
}

/// Decoded query parameters (last occurrence wins).
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: &str) -> Self {
        Self(url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A boolean parameter (`watch=true`, `watch=1`).
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1" | "True"))
    }
}

/// The representation the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Full,
    /// `meta.k8s.io/v1` `PartialObjectMetadata(List)` (kube's `*_metadata` calls).
    Metadata,
}

/// Serialises as the `meta.k8s.io/v1` `PartialObjectMetadata` of an object (its metadata
/// only), without copying that metadata.
pub struct PartialMetadataRef<'a>(pub &'a Value);

impl Serialize for PartialMetadataRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("apiVersion", "meta.k8s.io/v1")?;
        m.serialize_entry("kind", "PartialObjectMetadata")?;
        match self.0.get("metadata") {
            Some(meta) => m.serialize_entry("metadata", meta)?,
            None => m.serialize_entry("metadata", &Map::new())?,
        }
        m.end()
    }
}

/// Picks a representation from `Accept`: metadata only when the client asks for
/// `PartialObjectMetadata(List)` (kube's metadata APIs), the full object otherwise.
pub fn negotiate(accept: Option<&str>) -> View {
    if accept.is_some_and(|a| a.contains("as=PartialObjectMetadata")) {
        View::Metadata
    } else {
        View::Full
    }
}

/// A JSON response from serialised JSON.
pub fn json_bytes_response(status: u16, bytes: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The Status response for an error.
pub fn error_response(err: &ApiError) -> Response<Body> {
    json_bytes_response(err.code, serde_json::to_vec(&err.to_status()).unwrap_or_default())
}
