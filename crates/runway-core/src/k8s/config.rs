//! Raw Kubernetes config as dagster-k8s handles it: key conversion per model
//! (camelCase or snake_case), value coercion, DEEP/SHALLOW merging and the
//! user-config allowlists. Pure code: no I/O, no async.

mod allowlist;
mod convert;
mod error;
mod fields;
mod merge;
pub mod schema;
mod user;

pub use allowlist::{check_allowlist, filter_env_vars, Allowlist, NamespaceRule};
pub use convert::{model_into_wire, model_to_wire, snake_case_dict};
pub(crate) use error::kind_of as error_kind;
pub use error::Error;
pub use fields::KUBERNETES_VERSION;
pub(crate) use merge::dedupe;
pub use merge::{merge_user_configs, merge_user_configs_into, MergeBehavior};
pub use user::{Section, UserConfig};

/// A JSON object as used throughout the config layers.
pub type Map = serde_json::Map<String, serde_json::Value>;

/// Field paths in errors, e.g. `tags."dagster-k8s/config".container_config.env[2].name`.
pub mod path {
    /// Appends an object key, quoting it when it is not a plain identifier.
    pub fn key(base: &str, key: &str) -> String {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let part = if plain {
            key.to_owned()
        } else {
            serde_json::Value::String(key.to_owned()).to_string()
        };
        if base.is_empty() {
            part
        } else {
            format!("{base}.{part}")
        }
    }

    /// Appends a list index.
    pub fn index(base: &str, index: usize) -> String {
        format!("{base}[{index}]")
    }

    /// A field path built as the converters recurse and rendered only when an
    /// error needs it: formatting every path eagerly cost a third of a render.
    #[derive(Debug, Clone, Copy)]
    pub enum At<'a> {
        Root(&'a str),
        Key(&'a At<'a>, &'a str),
        Index(&'a At<'a>, usize),
    }

    impl At<'_> {
        pub fn render(&self) -> String {
            match self {
                At::Root(base) => (*base).to_owned(),
                At::Key(parent, k) => key(&parent.render(), k),
                At::Index(parent, i) => index(&parent.render(), *i),
            }
        }
    }
}
