//! YAML request bodies (`application/yaml`, server-side apply).

use serde_json::Value;

/// Decodes a YAML document into JSON values; the text must be UTF-8.
pub fn from_slice(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
}
