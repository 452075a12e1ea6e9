//! A CRD version's structural `openAPIV3Schema` applied to a custom resource the way the
//! apiextensions-apiserver does before storing it: prune unknown fields, drop nulls of
//! non-nullable fields, apply defaults, then validate. Not evaluated: `pattern` (no regex
//! engine here), `x-kubernetes-validations` (CEL), `oneOf`/`anyOf`/`allOf`/`not`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::error::FieldError;

/// A structural schema node, read once from its JSON (when the CRD is stored) so that
/// processing an object costs no lookups of schema keywords by name.
#[derive(Debug, Default)]
pub struct Schema {
    /// `type`, when it is a string.
    ty: Option<String>,
    nullable: bool,
    int_or_string: bool,
    /// `x-kubernetes-preserve-unknown-fields`, or `additionalProperties: true`.
    preserve_unknown: bool,
    embedded: bool,
    /// Whether there is a `properties` key at all (whatever its value).
    has_properties: bool,
    /// `properties`, when it is an object.
    properties: Option<BTreeMap<String, Schema>>,
    /// `additionalProperties`, when it is a schema (an object).
    additional: Option<Box<Schema>>,
    items: Option<Box<Schema>>,
    default: Option<Value>,
    required: Vec<String>,
    max_properties: Option<u64>,
    min_properties: Option<u64>,
    max_length: Option<u64>,
    min_length: Option<u64>,
    /// `format`, `""` when absent.
    format: String,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
    enum_values: Option<Vec<Value>>,
    max_items: Option<u64>,
    min_items: Option<u64>,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
}

impl Schema {
    /// Reads a schema node (and everything under it) from its JSON form.
    pub fn compile(v: &Value) -> Schema {
        let flag = |name: &str| v.get(name).and_then(Value::as_bool).unwrap_or(false);
        let u64_of = |name: &str| v.get(name).and_then(Value::as_u64);
        let f64_of = |name: &str| v.get(name).and_then(Value::as_f64);
        let strings = |x: Option<&Value>| -> Vec<String> {
            x.and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let additional = v.get("additionalProperties");
        Schema {
            ty: v.get("type").and_then(Value::as_str).map(str::to_owned),
            nullable: flag("nullable"),
            int_or_string: flag("x-kubernetes-int-or-string"),
            preserve_unknown: flag("x-kubernetes-preserve-unknown-fields") || additional == Some(&Value::Bool(true)),
            embedded: flag("x-kubernetes-embedded-resource"),
            has_properties: v.get("properties").is_some(),
            properties: v
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.iter().map(|(k, s)| (k.clone(), Schema::compile(s))).collect()),
            additional: additional
                .filter(|a| a.is_object())
                .map(|a| Box::new(Schema::compile(a))),
            items: v.get("items").map(|i| Box::new(Schema::compile(i))),
            default: v.get("default").cloned(),
            required: strings(v.get("required")),
            max_properties: u64_of("maxProperties"),
            min_properties: u64_of("minProperties"),
            max_length: u64_of("maxLength"),
            min_length: u64_of("minLength"),
            format: v.get("format").and_then(Value::as_str).unwrap_or("").to_owned(),
            minimum: f64_of("minimum"),
            maximum: f64_of("maximum"),
            exclusive_minimum: flag("exclusiveMinimum"),
            exclusive_maximum: flag("exclusiveMaximum"),
            enum_values: v.get("enum").and_then(Value::as_array).cloned(),
            max_items: u64_of("maxItems"),
            min_items: u64_of("minItems"),
            list_type: v
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .map(str::to_owned),
            list_map_keys: strings(v.get("x-kubernetes-list-map-keys")),
        }
    }

    /// The schema of field `k` of an object with this schema.
    fn field(&self, k: &str) -> Option<&Schema> {
        self.properties
            .as_ref()
            .and_then(|p| p.get(k))
            .or(self.additional.as_deref())
    }
}

/// What processing found: validation errors, and paths of pruned unknown fields (reported as
/// warnings, or rejected with `fieldValidation=Strict`).
#[derive(Debug, Default)]
pub struct Outcome {
    pub errors: Vec<FieldError>,
    pub unknown: Vec<String>,
}

/// Processes a whole object against the root schema. `apiVersion`, `kind` and `metadata` are
/// the server's to check and are left alone.
pub fn process(schema: &Schema, obj: &mut Value) -> Outcome {
    let mut out = Outcome::default();
    if let Value::Object(map) = obj {
        process_object(schema, map, &mut String::new(), &mut out, true);
    }
    out
}

/// Appends `.key` (or `key` at the root) to the path being walked; undo with `truncate`.
fn push_field(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

// The path is a buffer extended and truncated while walking (no string per visited field).
fn process_object(schema: &Schema, map: &mut Map<String, Value>, path: &mut String, out: &mut Outcome, root: bool) {
    let props = schema.properties.as_ref();
    let embedded = root || schema.embedded;

    // 1. Prune fields the schema does not declare.
    let known = |k: &str| {
        (embedded && matches!(k, "apiVersion" | "kind" | "metadata"))
            || schema.preserve_unknown
            || props.is_some_and(|p| p.contains_key(k))
            || schema.additional.is_some()
    };
    if !map.keys().all(|k| known(k)) {
        let unknown: Vec<String> = map.keys().filter(|k| !known(k)).cloned().collect();
        for k in unknown {
            map.remove(&k);
            out.unknown.push(join(path, &k));
        }
    }

    // 2. Nulls of non-nullable fields are dropped (and may then be defaulted).
    map.retain(|k, v| !(v.is_null() && schema.field(k).is_some_and(|s| !s.nullable)));

    // 3. Defaults for absent properties.
    if let Some(props) = props {
        for (k, sub) in props {
            if !map.contains_key(k)
                && let Some(d) = &sub.default
            {
                map.insert(k.clone(), d.clone());
            }
        }
    }

    // 4. Recurse into what is left.
    for (k, v) in map.iter_mut() {
        if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(sub) = schema.field(k) {
            let len = path.len();
            push_field(path, k);
            process_value(sub, v, path, out);
            path.truncate(len);
        }
    }

    // 5. Object-level constraints.
    for r in &schema.required {
        if !map.contains_key(r) {
            out.errors.push(FieldError::required(join(path, r)));
        }
    }
    if let Some(max) = schema.max_properties
        && map.len() as u64 > max
    {
        out.errors.push(FieldError::too_many(path.as_str(), map.len(), max));
    }
    if let Some(min) = schema.min_properties
        && (map.len() as u64) < min
    {
        out.errors.push(FieldError::invalid(
            path.as_str(),
            &Value::from(map.len()),
            &format!("{path} in body should have at least {min} properties"),
        ));
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(path: &str, v: &Value, want: &str) -> FieldError {
    let got = type_name(v);
    FieldError::type_invalid(
        path,
        &Value::String(got.into()),
        &format!("{path} in body must be of type {want}: {got:?}"),
    )
}

fn process_value(schema: &Schema, v: &mut Value, path: &mut String, out: &mut Outcome) {
    if v.is_null() {
        if !schema.nullable
            && let Some(t) = schema.ty.as_deref()
        {
            out.errors.push(type_error(path, v, t));
        }
        return;
    }
    if schema.int_or_string {
        if !(v.is_string() || v.as_i64().is_some() || v.as_u64().is_some()) {
            out.errors.push(type_error(path, v, "integer-or-string"));
        }
        return;
    }
    let ty = schema.ty.as_deref().unwrap_or("");
    match (ty, &mut *v) {
        ("object", Value::Object(map)) => process_object(schema, map, path, out, false),
        ("array", Value::Array(items)) => {
            if let Some(item_schema) = schema.items.as_deref() {
                let len = path.len();
                for (i, item) in items.iter_mut().enumerate() {
                    path.truncate(len);
                    let _ = write!(path, "[{i}]");
                    process_value(item_schema, item, path, out);
                }
                path.truncate(len);
            }
            check_array(schema, items, path, out);
        }
        ("string", Value::String(s)) => check_string(schema, s, path, out),
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => check_number(schema, v, path, out),
        ("number", Value::Number(_)) => check_number(schema, v, path, out),
        ("boolean", Value::Bool(_)) => {}
        ("", other) => {
            // Untyped: only legal with preserve-unknown-fields; keep what is there, but still
            // prune/default inside objects if properties are declared.
            if let Value::Object(map) = other
                && schema.has_properties
            {
                process_object(schema, map, path, out, false);
            }
        }
        (want, other) => {
            out.errors.push(type_error(path, other, want));
            return;
        }
    }
    if let Some(allowed) = &schema.enum_values
        && !allowed.contains(v)
    {
        out.errors.push(FieldError::not_supported(path.as_str(), v, allowed));
    }
}

fn check_string(schema: &Schema, s: &str, path: &str, out: &mut Outcome) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.max_length
        && len > max
    {
        out.errors.push(FieldError::too_long(path, max, "bytes"));
    }
    if let Some(min) = schema.min_length
        && len < min
    {
        out.errors.push(FieldError::invalid(
            path,
            &Value::String(s.to_owned()),
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    let format = schema.format.as_str();
    let ok = match format {
        "date-time" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok(),
        "byte" => super::util::b64_decode(s).is_some(),
        _ => true,
    };
    if !ok {
        out.errors.push(FieldError::type_invalid(
            path,
            &Value::String(s.to_owned()),
            &format!("{path} in body must be of type {format}: {s:?}"),
        ));
    }
}

fn check_number(schema: &Schema, v: &Value, path: &str, out: &mut Outcome) {
    let Some(x) = v.as_f64() else { return };
    if let Some(min) = schema.minimum {
        let exclusive = schema.exclusive_minimum;
        if x < min || (exclusive && x == min) {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.errors.push(FieldError::invalid(
                path,
                v,
                &format!("{path} in body should be {op} {min}"),
            ));
        }
    }
    if let Some(max) = schema.maximum {
        let exclusive = schema.exclusive_maximum;
        if x > max || (exclusive && x == max) {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            out.errors.push(FieldError::invalid(
                path,
                v,
                &format!("{path} in body should be {op} {max}"),
            ));
        }
    }
}

fn check_array(schema: &Schema, items: &[Value], path: &str, out: &mut Outcome) {
    if let Some(max) = schema.max_items
        && items.len() as u64 > max
    {
        out.errors.push(FieldError::too_many(path, items.len(), max));
    }
    if let Some(min) = schema.min_items
        && (items.len() as u64) < min
    {
        out.errors.push(FieldError::invalid(
            path,
            &Value::from(items.len()),
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    match schema.list_type.as_deref() {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    out.errors.push(FieldError::duplicate(format!("{path}[{i}]"), item));
                }
            }
        }
        Some("map") => {
            let keys = &schema.list_map_keys;
            let key_of = |item: &Value| -> Value {
                Value::Object(
                    keys.iter()
                        .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
                        .collect(),
                )
            };
            // Same key: the same value (or absence) for every key field.
            let same_key = |a: &Value, b: &Value| keys.iter().all(|k| a.get(k) == b.get(k));
            for (i, item) in items.iter().enumerate() {
                if items[..i].iter().any(|prev| same_key(prev, item)) {
                    out.errors
                        .push(FieldError::duplicate(format!("{path}[{i}]"), &key_of(item)));
                }
            }
        }
        _ => {}
    }
}
