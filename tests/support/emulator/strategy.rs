//! Per-type defaults applied to objects (in their request view) before they are stored, after
//! the upstream registry strategies, reduced to what clients observe. No validation.

use serde_json::json;

use super::registry::{Kind, ResourceDef};
use super::util::{ensure_object, meta_str, metadata_mut};

/// Normalisation on create.
pub fn prepare_create(def: &ResourceDef, obj: &mut serde_json::Value) {
    match def.behaviour {
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
        _ => {}
    }
}

/// Normalisation on update.
pub fn prepare_update(def: &ResourceDef, new: &mut serde_json::Value) {
    if def.behaviour == Kind::Namespace {
        normalize_namespace(new);
    }
}

fn normalize_namespace(obj: &mut serde_json::Value) {
    let name = meta_str(obj, "name").to_owned();
    let meta = metadata_mut(obj);
    let labels = ensure_object(meta.entry("labels").or_insert_with(|| json!({})));
    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
}
