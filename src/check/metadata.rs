//! The formats kube-apiserver requires of an object's metadata: a custom resource's name is a
//! DNS-1123 subdomain, its namespace a DNS-1123 label, label keys and annotation keys are
//! qualified names, label values short names, and all annotations together at most 256 KiB.
//! (A missing name is reported by the caller, which knows the document.)

use super::finding::{Rule, Violation};
use serde_json::Value;

/// Largest total size of the annotations (keys and values).
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Appends what is wrong with `metadata` (already known to decode as ObjectMeta).
pub fn check(metadata: &Value, out: &mut Vec<Violation>) {
    let text = |field: &str| metadata.get(field).and_then(Value::as_str).filter(|s| !s.is_empty());
    let mut problem = |field: String, message: String| {
        out.push(Violation {
            message: format!("{field}: {message}"),
            field,
            rule: Rule::Metadata,
        });
    };
    if let Some(name) = text("name")
        && let Err(why) = subdomain(name)
    {
        problem("metadata.name".to_owned(), format!("invalid value {name:?}: {why}"));
    }
    if text("name").is_none()
        && let Some(prefix) = text("generateName")
        && let Err(why) = subdomain(prefix.strip_suffix('-').unwrap_or(prefix))
    {
        problem(
            "metadata.generateName".to_owned(),
            format!("invalid value {prefix:?}: {why}"),
        );
    }
    if let Some(namespace) = text("namespace")
        && let Err(why) = label(namespace)
    {
        problem(
            "metadata.namespace".to_owned(),
            format!("invalid value {namespace:?}: {why}"),
        );
    }
    for (key, value) in metadata.get("labels").and_then(Value::as_object).into_iter().flatten() {
        if let Err(why) = qualified_name(key) {
            problem(format!("metadata.labels.{key}"), format!("invalid key: {why}"));
        }
        let value = value.as_str().unwrap_or_default();
        if !value.is_empty()
            && let Err(why) = name_part(value)
        {
            problem(
                format!("metadata.labels.{key}"),
                format!("invalid value {value:?}: {why}"),
            );
        }
    }
    let mut size = 0;
    for (key, value) in metadata
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        size += key.len() + value.as_str().map_or(0, str::len);
        if let Err(why) = qualified_name(&key.to_ascii_lowercase()) {
            problem(format!("metadata.annotations.{key}"), format!("invalid key: {why}"));
        }
    }
    if size > MAX_ANNOTATIONS_BYTES {
        problem(
            "metadata.annotations".to_owned(),
            format!("{size} bytes; annotations may hold at most {MAX_ANNOTATIONS_BYTES}"),
        );
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn label(text: &str) -> Result<(), String> {
    if text.len() > 63 {
        return Err("must be no more than 63 characters".to_owned());
    }
    let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let inner = text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !(inner && edges(text.chars().next()) && edges(text.chars().last())) {
        return Err(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start \
             and end with an alphanumeric character"
                .to_owned(),
        );
    }
    Ok(())
}

/// Dot-separated labels, at most 253 characters.
fn subdomain(text: &str) -> Result<(), String> {
    if text.len() > 253 {
        return Err("must be no more than 253 characters".to_owned());
    }
    if text.split('.').all(|part| label(part).is_ok()) {
        Ok(())
    } else {
        Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must \
             start and end with an alphanumeric character"
                .to_owned(),
        )
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn name_part(text: &str) -> Result<(), String> {
    if text.len() > 63 {
        return Err("must be no more than 63 characters".to_owned());
    }
    let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let inner = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !(inner && edges(text.chars().next()) && edges(text.chars().last())) {
        return Err(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
             character"
                .to_owned(),
        );
    }
    Ok(())
}

/// `[PREFIX/]NAME`: PREFIX a subdomain, NAME a name part.
fn qualified_name(text: &str) -> Result<(), String> {
    match text.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() {
                return Err("the prefix part must be non-empty".to_owned());
            }
            subdomain(prefix).map_err(|why| format!("prefix part {why}"))?;
            name_part(name).map_err(|why| format!("name part {why}"))
        }
        None => name_part(text).map_err(|why| format!("name part {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(metadata: Value) -> Vec<String> {
        let mut out = Vec::new();
        check(&metadata, &mut out);
        out.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn formats() {
        assert!(
            fields(
                json!({"name": "a.b-c", "namespace": "ns-1", "labels": {"x.io/k_1": "v.1", "e": ""},
            "annotations": {"Example.com/Key": "anything at all"}})
            )
            .is_empty()
        );
        assert_eq!(fields(json!({"name": "A_b"})), ["metadata.name"]);
        assert_eq!(fields(json!({"name": "a", "namespace": "a.b"})), ["metadata.namespace"]);
        assert_eq!(fields(json!({"generateName": "gen-"})), Vec::<String>::new());
        assert_eq!(fields(json!({"generateName": "Gen-"})), ["metadata.generateName"]);
        assert_eq!(
            fields(json!({"name": "a", "labels": {"/k": "v", "k": "-v"}})),
            ["metadata.labels./k", "metadata.labels.k"]
        );
        assert_eq!(
            fields(json!({"name": "a", "annotations": {"a b": "v"}})),
            ["metadata.annotations.a b"]
        );
        assert_eq!(fields(json!({"name": "a".repeat(254)})), ["metadata.name"]);
    }
}
