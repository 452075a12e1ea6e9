//! Label selectors (equality- and set-based, as in `labelSelector=`), `metav1.LabelSelector`
//! objects (webhook `namespaceSelector`/`objectSelector`), and field selectors.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::ApiError;
use super::util::field_text;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            Op::Eq | Op::In => v.is_some_and(|v| self.values.contains(v)),
            Op::NotEq | Op::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::Gt | Op::Lt => {
                let (Some(have), Some(want)) = (
                    v.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|w| w.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Op::Gt { have > want } else { have < want }
            }
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

impl LabelSelector {
    /// The empty selector (matches everything).
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }

    /// Parses the query-string form: `a=b,c!=d,e in (f,g),!h,i`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(
                parse_requirement(part)
                    .map_err(|why| ApiError::bad_request(format!("unable to parse requirement: {why}")))?,
            );
        }
        Ok(Self { reqs })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels` + `matchExpressions`).
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                let v = v.as_str().ok_or_else(|| format!("matchLabels[{k}] is not a string"))?;
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq,
                    values: vec![v.to_owned()],
                });
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or("matchExpressions: key missing")?;
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Op::In,
                    Some("NotIn") => Op::NotIn,
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::DoesNotExist,
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                };
                reqs.push(Requirement {
                    key: key.to_owned(),
                    op,
                    values,
                });
            }
        }
        Ok(Self { reqs })
    }
}

/// Splits on commas that are not inside a `( ... )` value set.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Requirement {
            key: key.to_owned(),
            op: Op::DoesNotExist,
            values: vec![],
        });
    }
    // Set-based: `key in (a,b)` / `key notin (a,b)`.
    if let Some(open) = part.find('(') {
        let head = part[..open].trim();
        let close = part
            .rfind(')')
            .filter(|c| *c > open)
            .ok_or_else(|| format!("found '(', expected: ')' in {part:?}"))?;
        if part[close + 1..].trim() != "" {
            return Err(format!("unexpected text after ')' in {part:?}"));
        }
        let mut words = head.split_whitespace();
        let key = words.next().ok_or("missing key")?;
        let op = match words.next() {
            Some("in") => Op::In,
            Some("notin") => Op::NotIn,
            other => return Err(format!("found {other:?}, expected: in, notin")),
        };
        if words.next().is_some() {
            return Err(format!("unexpected text in {part:?}"));
        }
        check_key(key)?;
        let values: Vec<String> = part[open + 1..close].split(',').map(|v| v.trim().to_owned()).collect();
        for v in &values {
            check_value(v)?;
        }
        return Ok(Requirement {
            key: key.to_owned(),
            op,
            values,
        });
    }
    for (token, op) in [
        ("!=", Op::NotEq),
        ("==", Op::Eq),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
    ] {
        if let Some(idx) = part.find(token) {
            let key = part[..idx].trim();
            let value = part[idx + token.len()..].trim();
            check_key(key)?;
            if matches!(op, Op::Gt | Op::Lt) {
                value
                    .parse::<i64>()
                    .map_err(|_| format!("for 'Gt', 'Lt' operators, the value must be an integer: {value:?}"))?;
            } else {
                check_value(value)?;
            }
            return Ok(Requirement {
                key: key.to_owned(),
                op,
                values: vec![value.to_owned()],
            });
        }
    }
    check_key(part)?;
    Ok(Requirement {
        key: part.to_owned(),
        op: Op::Exists,
        values: vec![],
    })
}

fn check_key(key: &str) -> Result<(), String> {
    if is_qualified_name(key) {
        Ok(())
    } else {
        Err(format!(
            "invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

fn check_value(v: &str) -> Result<(), String> {
    if is_label_value(v) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

/// `[prefix/]name`, prefix a DNS subdomain, name ≤ 63 of `[A-Za-z0-9_.-]`, alphanumeric ends
/// (label keys, annotation keys, `reportingController`).
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return false;
    }
    !name.is_empty() && name.len() <= 63 && name_chars_ok(name)
}

/// A label value: empty, or ≤ 63 of `[A-Za-z0-9_.-]` with alphanumeric ends.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty() || (v.len() <= 63 && name_chars_ok(v))
}

fn name_chars_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// RFC 1123 subdomain: ≤ 253, lowercase alphanumerics, '-' and '.', alphanumeric ends.
pub fn is_dns_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
}

/// RFC 1123 label: a subdomain without dots, ≤ 63 (namespace names).
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_dns_subdomain(s)
}

/// A parsed field selector: only `=`, `==` and `!=`, over the fields a resource supports.
#[derive(Clone, Debug, Default)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>, // (field, equal?, value)
}

impl FieldSelector {
    /// Parses `metadata.name=x,metadata.namespace!=y`, rejecting fields not in `supported`
    /// with the apiserver's message.
    pub fn parse(text: &str, supported: &[String]) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !supported.iter().any(|s| s == field) {
                return Err(ApiError::bad_request(format!("field label not supported: {field}")));
            }
            reqs.push((field.to_owned(), eq, value.trim().to_owned()));
        }
        Ok(Self { reqs })
    }

    /// The empty selector (matches everything).
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs
            .iter()
            .all(|(field, eq, value)| (field_text(obj, field) == *value) == *eq)
    }
}
