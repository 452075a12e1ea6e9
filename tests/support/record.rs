//! The request record: every request an API server answered (kube-apiserver's audit log is
//! read into this shape; the benchmark's emulator records its own, without bodies), so tests
//! can assert on what a client sent (how many status writes, whether a secret ever appeared in
//! a body, ...).

use std::time::SystemTime;

/// What a request was about, when it addressed a resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`), `""` if none.
    pub query: String,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    /// The authenticated user, where the server reports it (the audit log does).
    pub user: Option<String>,
    pub body: Vec<u8>,
    /// The response's HTTP status.
    pub status: u16,
    /// The response body; empty for watch streams.
    pub response_body: Vec<u8>,
    pub time: SystemTime,
    /// `None` for discovery, health and unparseable paths.
    pub target: Option<Target>,
}

impl RecordedRequest {
    /// A decoded query parameter.
    pub fn query_param(&self, key: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether `needle` occurs in the request body or the response body.
    pub fn mentions(&self, needle: &str) -> bool {
        let n = needle.as_bytes();
        !n.is_empty() && (contains(&self.body, n) || contains(&self.response_body, n))
    }

    pub fn verb(&self) -> &str {
        self.target.as_ref().map_or("", |t| t.verb.as_str())
    }

    /// A create, update, patch or delete.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// Whether this request addressed `resource` (plural) named `name` in `namespace`.
    pub fn is_for(&self, resource: &str, namespace: Option<&str>, name: &str) -> bool {
        self.target.as_ref().is_some_and(|t| {
            t.resource == resource && t.namespace.as_deref() == namespace && t.name.as_deref() == Some(name)
        })
    }

    /// A write to the `status` subresource.
    pub fn is_status_write(&self) -> bool {
        self.is_write()
            && self
                .target
                .as_ref()
                .is_some_and(|t| t.subresource.as_deref() == Some("status"))
    }

    /// A successful (2xx) response.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
