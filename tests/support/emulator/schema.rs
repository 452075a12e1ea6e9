//! A CRD version's structural `openAPIV3Schema` applied to a custom resource the way the
//! apiextensions-apiserver does before storing it: prune unknown fields, drop nulls of
//! non-nullable fields, apply defaults, then validate. Not evaluated: `pattern` (no regex
//! engine here), `x-kubernetes-validations` (CEL), `oneOf`/`anyOf`/`allOf`/`not`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::error::FieldError;

/// What processing found: validation errors, and paths of pruned unknown fields (reported as
/// warnings, or rejected with `fieldValidation=Strict`).
#[derive(Debug, Default)]
pub struct Outcome {
    pub errors: Vec<FieldError>,
    pub unknown: Vec<String>,
}

/// Processes a whole object against the root schema. `apiVersion`, `kind` and `metadata` are
/// the server's to check and are left alone.
pub fn process(schema: &Value, obj: &mut Value) -> Outcome {
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

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

// The path is a buffer extended and truncated while walking (no string per visited field).
fn process_object(schema: &Value, map: &mut Map<String, Value>, path: &mut String, out: &mut Outcome, root: bool) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields") || additional == Some(&Value::Bool(true));
    let embedded = root || flag(schema, "x-kubernetes-embedded-resource");

    // 1. Prune fields the schema does not declare.
    let known = |k: &str| {
        (embedded && matches!(k, "apiVersion" | "kind" | "metadata"))
            || preserve
            || props.is_some_and(|p| p.contains_key(k))
            || additional.is_some_and(Value::is_object)
    };
    if !map.keys().all(|k| known(k)) {
        let unknown: Vec<String> = map.keys().filter(|k| !known(k)).cloned().collect();
        for k in unknown {
            map.remove(&k);
            out.unknown.push(join(path, &k));
        }
    }

    // 2. Nulls of non-nullable fields are dropped (and may then be defaulted).
    map.retain(|k, v| {
        !(v.is_null() && {
            let sub = props.and_then(|p| p.get(k)).or(additional.filter(|a| a.is_object()));
            sub.is_some_and(|s| !flag(s, "nullable"))
        })
    });

    // 3. Defaults for absent properties.
    if let Some(props) = props {
        for (k, sub) in props {
            if !map.contains_key(k)
                && let Some(d) = sub.get("default")
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
        let sub = props.and_then(|p| p.get(k)).or(additional.filter(|a| a.is_object()));
        if let Some(sub) = sub {
            let len = path.len();
            push_field(path, k);
            process_value(sub, v, path, out);
            path.truncate(len);
        }
    }

    // 5. Object-level constraints.
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                out.errors.push(FieldError::required(join(path, r)));
            }
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && map.len() as u64 > max
    {
        out.errors.push(FieldError::too_many(path.as_str(), map.len(), max));
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
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

fn process_value(schema: &Value, v: &mut Value, path: &mut String, out: &mut Outcome) {
    if v.is_null() {
        if !flag(schema, "nullable")
            && let Some(t) = schema.get("type").and_then(Value::as_str)
        {
            out.errors.push(type_error(path, v, t));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(v.is_string() || v.as_i64().is_some() || v.as_u64().is_some()) {
            out.errors.push(type_error(path, v, "integer-or-string"));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    match (ty, &mut *v) {
        ("object", Value::Object(map)) => process_object(schema, map, path, out, false),
        ("array", Value::Array(items)) => {
            if let Some(item_schema) = schema.get("items") {
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
                && schema.get("properties").is_some()
            {
                process_object(schema, map, path, out, false);
            }
        }
        (want, other) => {
            out.errors.push(type_error(path, other, want));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        out.errors.push(FieldError::not_supported(path.as_str(), v, allowed));
    }
}

fn check_string(schema: &Value, s: &str, path: &str, out: &mut Outcome) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        out.errors.push(FieldError::too_long(path, max, "bytes"));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        out.errors.push(FieldError::invalid(
            path,
            &Value::String(s.to_owned()),
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
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

fn check_number(schema: &Value, v: &Value, path: &str, out: &mut Outcome) {
    let Some(x) = v.as_f64() else { return };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMinimum");
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
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMaximum");
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

fn check_array(schema: &Value, items: &[Value], path: &str, out: &mut Outcome) {
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        out.errors.push(FieldError::too_many(path, items.len(), max));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        out.errors.push(FieldError::invalid(
            path,
            &Value::from(items.len()),
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    out.errors.push(FieldError::duplicate(format!("{path}[{i}]"), item));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Value {
                Value::Object(
                    keys.iter()
                        .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                        .collect(),
                )
            };
            // Same key: the same value (or absence) for every key field.
            let same_key = |a: &Value, b: &Value| keys.iter().all(|k| a.get(*k) == b.get(*k));
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
