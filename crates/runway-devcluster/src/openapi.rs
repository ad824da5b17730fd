//! The OpenAPI v3 documents of the served group-versions, generated from
//! the Kubernetes 1.36 schema by `tools/gen_openapi.py` and embedded here.
//!
//! kubectl needs them with validation on (its default): every PATCH
//! operation declares the `fieldValidation` query parameter, so kubectl
//! leaves validation to the server instead of fetching `/openapi/v2`
//! (which stays a 404: kubectl 1.32 would ask for protobuf there). The
//! schemas also give client-side `apply` its patch strategies and
//! `explain` its text, and [`schema`] lets the server find unknown fields.

use bytes::Bytes;

pub mod schema;

/// `GET /openapi/v3`: the group-versions and their documents' URLs.
static DISCOVERY: &[u8] = include_bytes!("../openapi/v3.json");
/// `GET /openapi/v3/api/v1`.
static CORE_V1: &[u8] = include_bytes!("../openapi/v3/api/v1.json");
/// `GET /openapi/v3/apis/batch/v1`.
static BATCH_V1: &[u8] = include_bytes!("../openapi/v3/apis/batch/v1.json");

/// The group-version documents, by the path kubectl asks them at.
const GROUP_VERSIONS: [(&str, &[u8]); 2] = [("api/v1", CORE_V1), ("apis/batch/v1", BATCH_V1)];

/// The document at `/openapi/v3/{path}`; an empty path is the discovery
/// map. Query parameters (the `hash` kubectl copies from the discovery
/// map) do not change the answer.
pub fn document(path: &str) -> Option<Bytes> {
    if path.is_empty() {
        return Some(Bytes::from_static(DISCOVERY));
    }
    GROUP_VERSIONS
        .iter()
        .find(|(gv, _)| *gv == path)
        .map(|(_, doc)| Bytes::from_static(doc))
}

#[cfg(test)]
mod tests;
