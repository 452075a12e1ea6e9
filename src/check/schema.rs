//! The CRD's OpenAPI schema applied to a manifest as kube-apiserver applies it on create with
//! strict field validation (`kubectl apply --validate=strict`, the default of kubectl ≥ 1.27):
//! unknown fields at any depth (also in metadata and status), types, enums, required fields,
//! lengths, sizes, bounds, list uniqueness, and the `x-kubernetes-validations` rules ([`super::cel`]).
//!
//! The schema is the one this binary generates (`gitprovider-operator crd`, src/api.rs), never a
//! copy. As the API server does: `null` for a field that is not `nullable` counts as absent
//! (then defaulted), and `status` is only searched for unknown fields (the status subresource
//! drops it on create before validation). A schema keyword this module does not understand
//! fails `the_generated_schema_uses_only_known_keywords`, so none is ignored silently.

use super::cel;
use super::finding::{Rule, Violation};
use crate::api::GitProviderConnection;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;
use serde_json::{Map, Value, json};

/// How much of a subtree is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Everything the schema says.
    Full,
    /// Unknown fields only (status).
    UnknownFieldsOnly,
    /// As Go's JSON decoder of a typed struct (metadata): unknown fields and types; `null` is
    /// always the zero value.
    Decode,
}

/// Marks the root's `metadata` property: validated as ObjectMeta.
const METADATA: &str = "x-check-metadata";
/// Marks the root's `status` property.
const STATUS: &str = "x-check-status";

/// Keywords whose meaning is applied.
pub const APPLIED: &[&str] = &[
    "type",
    "properties",
    "additionalProperties",
    "required",
    "enum",
    "nullable",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "items",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
];
/// Keywords with nothing to check on create: documentation, defaults (valid by construction),
/// and `format` (only in status, which is dropped on create).
pub const INERT: &[&str] = &["description", "title", "default", "format"];

/// The schema of the served versions of the CRD.
pub struct Schema {
    /// Served version → its openAPIV3Schema, with apiVersion, kind, metadata and status marked.
    versions: Vec<(String, Value)>,
    /// ObjectMeta, as k8s-openapi describes it.
    metadata: Value,
}

impl Schema {
    /// The schema this binary generates.
    pub fn generated() -> Schema {
        let crd = GitProviderConnection::crd();
        let versions = crd
            .spec
            .versions
            .into_iter()
            .filter(|v| v.served)
            .filter_map(|v| {
                let schema = serde_json::to_value(v.schema?.open_api_v3_schema?).ok()?;
                Some((v.name, mark_root(schema)))
            })
            .collect();
        let generator = schemars::generate::SchemaSettings::openapi3()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        let metadata = generator.into_root_schema_for::<ObjectMeta>().to_value();
        Schema { versions, metadata }
    }

    /// The served versions, first the first the CRD lists.
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        self.versions.iter().map(|(name, _)| name.as_str())
    }

    /// The root schema of `version`, if served.
    pub fn root(&self, version: &str) -> Option<&Value> {
        self.versions.iter().find(|(name, _)| name == version).map(|(_, s)| s)
    }

    /// Everything the API server would refuse in `object`, a GitProviderConnection of `version`
    /// (a served one; others yield nothing).
    pub fn validate(&self, version: &str, object: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Some(root) = self.root(version) {
            self.node(object, root, "", Mode::Full, &mut out);
        }
        out
    }

    fn node(&self, value: &Value, schema: &Value, path: &str, mode: Mode, out: &mut Vec<Violation>) {
        if schema.get(METADATA).is_some() {
            let before = out.len();
            self.node(value, &self.metadata, path, Mode::Decode, out);
            if out.len() == before {
                super::metadata::check(value, out);
            }
            return;
        }
        let mode = if schema.get(STATUS).is_some() {
            Mode::UnknownFieldsOnly
        } else {
            mode
        };
        if value.is_null() && (is_nullable(schema) || mode != Mode::Full) {
            return;
        }
        let full = mode == Mode::Full;
        if let Some(expected) = schema.get("type").and_then(Value::as_str)
            && !has_type(value, expected)
        {
            if mode != Mode::UnknownFieldsOnly {
                out.push(schema_problem(
                    path,
                    format!("must be of type {expected}, not {}", type_name(value)),
                ));
            }
            return;
        }
        if full
            && let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            out.push(schema_problem(
                path,
                format!("unsupported value {value}; supported values: {}", list.join(", ")),
            ));
            return;
        }
        match value {
            Value::Object(fields) => self.object(fields, schema, path, mode, out),
            Value::Array(items) => self.array(items, schema, path, mode, out),
            Value::String(text) if full => bounds(
                path,
                text.chars().count(),
                schema,
                "minLength",
                "maxLength",
                "characters",
                out,
            ),
            Value::Number(number) if full => {
                if let Some(n) = number.as_f64() {
                    if schema.get("minimum").and_then(Value::as_f64).is_some_and(|min| n < min) {
                        out.push(schema_problem(path, format!("must be at least {}", schema["minimum"])));
                    }
                    if schema.get("maximum").and_then(Value::as_f64).is_some_and(|max| n > max) {
                        out.push(schema_problem(path, format!("must be at most {}", schema["maximum"])));
                    }
                }
            }
            _ => {}
        }
        if full {
            validation_rules(value, schema, path, out);
        }
    }

    fn object(&self, fields: &Map<String, Value>, schema: &Value, path: &str, mode: Mode, out: &mut Vec<Violation>) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        for (name, value) in fields {
            let field = join(path, name);
            match (properties.and_then(|p| p.get(name)), additional) {
                // `null` where the schema does not allow it is pruned: as if absent
                (Some(property), _) if value.is_null() && !is_nullable(property) => {}
                (Some(property), _) => self.node(value, property, &field, mode, out),
                (None, Some(Value::Bool(true))) => {}
                (None, Some(schema @ Value::Object(_))) => self.node(value, schema, &field, mode, out),
                _ if preserve => {}
                _ => out.push(Violation {
                    message: format!("unknown field {field:?}"),
                    field,
                    rule: Rule::UnknownField,
                }),
            }
        }
        if mode != Mode::Full {
            return;
        }
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = required.as_str() else { continue };
            let present = match fields.get(name) {
                None => false,
                Some(Value::Null) => properties.and_then(|p| p.get(name)).is_some_and(is_nullable),
                Some(_) => true,
            };
            if !present {
                out.push(schema_problem(&join(path, name), "Required value".to_owned()));
            }
        }
    }

    fn array(&self, items: &[Value], schema: &Value, path: &str, mode: Mode, out: &mut Vec<Violation>) {
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.node(item, item_schema, &format!("{path}[{i}]"), mode, out);
            }
        }
        if mode != Mode::Full {
            return;
        }
        bounds(path, items.len(), schema, "minItems", "maxItems", "items", out);
        let key_of = |item: &Value| -> Value {
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => {
                    let keys = schema.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
                    Value::Array(
                        keys.into_iter()
                            .flatten()
                            .map(|k| item.get(k.as_str().unwrap_or_default()).cloned().unwrap_or(Value::Null))
                            .collect(),
                    )
                }
                _ => item.clone(),
            }
        };
        if matches!(
            schema.get("x-kubernetes-list-type").and_then(Value::as_str),
            Some("set" | "map")
        ) {
            let mut seen: Vec<Value> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let key = key_of(item);
                if seen.contains(&key) {
                    out.push(schema_problem(
                        &format!("{path}[{i}]"),
                        format!("duplicate value {key}"),
                    ));
                } else {
                    seen.push(key);
                }
            }
        }
    }
}

/// The root schema with the fields every object has: apiVersion and kind (strings), metadata
/// (ObjectMeta) and status (unknown fields only).
fn mark_root(mut root: Value) -> Value {
    if let Some(properties) = root.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("apiVersion".to_owned(), json!({"type": "string"}));
        properties.insert("kind".to_owned(), json!({"type": "string"}));
        properties.insert("metadata".to_owned(), json!({METADATA: true}));
        if let Some(status) = properties.get_mut("status").and_then(Value::as_object_mut) {
            status.insert(STATUS.to_owned(), Value::Bool(true));
        }
    }
    root
}

fn validation_rules(value: &Value, schema: &Value, path: &str, out: &mut Vec<Violation>) {
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
        let message = rule.get("message").and_then(Value::as_str).unwrap_or(text);
        let field = path.to_owned();
        match cel::holds(text, value) {
            Some(true) => {}
            Some(false) => out.push(Violation {
                message: format!("{field}: {message}"),
                field,
                rule: Rule::ValidationRule,
            }),
            None => out.push(Violation {
                message: format!("{field}: the validation rule {text:?} is not known to this check; upgrade it"),
                field,
                rule: Rule::ValidationRule,
            }),
        }
    }
}

fn bounds(path: &str, size: usize, schema: &Value, min: &str, max: &str, unit: &str, out: &mut Vec<Violation>) {
    let size = size as u64;
    if let Some(min) = schema.get(min).and_then(Value::as_u64)
        && size < min
    {
        let unit = if size == 1 { unit.trim_end_matches('s') } else { unit };
        out.push(schema_problem(
            path,
            format!("has {size} {unit}; at least {min} required"),
        ));
    }
    if let Some(max) = schema.get(max).and_then(Value::as_u64)
        && size > max
    {
        out.push(schema_problem(
            path,
            format!("has {size} {unit}; at most {max} allowed"),
        ));
    }
}

fn is_nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

/// `value` without the `null` fields, as the typed spec reads it after the API server pruned
/// them (`Option` fields are absent either way; the rest take their defaults).
pub fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn schema_problem(path: &str, message: String) -> Violation {
    let shown = if path.is_empty() { "the object" } else { path };
    Violation {
        message: format!("{shown}: {message}"),
        field: path.to_owned(),
        rule: Rule::Schema,
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn has_type(value: &Value, expected: &str) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => value.is_number(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords(schema: &Value, found: &mut Vec<String>) {
        let Some(map) = schema.as_object() else { return };
        for (key, value) in map {
            if key == "properties" {
                for property in value.as_object().into_iter().flat_map(|p| p.values()) {
                    keywords(property, found);
                }
            } else if key == METADATA || key == STATUS {
            } else {
                found.push(key.clone());
                if key == "items" || key == "additionalProperties" {
                    keywords(value, found);
                }
            }
        }
    }

    #[test]
    fn the_generated_schema_uses_only_known_keywords() {
        let schema = Schema::generated();
        assert_eq!(schema.versions().collect::<Vec<_>>(), ["v1alpha1"]);
        let mut found = Vec::new();
        for (_, root) in &schema.versions {
            keywords(root, &mut found);
        }
        let unknown: Vec<&String> = found
            .iter()
            .filter(|k| !APPLIED.contains(&k.as_str()) && !INERT.contains(&k.as_str()))
            .collect();
        assert!(unknown.is_empty(), "keywords check does not apply: {unknown:?}");
        // `format` has no effect only because it stays under status
        let spec = &schema.versions[0].1["properties"]["spec"];
        let mut in_spec = Vec::new();
        keywords(spec, &mut in_spec);
        assert!(
            !in_spec.iter().any(|k| k == "format"),
            "format under spec is not checked"
        );
    }

    #[test]
    fn every_rule_of_the_crd_is_known() {
        fn rules(schema: &Value, found: &mut Vec<String>) {
            match schema {
                Value::Object(map) => {
                    for (key, value) in map {
                        if key == "x-kubernetes-validations" {
                            for rule in value.as_array().into_iter().flatten() {
                                found.push(rule["rule"].as_str().unwrap_or_default().to_owned());
                            }
                        } else {
                            rules(value, found);
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|i| rules(i, found)),
                _ => {}
            }
        }
        let schema = Schema::generated();
        let mut found = Vec::new();
        rules(&schema.versions[0].1, &mut found);
        assert_eq!(found.len(), 7, "{found:?}");
        for rule in found {
            assert!(cel::holds(&rule, &json!("x")).is_some(), "no Rust twin for {rule}");
        }
    }

    #[test]
    fn metadata_is_object_meta() {
        let schema = Schema::generated();
        let properties = schema.metadata["properties"].as_object().unwrap();
        for field in [
            "name",
            "namespace",
            "labels",
            "annotations",
            "generateName",
            "ownerReferences",
        ] {
            assert!(properties.contains_key(field), "{field}");
        }
        assert!(!serde_json::to_string(&schema.metadata).unwrap().contains("$ref"));
    }
}
