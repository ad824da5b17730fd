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
        self.snake_index(snake).map(|i| &self.fields[i])
    }

    /// The position in [`Model::fields`] of the field named `snake`.
    pub fn snake_index(&self, snake: &str) -> Option<usize> {
        let Some(order) = self.id().map(|id| &snake_orders()[id]) else {
            return self.fields.iter().position(|f| f.snake == snake);
        };
        order
            .binary_search_by(|&i| {
                by_len_then_name(self.fields[usize::from(i)].snake).cmp(&by_len_then_name(snake))
            })
            .ok()
            .map(|at| usize::from(order[at]))
    }

    /// This model's handle in the generated table (models live in one static
    /// slice, so the offset is the handle); `None` for a model built elsewhere.
    fn id(&self) -> Option<usize> {
        let offset = (self as *const Model as usize).checked_sub(MODELS.as_ptr() as usize)?;
        let id = offset / size_of::<Model>();
        MODELS
            .get(id)
            .filter(|m| std::ptr::eq(*m, self))
            .map(|_| id)
    }

    /// Attribute names listed for an error message.
    pub fn snake_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.fields.iter().map(|f| f.snake).collect();
        names.sort_unstable();
        names
    }
}

/// The order names are searched in: a model's names mostly differ in length,
/// so most steps of the search compare two integers, not two strings.
fn by_len_then_name(name: &str) -> (usize, &str) {
    (name.len(), name)
}

/// Per model, its field positions sorted by [`by_len_then_name`], built once.
fn snake_orders() -> &'static [Vec<u8>] {
    static ORDERS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    ORDERS.get_or_init(|| {
        MODELS
            .iter()
            .map(|m| {
                let mut order: Vec<u8> = (0..m.fields.len())
                    .map(|i| u8::try_from(i).unwrap_or(u8::MAX))
                    .collect();
                order.sort_by_key(|&i| by_len_then_name(m.fields[usize::from(i)].snake));
                order
            })
            .collect()
    })
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
