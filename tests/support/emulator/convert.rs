//! Between the stored form of an object and the API view a request asked for: the
//! `apiVersion` of the requested version, `events.k8s.io/v1` ⇄ core `v1` events (stored as
//! the latter), and `meta.k8s.io/v1` `PartialObjectMetadata` for metadata-only clients.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
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
pub fn to_storage(def: &ResourceDef, obj: Value) -> Value {
    match def.behaviour {
        Kind::EventsV1Event => {
            let mut v = obj;
            if let Value::Object(m) = &mut v {
                for (from, to) in EVENT_FIELDS {
                    if let Some(x) = m.remove(*from) {
                        m.insert((*to).to_owned(), x);
                    }
                }
                m.insert("apiVersion".into(), json!("v1"));
                m.insert("kind".into(), json!("Event"));
            }
            v
        }
        _ => obj,
    }
}

/// Whether the view of stored `obj` as `def` at `version` is `obj` itself: no field renames,
/// and it already carries that `apiVersion` and `kind` (the common case, one served version).
pub fn view_is_stored(def: &ResourceDef, version: &str, obj: &Value) -> bool {
    if def.behaviour == Kind::EventsV1Event || obj.get("kind").and_then(Value::as_str) != Some(def.kind.as_str()) {
        return false;
    }
    let Some(av) = obj.get("apiVersion").and_then(Value::as_str) else {
        return false;
    };
    if def.group.is_empty() {
        av == version
    } else {
        av.strip_prefix(def.group.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            == Some(version)
    }
}

/// [`from_storage`] without the copy when the view is the stored object itself.
pub fn view_of<'a>(def: &ResourceDef, version: &str, obj: &'a Value) -> Cow<'a, Value> {
    if view_is_stored(def, version, obj) {
        Cow::Borrowed(obj)
    } else {
        Cow::Owned(from_storage(def, version, obj))
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
