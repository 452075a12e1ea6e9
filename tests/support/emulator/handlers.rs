//! The resource verbs: get, list, watch, create and (JSON merge) patch, on objects and their
//! `status` subresource, with the apiserver's semantics for resourceVersions, generation and
//! status subresources. Nothing is ever replaced (PUT) or deleted: 405.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::http::{
    PartialMetadataRef, Query, ResourcePath, View, error_response, json_bytes_response, negotiate, verb_of,
};
use super::registry::{Kind, Registry, ResourceDef};
use super::server::Ctx;
use super::store::{State, TooOld, WriteError};
use super::util::{b64_decode, b64_encode, ensure_object, meta_str, metadata_mut, new_uid, now_rfc3339, rv_of};
use super::watch::{self, Start, WatchSpec};

/// Everything a verb needs to know about its request.
pub struct Req<'a> {
    pub method: &'a str,
    pub path: &'a ResourcePath,
    pub query: &'a Query,
    pub content_type: Option<&'a str>,
    pub accept: Option<&'a str>,
    pub body: &'a [u8],
}

/// A successful answer: status and body (JSON text).
struct Answer {
    code: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(code: u16, body: Vec<u8>) -> Self {
        Self { code, body }
    }
}

/// Resolved target of a resource request.
struct Target<'a> {
    def: Arc<ResourceDef>,
    ns: Option<String>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
    view: View,
}

impl Target<'_> {
    fn ns_key(&self) -> &str {
        self.ns.as_deref().unwrap_or("")
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(&self.def.group_resource(), name)
    }

    /// An object as this request asked for it (in full or its metadata only), serialised.
    fn render(&self, obj: &Value) -> Vec<u8> {
        match self.view {
            View::Full => serde_json::to_vec(obj),
            View::Metadata => serde_json::to_vec(&PartialMetadataRef(obj)),
        }
        .unwrap_or_default()
    }
}

pub fn handle(ctx: &Ctx, req: Req<'_>) -> Response<Body> {
    match dispatch(ctx, &req) {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    }
}

fn dispatch(ctx: &Ctx, req: &Req<'_>) -> Result<Response<Body>, ApiError> {
    let rp = req.path;
    let found = {
        let st = ctx.store.lock();
        st.registry.find(&rp.group, &rp.version, &rp.resource).cloned()
    };
    let Some(def) = found else {
        return Err(ApiError::no_such_resource());
    };
    let view = negotiate(req.accept);
    let t = Target {
        def,
        ns: rp.namespace.clone(),
        name: rp.name.as_deref(),
        sub: rp.subresource.as_deref(),
        view,
    };
    let verb = verb_of(req.method, rp, req.query);

    if let Some(sub) = t.sub {
        if sub != "status" || !t.def.status_subresource {
            return Err(ApiError::no_such_resource());
        }
        if !matches!(verb, "get" | "patch") {
            return Err(ApiError::method_not_allowed());
        }
    }
    // A namespaced resource addressed without a namespace can only be listed or watched.
    if t.def.namespaced && t.ns.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::method_not_allowed());
    }
    if verb == "create" && t.name.is_some() {
        return Err(ApiError::method_not_allowed());
    }

    if verb == "watch" {
        return watch(ctx, &t, req);
    }
    let answer = match verb {
        "get" => get(ctx, &t),
        "list" => list(ctx, &t, req.query),
        "create" => create(ctx, &t, req),
        "patch" => patch(ctx, &t, req),
        _ => Err(ApiError::method_not_allowed()),
    }?;
    Ok(json_bytes_response(answer.code, answer.body))
}

// ---------------------------------------------------------------- reads

fn get(ctx: &Ctx, t: &Target<'_>) -> Result<Answer, ApiError> {
    let name = t.name.unwrap_or("");
    let obj = ctx.store.lock().get(&t.def.storage, t.ns_key(), name);
    let obj = obj.ok_or_else(|| t.not_found(name))?;
    Ok(Answer::json(200, t.render(&obj)))
}

/// Label and field selectors are not served: a list or watch with one is refused rather than
/// answered with more than it asked for.
fn refuse_selectors(q: &Query) -> Result<(), ApiError> {
    for param in ["labelSelector", "fieldSelector"] {
        if q.get(param).is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::bad_request(format!(
                "{param} is not supported by the emulator"
            )));
        }
    }
    Ok(())
}

/// `{"rv": N, "start": [namespace, name]}`, base64: opaque to clients, like upstream's.
fn encode_continue(rv: u64, key: (&str, &str)) -> String {
    b64_encode(json!({"rv": rv, "start": [key.0, key.1]}).to_string().as_bytes())
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let raw = b64_decode(token).ok_or_else(bad)?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_array).ok_or_else(bad)?;
    let s = |i: usize| start.get(i).and_then(Value::as_str).map(str::to_owned).ok_or_else(bad);
    Ok((rv, (s(0)?, s(1)?)))
}

/// A list of the current objects, in pages when the client sets `limit`: each page carries the
/// resourceVersion of the first, so a watch from it replays whatever changed while the pages
/// were read (the pages themselves show objects as they are when each is read).
fn list(ctx: &Ctx, t: &Target<'_>, q: &Query) -> Result<Answer, ApiError> {
    refuse_selectors(q)?;
    let limit = match q.get("limit") {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
    }
    .filter(|l| *l > 0);
    let after = match q.get("continue").filter(|s| !s.is_empty()) {
        Some(token) => Some(decode_continue(token)?),
        None => None,
    };
    let st = ctx.store.lock();
    let rv = after.as_ref().map_or_else(|| st.current_rv(), |(rv, _)| *rv);
    // The page and one more object (is there a next page?) are copied out of the store.
    let mut page = st.page(
        &t.def.storage,
        t.ns.as_deref(),
        after.as_ref().map(|(_, key)| key),
        limit.map(|l| l + 1),
    );
    drop(st);
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    if let Some(limit) = limit
        && page.len() > limit
    {
        page.truncate(limit);
        if let Some(last) = page.last() {
            let key = (meta_str(last, "namespace"), meta_str(last, "name"));
            meta.insert("continue".into(), json!(encode_continue(rv, key)));
        }
    }
    let items: Vec<&Value> = page.iter().map(|o| &**o).collect();
    let (kind, api_version) = match t.view {
        View::Metadata => ("PartialObjectMetadataList".to_owned(), "meta.k8s.io/v1".to_owned()),
        View::Full => (format!("{}List", t.def.kind), t.def.api_version()),
    };
    let body = ListBody {
        kind: &kind,
        api_version: &api_version,
        metadata: &meta,
        items: &items,
        view: t.view,
    };
    Ok(Answer::json(200, serde_json::to_vec(&body).unwrap_or_default()))
}

/// A list response, serialised straight from the stored items (each with its `apiVersion` and
/// `kind`, which the real server leaves out of lists of built-in types).
struct ListBody<'a> {
    kind: &'a str,
    api_version: &'a str,
    metadata: &'a Map<String, Value>,
    items: &'a [&'a Value],
    view: View,
}

impl Serialize for ListBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("apiVersion", self.api_version)?;
        m.serialize_entry("items", &ListItems(self))?;
        m.serialize_entry("kind", self.kind)?;
        m.serialize_entry("metadata", self.metadata)?;
        m.end()
    }
}

struct ListItems<'a>(&'a ListBody<'a>);

impl Serialize for ListItems<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let body = self.0;
        let mut seq = s.serialize_seq(Some(body.items.len()))?;
        for item in body.items {
            match body.view {
                View::Metadata => seq.serialize_element(&PartialMetadataRef(item))?,
                View::Full => seq.serialize_element(item)?,
            }
        }
        seq.end()
    }
}

/// A watch from `resourceVersion` (replaying the history after it, or a 410 `ERROR` event
/// when it is older than the history), or from the current state (`""` or `"0"`: an ADDED
/// event per object first).
fn watch(ctx: &Ctx, t: &Target<'_>, req: &Req<'_>) -> Result<Response<Body>, ApiError> {
    let q = req.query;
    refuse_selectors(q)?;
    let timeout = match q.get("timeoutSeconds") {
        Some(s) if !s.is_empty() => Duration::from_secs(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {s:?}")))?,
        ),
        _ => watch::DEFAULT_TIMEOUT,
    };
    let spec = WatchSpec {
        def: t.def.clone(),
        view: t.view,
        bookmarks: q.flag("allowWatchBookmarks"),
        timeout,
    };
    let rv = q.get("resourceVersion").unwrap_or("");
    let ns = t.ns.as_deref();
    let mut st = ctx.store.lock();
    let start = if rv.is_empty() || rv == "0" {
        let current = st.current_rv();
        Start::Snapshot {
            objects: st.list(&t.def.storage, ns),
            rv: current,
        }
    } else {
        let from = rv
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
        match st.history_since(&t.def.storage, ns, from) {
            Ok(records) => Start::Resume { records, rv: from },
            Err(TooOld { oldest }) => {
                drop(st);
                // Upstream answers 200 and a single ERROR event; clients relist on 410.
                let expired = ApiError::expired(format!("too old resource version: {from} ({oldest})"));
                return Ok(stream_response(watch::error_stream(&expired)));
            }
        }
    };
    let (id, rx) = st.register_watcher(&t.def.storage, ns);
    drop(st);
    Ok(stream_response(watch::stream(ctx.store.clone(), spec, start, id, rx)))
}

fn stream_response(body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

// ---------------------------------------------------------------- shared write steps

/// Parses a create/update body (JSON).
fn parse_body(req: &Req<'_>) -> Result<Value, ApiError> {
    let ct = req.content_type.unwrap_or("application/json");
    if !matches!(
        ct.split(';').next().unwrap_or("").trim(),
        "application/json" | "" | "*/*"
    ) {
        return Err(ApiError::unsupported_media_type(ct, &["application/json"]));
    }
    let v: Value = serde_json::from_slice(req.body)
        .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the body of the request must be an object"));
    }
    Ok(v)
}

/// Checks/fills `apiVersion` and `kind` against the addressed resource.
fn check_type(t: &Target<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = t.def.api_version();
    let m = ensure_object(obj);
    match m.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        _ => {}
    }
    match m.get("kind").and_then(Value::as_str) {
        Some(k) if k != t.def.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                t.def.kind
            )));
        }
        _ => {}
    }
    m.insert("apiVersion".into(), json!(want_av));
    m.insert("kind".into(), json!(t.def.kind));
    Ok(())
}

/// Checks the body's namespace against the URL's and fills it in.
fn check_namespace(t: &Target<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let meta = metadata_mut(obj);
    match (
        &t.ns,
        meta.get("namespace").and_then(Value::as_str).filter(|s| !s.is_empty()),
    ) {
        (Some(url_ns), Some(body_ns)) if url_ns != body_ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        (Some(url_ns), _) => {
            meta.insert("namespace".into(), json!(url_ns));
            Ok(())
        }
        (None, _) => {
            meta.remove("namespace");
            Ok(())
        }
    }
}

/// Whether anything outside `metadata` (and `status`, when it has its own subresource)
/// differs: the change that bumps `metadata.generation`.
fn spec_changed(t: &Target<'_>, a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a != b;
    };
    let counted =
        |k: &str| !(matches!(k, "metadata" | "apiVersion" | "kind") || t.def.status_subresource && k == "status");
    let a_fields = a.iter().filter(|(k, _)| counted(k));
    a_fields.clone().count() != b.keys().filter(|k| counted(k)).count()
        || a_fields.clone().any(|(k, v)| b.get(k) != Some(v))
}

/// Makes `new` equal to `current` except for `status` (what a write to the status
/// subresource may change), copying only the fields that differ.
fn reset_all_but_status(new: &mut Value, current: &Value) {
    let (Value::Object(n), Value::Object(c)) = (&mut *new, current) else {
        let status = new.get("status").cloned();
        *new = current.clone();
        match status {
            Some(s) => ensure_object(new).insert("status".into(), s),
            None => ensure_object(new).remove("status"),
        };
        return;
    };
    n.retain(|k, _| k == "status" || c.contains_key(k));
    for (k, v) in c {
        if k != "status" && n.get(k) != Some(v) {
            n.insert(k.clone(), v.clone());
        }
    }
}

/// Keeps the registry in step with CRD writes (same critical section as the write).
fn sync_crd(st: &mut State, def: &ResourceDef, stored: &Value) {
    if def.behaviour == Kind::CustomResourceDefinition
        && let Ok(new_def) = Registry::def_from_crd(stored)
    {
        st.registry.upsert_custom(new_def);
    }
}

// ---------------------------------------------------------------- create

fn create(ctx: &Ctx, t: &Target<'_>, req: &Req<'_>) -> Result<Answer, ApiError> {
    let mut obj = parse_body(req)?;
    check_type(t, &mut obj)?;
    check_namespace(t, &mut obj)?;
    let name = meta_str(&obj, "name").to_owned();
    if name.is_empty() {
        return Err(ApiError::bad_request("metadata.name is required"));
    }
    {
        let meta = metadata_mut(&mut obj);
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        for f in ["managedFields", "selfLink", "generation", "resourceVersion"] {
            meta.remove(f);
        }
        if t.def.tracks_generation() {
            meta.insert("generation".into(), json!(1));
        }
    }
    if t.def.status_subresource {
        ensure_object(&mut obj).remove("status");
    }
    let gr = t.def.group_resource();
    let mut st = ctx.store.lock();
    let stored = st.create(&t.def.storage, obj).map_err(|e| match e {
        WriteError::AlreadyExists => ApiError::already_exists(&gr, &name),
        _ => ApiError::internal("unexpected storage error"),
    })?;
    sync_crd(&mut st, &t.def, &stored);
    drop(st);
    Ok(Answer::json(201, t.render(&stored)))
}

// ---------------------------------------------------------------- patch

/// A JSON merge patch (RFC 7386), the only patch type served.
fn patch(ctx: &Ctx, t: &Target<'_>, req: &Req<'_>) -> Result<Answer, ApiError> {
    let ct = req.content_type.unwrap_or("");
    if ct.split(';').next().unwrap_or("").trim() != "application/merge-patch+json" {
        return Err(ApiError::unsupported_media_type(ct, &["application/merge-patch+json"]));
    }
    let doc: Value =
        serde_json::from_slice(req.body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !doc.is_object() {
        return Err(ApiError::bad_request("the patch must be a JSON object"));
    }
    // A resourceVersion the client itself demanded (a patch that sets it).
    let precondition = doc.pointer("/metadata/resourceVersion").and_then(Value::as_str);
    write_existing(ctx, t, precondition, |current| {
        let mut obj = current.clone();
        json_patch::merge(&mut obj, &doc);
        let patched_name = meta_str(&obj, "name");
        if patched_name != meta_str(current, "name") {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({patched_name}) does not match the name on the URL ({})",
                meta_str(current, "name")
            )));
        }
        Ok(obj)
    })
}

/// The update loop (upstream `GuaranteedUpdate`): read, propose, commit if nobody wrote in
/// between, else retry (or 409 when the client pinned the version, `precondition`).
fn write_existing(
    ctx: &Ctx,
    t: &Target<'_>,
    precondition: Option<&str>,
    propose: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Answer, ApiError> {
    let name = t.name.unwrap_or("");
    let gr = t.def.group_resource();
    loop {
        let stored = ctx
            .store
            .lock()
            .get(&t.def.storage, t.ns_key(), name)
            .ok_or_else(|| t.not_found(name))?;
        let current_rv = rv_of(&stored);
        let current: &Value = &stored;
        let mut new = propose(current)?;
        let pinned = precondition.is_some();
        if let Some(p) = precondition
            && p != current_rv.to_string()
        {
            return Err(ApiError::stale(&gr, name));
        }
        check_type(t, &mut new)?;
        check_namespace(t, &mut new)?;

        // System-owned metadata comes from the stored object.
        {
            let cur_meta = current.get("metadata");
            let meta = metadata_mut(&mut new);
            for f in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
                match cur_meta.and_then(|m| m.get(f)) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.remove("managedFields");
            meta.remove("selfLink");
        }
        if t.sub == Some("status") {
            // A status write changes status only (upstream statusStrategy.PrepareForUpdate).
            reset_all_but_status(&mut new, current);
        } else if t.def.status_subresource {
            // ... and writes to the main resource leave status alone.
            match current.get("status") {
                Some(s) => ensure_object(&mut new).insert("status".into(), s.clone()),
                None => ensure_object(&mut new).remove("status"),
            };
        }
        if t.def.tracks_generation() && spec_changed(t, &new, current) {
            let g = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            metadata_mut(&mut new).insert("generation".into(), json!(g + 1));
        }

        // A no-op write stores nothing, bumps nothing and notifies nobody.
        if new == *current {
            return Ok(Answer::json(200, t.render(current)));
        }
        let mut st = ctx.store.lock();
        match st.update(&t.def.storage, new, current_rv) {
            Ok(stored) => {
                sync_crd(&mut st, &t.def, &stored);
                drop(st);
                return Ok(Answer::json(200, t.render(&stored)));
            }
            Err(WriteError::Conflict) if pinned => return Err(ApiError::stale(&gr, name)),
            Err(WriteError::Conflict | WriteError::NotFound) => continue, // raced: read again
            Err(WriteError::AlreadyExists) => {
                return Err(ApiError::internal("unexpected storage error"));
            }
        }
    }
}
