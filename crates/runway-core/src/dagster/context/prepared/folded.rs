//! The two forms a launch's layers take: raw config (1.7 onward) and fields
//! (until 1.7), and where a launcher keeps each.

use std::sync::Arc;

use super::super::{ContainerContext, FieldsContext, Layer};
use super::{Entry, Keyed, Merge, MergedCache, PreparedLayers};
use crate::dagster::launcher::Launcher;
use crate::dagster::rules::Rules;
use crate::dagster::{Env, Error};

/// A layer merged the way one family of releases merges: raw config
/// (1.7 onward) or field by field (until 1.7).
pub trait Folded: Sized {
    /// Where a kept entry holds this form.
    fn slot(keyed: &mut Keyed) -> &mut Option<Entry<Self>>;
    /// The launcher's own layer in this form.
    fn launcher(
        prepared: &PreparedLayers,
        launcher: &Launcher,
        rules: &Rules,
        env: &dyn Env,
    ) -> Result<Arc<Self>, Error>;
    /// Where a launcher keeps this form's merges.
    fn merges(prepared: &PreparedLayers) -> &MergedCache<Self, Merge<Self>>;
    /// Several layers folded in order.
    fn fold(layers: &[Layer], env: &dyn Env) -> Result<Self, Error>;
    /// One layer on its own.
    fn one(layer: &Layer, env: &dyn Env) -> Result<Self, Error>;
}

impl Folded for ContainerContext {
    fn slot(keyed: &mut Keyed) -> &mut Option<Entry<Self>> {
        &mut keyed.raw
    }
    fn launcher(
        prepared: &PreparedLayers,
        launcher: &Launcher,
        rules: &Rules,
        env: &dyn Env,
    ) -> Result<Arc<Self>, Error> {
        prepared.raw(launcher, rules, env)
    }
    fn merges(prepared: &PreparedLayers) -> &MergedCache<Self, Merge<Self>> {
        &prepared.merged_raw
    }
    fn fold(layers: &[Layer], env: &dyn Env) -> Result<Self, Error> {
        ContainerContext::fold(layers, env)
    }
    fn one(layer: &Layer, env: &dyn Env) -> Result<Self, Error> {
        ContainerContext::fold(std::slice::from_ref(layer), env)
    }
}

impl Folded for FieldsContext {
    fn slot(keyed: &mut Keyed) -> &mut Option<Entry<Self>> {
        &mut keyed.fields
    }
    fn launcher(
        prepared: &PreparedLayers,
        launcher: &Launcher,
        rules: &Rules,
        env: &dyn Env,
    ) -> Result<Arc<Self>, Error> {
        prepared.fields(launcher, rules, env)
    }
    fn merges(prepared: &PreparedLayers) -> &MergedCache<Self, Merge<Self>> {
        &prepared.merged_fields
    }
    fn fold(layers: &[Layer], _: &dyn Env) -> Result<Self, Error> {
        FieldsContext::fold(layers)
    }
    fn one(layer: &Layer, _: &dyn Env) -> Result<Self, Error> {
        FieldsContext::from_layer(layer)
    }
}
