//! Per-type behaviour applied to objects (in their request view) before they are stored:
//! defaults and normalisation (`prepare_*`) and validation (`validate`), after the upstream
//! registry strategies, reduced to what clients observe.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::error::FieldError;
use super::registry::{Kind, Registry, ResourceDef};
use super::selectors::{is_dns_label, is_dns_subdomain, is_label_value, is_qualified_name};
use super::util::{b64_encode, ensure_object, meta_str, metadata_mut};

/// Normalisation on create.
pub fn prepare_create(def: &ResourceDef, obj: &mut Value) {
    match def.behaviour {
        Kind::Secret => normalize_secret(obj),
        Kind::Namespace => {
            normalize_namespace(obj);
            let root = ensure_object(obj);
            let spec = ensure_object(root.entry("spec").or_insert_with(|| json!({})));
            spec.entry("finalizers").or_insert_with(|| json!(["kubernetes"]));
            root.insert("status".into(), json!({"phase": "Active"}));
        }
        Kind::Service => {
            let spec = ensure_object(ensure_object(obj).entry("spec").or_insert_with(|| json!({})));
            spec.entry("type").or_insert_with(|| json!("ClusterIP"));
            spec.entry("sessionAffinity").or_insert_with(|| json!("None"));
        }
        Kind::ValidatingWebhookConfiguration => default_webhooks(obj),
        Kind::CustomResourceDefinition => {
            let status = crd_status(obj);
            ensure_object(obj).insert("status".into(), status);
        }
        _ => {}
    }
}

/// Normalisation on update (`old` is the stored object in the same view).
pub fn prepare_update(def: &ResourceDef, old: &Value, new: &mut Value) {
    match def.behaviour {
        Kind::Secret => normalize_secret(new),
        Kind::Namespace => normalize_namespace(new),
        Kind::ValidatingWebhookConfiguration => default_webhooks(new),
        Kind::CustomResourceDefinition => {
            // Established as soon as accepted; names follow the spec.
            let mut status = old.get("status").cloned().unwrap_or_else(|| json!({}));
            let fresh = crd_status(new);
            ensure_object(&mut status).insert("acceptedNames".into(), fresh["acceptedNames"].clone());
            ensure_object(&mut status).insert("conditions".into(), fresh["conditions"].clone());
            ensure_object(new).insert("status".into(), status);
        }
        _ => {}
    }
}

/// `stringData` is write-only: merged into `data` (base64) and dropped; `type` defaults to Opaque.
fn normalize_secret(obj: &mut Value) {
    let root = ensure_object(obj);
    if let Some(Value::Object(sd)) = root.remove("stringData") {
        let data = ensure_object(root.entry("data").or_insert_with(|| json!({})));
        for (k, v) in sd {
            if let Value::String(s) = v {
                data.insert(k, json!(b64_encode(s.as_bytes())));
            }
        }
    }
    root.entry("type").or_insert_with(|| json!("Opaque"));
}

fn normalize_namespace(obj: &mut Value) {
    let name = meta_str(obj, "name").to_owned();
    let meta = metadata_mut(obj);
    let labels = ensure_object(meta.entry("labels").or_insert_with(|| json!({})));
    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
}

fn default_webhooks(obj: &mut Value) {
    let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for h in hooks {
        let h = ensure_object(h);
        h.entry("failurePolicy").or_insert_with(|| json!("Fail"));
        h.entry("matchPolicy").or_insert_with(|| json!("Equivalent"));
        h.entry("namespaceSelector").or_insert_with(|| json!({}));
        h.entry("objectSelector").or_insert_with(|| json!({}));
        h.entry("timeoutSeconds").or_insert_with(|| json!(10));
        if let Some(rules) = h.get_mut("rules").and_then(Value::as_array_mut) {
            for r in rules {
                ensure_object(r).entry("scope").or_insert_with(|| json!("*"));
            }
        }
        if let Some(svc) = h.get_mut("clientConfig").and_then(|c| c.get_mut("service")) {
            ensure_object(svc).entry("port").or_insert_with(|| json!(443));
        }
    }
}

/// The status the apiextensions controllers would settle on: names accepted, established.
fn crd_status(crd: &Value) -> Value {
    let now = super::util::now_rfc3339();
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": storage,
    })
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Validation of the object about to be stored; `old` is the stored object on update.
pub fn validate(def: &ResourceDef, obj: &Value, old: Option<&Value>, registry: &Registry) -> Vec<FieldError> {
    let mut errs = validate_metadata(def, obj);
    if let Some(old) = old {
        validate_finalizer_additions(old, obj, &mut errs);
    }
    match def.behaviour {
        Kind::Secret | Kind::ConfigMap => validate_config_data(def, obj, old, &mut errs),
        Kind::CoreEvent => {
            let ns = meta_str(obj, "namespace");
            if let Some(ino) = obj.pointer("/involvedObject/namespace").and_then(Value::as_str)
                && !ino.is_empty()
                && ino != ns
            {
                errs.push(FieldError::invalid(
                    "involvedObject.namespace",
                    &json!(ino),
                    "does not match event.namespace",
                ));
            }
        }
        Kind::EventsV1Event => validate_events_v1(obj, old.is_none(), &mut errs),
        Kind::CustomResourceDefinition => validate_crd(obj, old, registry, &mut errs),
        Kind::ValidatingWebhookConfiguration => validate_webhooks(obj, &mut errs),
        _ => {}
    }
    errs
}

fn validate_metadata(def: &ResourceDef, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta_str(obj, "name");
    if name.is_empty() {
        errs.push(FieldError::required("metadata.name"));
        // Upstream says "name or generateName is required"; generateName was already applied.
    } else if def.behaviour == Kind::Namespace {
        if !is_dns_label(name) {
            errs.push(FieldError::invalid("metadata.name", &json!(name), LABEL_MSG));
        }
    } else if !is_dns_subdomain(name) {
        errs.push(FieldError::invalid("metadata.name", &json!(name), SUBDOMAIN_MSG));
    }
    let meta = obj.get("metadata");
    if let Some(labels) = meta.and_then(|m| m.get("labels")).and_then(Value::as_object) {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                errs.push(FieldError::invalid("metadata.labels", &json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                _ => errs.push(FieldError::invalid("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")),
            }
        }
    }
    if let Some(ann) = meta.and_then(|m| m.get("annotations")).and_then(Value::as_object) {
        let mut total = 0usize;
        for (k, v) in ann {
            if !is_qualified_name(k) {
                errs.push(FieldError::invalid("metadata.annotations", &json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            if !v.is_string() {
                errs.push(FieldError::invalid(
                    format!("metadata.annotations.{k}"),
                    v,
                    "annotation values must be strings",
                ));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            errs.push(FieldError::too_long("metadata.annotations", 262144, "bytes"));
        }
    }
    if let Some(fins) = meta.and_then(|m| m.get("finalizers")).and_then(Value::as_array) {
        for (i, f) in fins.iter().enumerate() {
            match f.as_str() {
                Some(s) if is_qualified_name(s) => {}
                _ => errs.push(FieldError::invalid(format!("metadata.finalizers[{i}]"), f, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")),
            }
        }
    }
    errs
}

fn finalizers(obj: &Value) -> BTreeSet<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn validate_finalizer_additions(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if meta_str(old, "deletionTimestamp").is_empty() {
        return;
    }
    let added: Vec<String> = finalizers(new).difference(&finalizers(old)).cloned().collect();
    if !added.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.finalizers",
            &format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
        ));
    }
}

fn validate_config_data(def: &ResourceDef, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    for field in ["data", "binaryData"] {
        if let Some(m) = obj.get(field).and_then(Value::as_object) {
            for k in m.keys() {
                let ok = !k.is_empty()
                    && k.len() <= 253
                    && k.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
                if !ok {
                    errs.push(FieldError::invalid(format!("{field}[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
                }
            }
        }
    }
    let Some(old) = old else { return };
    if def.behaviour == Kind::Secret && old.get("type") != obj.get("type") {
        errs.push(FieldError::invalid(
            "type",
            obj.get("type").unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
    if old.get("immutable") == Some(&Value::Bool(true)) {
        if obj.get("immutable") != Some(&Value::Bool(true)) {
            errs.push(FieldError::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        for field in ["data", "binaryData"] {
            if old.get(field) != obj.get(field) {
                errs.push(FieldError::forbidden(
                    field,
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
}

fn validate_events_v1(obj: &Value, creating: bool, errs: &mut Vec<FieldError>) {
    let s = |f: &str| obj.get(f).and_then(Value::as_str).unwrap_or("");
    if creating && obj.get("eventTime").is_none_or(Value::is_null) {
        errs.push(FieldError::required("eventTime"));
    }
    let rc = s("reportingController");
    if rc.is_empty() {
        errs.push(FieldError::required("reportingController"));
    } else if !is_qualified_name(rc) {
        errs.push(FieldError::invalid("reportingController", &json!(rc), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }
    for (field, max) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let v = s(field);
        if v.is_empty() {
            errs.push(FieldError::required(field));
        } else if v.len() > max {
            errs.push(FieldError::too_long(field, max as u64, "bytes"));
        }
    }
    let ns = super::util::meta_str(obj, "namespace");
    if let Some(rns) = obj.pointer("/regarding/namespace").and_then(Value::as_str)
        && !rns.is_empty()
        && rns != ns
    {
        errs.push(FieldError::invalid(
            "regarding.namespace",
            &json!(rns),
            "does not match event.namespace",
        ));
    }
    if s("note").len() > 1024 {
        errs.push(FieldError::too_long("note", 1024, "bytes"));
    }
    let ty = s("type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            &json!(ty),
            &format!("has invalid value: {ty}"),
        ));
    }
    if let Some(series) = obj.get("series").filter(|s| !s.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                "series.count",
                series.get("count").unwrap_or(&Value::Null),
                "should be at least 2",
            ));
        }
        if series.get("lastObservedTime").is_none_or(Value::is_null) {
            errs.push(FieldError::required("series.lastObservedTime"));
        }
    }
}

fn validate_crd(obj: &Value, old: Option<&Value>, registry: &Registry, errs: &mut Vec<FieldError>) {
    let def = match Registry::def_from_crd(obj) {
        Ok(d) => d,
        Err(why) => {
            errs.push(FieldError::invalid("spec", &Value::Null, &why));
            return;
        }
    };
    let want = format!("{}.{}", def.plural, def.group);
    if meta_str(obj, "name") != want {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(meta_str(obj, "name")),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match obj.pointer("/spec/scope").and_then(Value::as_str) {
        Some("Namespaced" | "Cluster") => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            &json!(other),
            &[json!("Cluster"), json!("Namespaced")],
        )),
    }
    let storage = obj.pointer("/spec/versions").and_then(Value::as_array).map_or(0, |vs| {
        vs.iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count()
    });
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            &json!(storage),
            "must have exactly one version marked as storage version",
        ));
    }
    if old.is_none()
        && registry
            .defs()
            .iter()
            .any(|d| d.group == def.group && d.plural == def.plural && d.behaviour != Kind::Custom)
    {
        errs.push(FieldError::invalid(
            "spec.names.plural",
            &json!(def.plural),
            "a built-in resource already has this name",
        ));
    }
    if let Some(old) = old
        && old.pointer("/spec/scope") != obj.pointer("/spec/scope")
    {
        errs.push(FieldError::invalid(
            "spec.scope",
            obj.pointer("/spec/scope").unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
}

fn validate_webhooks(obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(hooks) = obj.get("webhooks").and_then(Value::as_array) else {
        return;
    };
    let mut names = BTreeSet::new();
    for (i, h) in hooks.iter().enumerate() {
        let p = |f: &str| format!("webhooks[{i}].{f}");
        let name = h.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(p("name")));
        } else if !is_dns_subdomain(name) || name.split('.').count() < 3 {
            errs.push(FieldError::invalid(
                p("name"),
                &json!(name),
                "should be a domain with at least three segments separated by dots",
            ));
        } else if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(p("name"), &json!(name)));
        }
        match h.get("sideEffects").and_then(Value::as_str) {
            Some("None" | "NoneOnDryRun") => {}
            None => errs.push(FieldError::required(p("sideEffects"))),
            Some(other) => errs.push(FieldError::not_supported(
                p("sideEffects"),
                &json!(other),
                &[json!("None"), json!("NoneOnDryRun")],
            )),
        }
        let versions: Vec<&str> = h
            .get("admissionReviewVersions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if versions.is_empty() {
            errs.push(FieldError::required(p("admissionReviewVersions")));
        } else if !versions.iter().any(|v| *v == "v1" || *v == "v1beta1") {
            errs.push(FieldError::invalid(
                p("admissionReviewVersions"),
                &json!(versions),
                "must include at least one of v1, v1beta1",
            ));
        }
        let cc = h.get("clientConfig").cloned().unwrap_or(Value::Object(Map::new()));
        match (cc.get("url").and_then(Value::as_str), cc.get("service")) {
            (Some(_), Some(_)) | (None, None) => errs.push(FieldError {
                kind: super::error::FieldErrorKind::Required,
                field: p("clientConfig"),
                detail: "Required value: exactly one of url or service is required".into(),
            }),
            (Some(url), None) if !url.starts_with("https://") => errs.push(FieldError::invalid(
                p("clientConfig.url"),
                &json!(url),
                "'https' is the only allowed URL scheme",
            )),
            _ => {}
        }
        if let Some(t) = h.get("timeoutSeconds").and_then(Value::as_i64)
            && !(1..=30).contains(&t)
        {
            errs.push(FieldError::invalid(
                p("timeoutSeconds"),
                &json!(t),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
        match h.get("failurePolicy").and_then(Value::as_str) {
            Some("Fail" | "Ignore") | None => {}
            Some(other) => errs.push(FieldError::not_supported(
                p("failurePolicy"),
                &json!(other),
                &[json!("Fail"), json!("Ignore")],
            )),
        }
    }
}
