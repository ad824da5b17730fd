//! The component schemas of the embedded documents, parsed once: each
//! served kind's schema, and `$ref`s resolved to the schemas they name.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use super::GROUP_VERSIONS;
use crate::validate::Kind;

/// Why the embedded documents cannot be used (a broken regeneration).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the OpenAPI document of {0} is not valid JSON")]
    Json(&'static str, #[source] serde_json::Error),
    #[error("the OpenAPI document of {0} has no components.schemas")]
    NoSchemas(&'static str),
}

/// Where a `$ref` points: `#/components/schemas/<name>`.
const REF_PREFIX: &str = "#/components/schemas/";

/// Every component schema of the served group-versions, by name.
#[derive(Debug)]
pub struct Schemas {
    by_name: HashMap<String, Value>,
}

static SCHEMAS: LazyLock<Result<Schemas, Error>> = LazyLock::new(Schemas::load);

impl Schemas {
    /// The schemas of the embedded documents, parsed on first use.
    pub fn get() -> Result<&'static Schemas, &'static Error> {
        SCHEMAS.as_ref()
    }

    fn load() -> Result<Schemas, Error> {
        let mut by_name = HashMap::new();
        for (gv, doc) in GROUP_VERSIONS {
            let mut doc: Value = serde_json::from_slice(doc).map_err(|e| Error::Json(gv, e))?;
            let Some(Value::Object(schemas)) = doc
                .get_mut("components")
                .and_then(|c| c.get_mut("schemas"))
                .map(Value::take)
            else {
                return Err(Error::NoSchemas(gv));
            };
            // Both documents carry the shared meta types, identically.
            by_name.extend(schemas);
        }
        Ok(Schemas { by_name })
    }

    /// The schema of a served kind's objects.
    pub fn of_kind(&self, kind: Kind) -> Option<&Value> {
        let package = if kind == Kind::Job {
            "io.k8s.api.batch.v1"
        } else {
            "io.k8s.api.core.v1"
        };
        self.by_name.get(&format!("{package}.{}", kind.kind_name()))
    }

    /// The schema a property schema stands for: through `$ref`, or the
    /// `allOf: [{$ref}]` kube-apiserver wraps a reference with a
    /// description in. An unknown reference resolves to itself.
    pub fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        loop {
            let reference = schema.get("$ref").or_else(|| match schema.get("allOf") {
                Some(Value::Array(all)) if all.len() == 1 => all[0].get("$ref"),
                _ => None,
            });
            let target = reference
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(REF_PREFIX))
                .and_then(|name| self.by_name.get(name));
            match target {
                Some(t) => schema = t,
                None => return schema,
            }
        }
    }
}
