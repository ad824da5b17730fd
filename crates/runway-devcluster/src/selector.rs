//! Label and field selectors, parsed and applied as kube-apiserver does.
//!
//! A selector is parsed once per request, then tested against every object of
//! a list and every watch event, so matching reads the object in place and
//! never allocates.
//!
//! Layout: `label` (label selectors, from a query or a `metav1.LabelSelector`
//! object) with its `syntax` (apimachinery's label selector parser) and
//! `names` (label key and value rules); `field` (field selectors and the
//! field labels each kind supports).

mod field;
mod label;
mod names;
mod syntax;

pub use field::{FieldKind, FieldSelector};
pub use label::LabelSelector;

#[cfg(test)]
mod tests;
