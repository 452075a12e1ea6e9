//! Between the stored form of an object and the API view a request asked for: the
//! `apiVersion` of the requested version, `events.k8s.io/v1` ⇄ core `v1` events (stored as
//! the latter), and `meta.k8s.io/v1` `PartialObjectMetadata` for metadata-only clients.

use serde_json::{Map, Value, json};

use super::registry::{Kind, ResourceDef};

/// `events.k8s.io/v1` field ⇄ core `v1` field, for the renamed fields.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    let Value::Object(map) = obj else {
        return obj.clone();
    };
    let mut out = map.clone();
    for (from, to) in pairs {
        if let Some(v) = out.remove(from) {
            out.insert(to.to_owned(), v);
        }
    }
    Value::Object(out)
}

/// The storage form of an object sent to resource `def` (request view → storage).
pub fn to_storage(def: &ResourceDef, obj: &Value) -> Value {
    match def.behaviour {
        Kind::EventsV1Event => {
            let mut v = rename(obj, EVENT_FIELDS.iter().copied());
            if let Value::Object(m) = &mut v {
                m.insert("apiVersion".into(), json!("v1"));
                m.insert("kind".into(), json!("Event"));
            }
            v
        }
        _ => obj.clone(),
    }
}

/// The view of a stored object as resource `def` at `version` (storage → request view).
pub fn from_storage(def: &ResourceDef, version: &str, obj: &Value) -> Value {
    let mut v = match def.behaviour {
        Kind::EventsV1Event => rename(obj, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a))),
        _ => obj.clone(),
    };
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), json!(def.api_version(version)));
        m.insert("kind".into(), json!(def.kind));
    }
    v
}

/// A `PartialObjectMetadata` holding only the object's metadata.
pub fn to_partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new())),
    })
}
