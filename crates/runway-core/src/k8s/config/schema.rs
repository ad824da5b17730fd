//! The shape of the generated field table (`fields.rs`) and lookups over it.

use super::fields::MODELS;

/// A field type as the Python Kubernetes client's `openapi_types` declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Float,
    Bool,
    DateTime,
    Date,
    /// Untyped (`object`): IntOrString, RawExtension and the like; copied as is.
    Object,
    Model(usize),
    List(&'static Ty),
    Map(&'static Ty),
}

/// One attribute of a model: its JSON (camelCase) and Python (snake_case) names.
#[derive(Debug)]
pub struct Field {
    pub camel: &'static str,
    pub snake: &'static str,
    pub ty: Ty,
    pub required: bool,
}

/// A Kubernetes API model, named as the Python client names it (`V1Container`).
#[derive(Debug)]
pub struct Model {
    pub name: &'static str,
    /// Sorted by camel name.
    pub fields: &'static [Field],
}

/// Model handles used by the Dagster config sections.
pub mod ids {
    pub use super::super::fields::{
        V1_CONTAINER as CONTAINER, V1_ENV_VAR as ENV_VAR, V1_JOB as JOB, V1_JOB_SPEC as JOB_SPEC,
        V1_OBJECT_META as OBJECT_META, V1_POD_SPEC as POD_SPEC,
        V1_SECURITY_CONTEXT as SECURITY_CONTEXT, V1_SERVICE_SPEC as SERVICE_SPEC,
        V1_VOLUME as VOLUME, V1_VOLUME_MOUNT as VOLUME_MOUNT,
    };
}

impl Model {
    /// The model at `id` in the generated table.
    pub fn get(id: usize) -> &'static Model {
        &MODELS[id]
    }

    /// The field whose JSON name is `camel`.
    pub fn by_camel(&self, camel: &str) -> Option<&'static Field> {
        self.fields
            .binary_search_by(|f| f.camel.cmp(camel))
            .ok()
            .map(|i| &self.fields[i])
    }

    /// The field whose Python attribute name is `snake`.
    pub fn by_snake(&self, snake: &str) -> Option<&'static Field> {
        // Snake and camel names sort almost alike; a linear scan over a few dozen
        // static entries is cheaper than a second index.
        self.fields.iter().find(|f| f.snake == snake)
    }

    /// Attribute names listed for an error message.
    pub fn snake_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.fields.iter().map(|f| f.snake).collect();
        names.sort_unstable();
        names
    }
}

impl Ty {
    /// The Python client's spelling, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Ty::Str => "str".into(),
            Ty::Int => "int".into(),
            Ty::Float => "float".into(),
            Ty::Bool => "bool".into(),
            Ty::DateTime => "datetime".into(),
            Ty::Date => "date".into(),
            Ty::Object => "object".into(),
            Ty::Model(id) => Model::get(*id).name.into(),
            Ty::List(inner) => format!("list[{}]", inner.describe()),
            Ty::Map(inner) => format!("dict[str, {}]", inner.describe()),
        }
    }
}
