//! Small helpers shared across the emulator: time stamps, identifiers, base64, JSON paths.

use k8s_openapi::ByteString;
use serde_json::{Map, Value};

/// `metav1.Time` wire form: RFC 3339 in UTC with second precision, as the apiserver writes it.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random RFC 4122 version-4 UUID, the shape of `metadata.uid`.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    for byte in &mut b {
        *byte = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut uid = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            uid.push('-'); // 8-4-4-4-12 hex digits
        }
        uid.push(HEX[usize::from(byte >> 4)] as char);
        uid.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    uid
}

/// Standard base64, through `k8s_openapi::ByteString`, whose serde form is exactly that
/// (saves a dependency).
pub fn b64_encode(bytes: &[u8]) -> String {
    match serde_json::to_value(ByteString(bytes.to_vec())) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Decodes standard base64; `None` when the text is not valid base64.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    serde_json::from_value::<ByteString>(Value::String(text.to_owned()))
        .ok()
        .map(|b| b.0)
}

/// `metadata` of an object, created when missing or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let root = ensure_object(obj);
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    ensure_object(meta)
}

/// Turns `v` into an object if it is not one already and returns its map.
pub fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// A string field of `metadata`, `""` when absent.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The numeric `metadata.resourceVersion` of a stored object (0 when absent).
pub fn rv_of(obj: &Value) -> u64 {
    meta_str(obj, "resourceVersion").parse().unwrap_or(0)
}
