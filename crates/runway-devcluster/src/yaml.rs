//! YAML request bodies (`application/yaml`, server-side apply).

use serde_json::Value;

/// Why a body is not a YAML document.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message names the offset, as the HTTP error shows only this text.
    #[error("not UTF-8: {0}")]
    NotUtf8(std::str::Utf8Error),
    #[error(transparent)]
    Syntax(#[from] serde_saphyr::Error),
}

/// Decodes a YAML document into JSON values; the text must be UTF-8.
pub fn from_slice(body: &[u8]) -> Result<Value, Error> {
    let text = std::str::from_utf8(body).map_err(Error::NotUtf8)?;
    Ok(serde_saphyr::from_str::<Value>(text)?)
}
