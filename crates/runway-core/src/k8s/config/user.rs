//! `UserDefinedDagsterK8sConfig`: the nine raw-config sections plus the merge
//! behaviour, held in snake_case as dagster-k8s holds them.

use serde_json::Value;

use super::convert::snake_case_dict;
use super::merge::MergeBehavior;
use super::schema::ids;
use super::{path, Error, Map};

/// One raw-config section and the Kubernetes model its keys belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    ContainerConfig,
    PodTemplateSpecMetadata,
    PodSpecConfig,
    JobConfig,
    JobMetadata,
    JobSpecConfig,
    DeploymentMetadata,
    ServiceMetadata,
    ServiceSpecConfig,
}

impl Section {
    pub const ALL: [Section; 9] = [
        Section::ContainerConfig,
        Section::PodTemplateSpecMetadata,
        Section::PodSpecConfig,
        Section::JobConfig,
        Section::JobMetadata,
        Section::JobSpecConfig,
        Section::DeploymentMetadata,
        Section::ServiceMetadata,
        Section::ServiceSpecConfig,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::ContainerConfig => "container_config",
            Section::PodTemplateSpecMetadata => "pod_template_spec_metadata",
            Section::PodSpecConfig => "pod_spec_config",
            Section::JobConfig => "job_config",
            Section::JobMetadata => "job_metadata",
            Section::JobSpecConfig => "job_spec_config",
            Section::DeploymentMetadata => "deployment_metadata",
            Section::ServiceMetadata => "service_metadata",
            Section::ServiceSpecConfig => "service_spec_config",
        }
    }

    pub fn model(self) -> usize {
        match self {
            Section::ContainerConfig => ids::CONTAINER,
            Section::PodTemplateSpecMetadata
            | Section::JobMetadata
            | Section::DeploymentMetadata
            | Section::ServiceMetadata => ids::OBJECT_META,
            Section::PodSpecConfig => ids::POD_SPEC,
            Section::JobConfig => ids::JOB,
            Section::JobSpecConfig => ids::JOB_SPEC,
            Section::ServiceSpecConfig => ids::SERVICE_SPEC,
        }
    }

    pub fn from_name(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Raw Kubernetes config in the nine sections, keys in snake_case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserConfig {
    sections: [Map; 9],
    pub merge_behavior: MergeBehavior,
}

impl UserConfig {
    /// `UserDefinedDagsterK8sConfig.from_dict`: absent sections are empty, keys
    /// are converted per model, `merge_behavior` defaults to DEEP.
    pub fn from_dict(dict: &Map, at: &str) -> Result<UserConfig, Error> {
        UserConfig::from_dict_as(dict, at, &Section::ALL, Some(MergeBehavior::Deep))
    }

    /// `from_dict` of a release that reads only `sections` and whose merge
    /// behaviour, when the dict does not say, is `default`. A release without
    /// the `merge_behavior` key (`default: None`) ignores it and always merges
    /// SHALLOW.
    pub fn from_dict_as(
        dict: &Map,
        at: &str,
        sections: &[Section],
        default: Option<MergeBehavior>,
    ) -> Result<UserConfig, Error> {
        let mut config = UserConfig {
            merge_behavior: default.unwrap_or(MergeBehavior::Shallow),
            ..UserConfig::default()
        };
        for &section in sections {
            match dict.get(section.name()) {
                None | Some(Value::Null) => {}
                Some(Value::Object(raw)) => {
                    config.set_raw(section, raw, &path::key(at, section.name()))?;
                }
                Some(other) => {
                    return Err(Error::WrongType {
                        path: path::key(at, section.name()),
                        expected: "an object".into(),
                        got: super::error::kind_of(other),
                    })
                }
            }
        }
        if default.is_none() {
            return Ok(config);
        }
        match dict.get("merge_behavior") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "DEEP" => config.merge_behavior = MergeBehavior::Deep,
            Some(Value::String(s)) if s == "SHALLOW" => {
                config.merge_behavior = MergeBehavior::Shallow
            }
            Some(other) => {
                return Err(Error::WrongType {
                    path: path::key(at, "merge_behavior"),
                    expected: "DEEP or SHALLOW".into(),
                    got: super::error::kind_of(other),
                })
            }
        }
        Ok(config)
    }

    /// Sets a section from raw (camel or snake) keys, converting them.
    pub fn set_raw(&mut self, section: Section, raw: &Map, at: &str) -> Result<(), Error> {
        self.sections[section.index()] = snake_case_dict(section.model(), raw, at)?;
        Ok(())
    }

    /// Sets a section whose keys are already snake_case (built by Runway itself).
    pub fn set(&mut self, section: Section, dict: Map) {
        self.sections[section.index()] = dict;
    }

    pub fn get(&self, section: Section) -> &Map {
        &self.sections[section.index()]
    }

    pub fn get_mut(&mut self, section: Section) -> &mut Map {
        &mut self.sections[section.index()]
    }

    pub fn take(&mut self, section: Section) -> Map {
        std::mem::take(&mut self.sections[section.index()])
    }
}
