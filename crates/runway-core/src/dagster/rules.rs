//! What one Dagster release does when it builds a Job: every change of Job
//! shape or accepted config between dagster-k8s 0.17.9 (Dagster 1.1.9) and
//! 0.29.27 (1.13.27), each at the release that made it. The releases were
//! located by reading each package version's own code (and checked by
//! rendering with the real packages: `make parity`, `make compat-sweep`).
//! Library `0.X.p` ships with Dagster `1.(X-16).p`; versions below are Dagster's.

use super::version::DagsterVersion;
use crate::k8s::config::{MergeBehavior, NamespaceRule, Section};

/// How the launcher, the code location and the run tags combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layering {
    /// Until 1.7: `K8sContainerContext` merges its *fields* one by one (lists
    /// unioned, labels overlaid, scalars replaced when set) and only the
    /// `run_k8s_config` sections are merged, SHALLOW per section; the merged
    /// fields become the Job config, the merged sections the user config.
    Fields,
    /// From 1.7.0: every field is first turned into raw config, and the
    /// layers merge as raw config, DEEP by default.
    Raw,
}

/// Where a run worker's image must be found (the `dagster/image` run tag is
/// written from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunImage {
    /// Until 1.4.6: the code location's image or the launcher's `job_image`
    /// (the tag is written before the Job is built); a tag image alone does not do.
    FromLauncher,
    /// 1.4.6 to 1.8.4: none needed; a Job without an image is created.
    Optional,
    /// From 1.8.5: the built Job's container must have one (from any layer).
    InJob,
}

/// The behaviours of one release. [`Rules::of`] is the only constructor, so
/// a rule never disagrees with the version it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The release these rules are of.
    pub version: DagsterVersion,
    pub layering: Layering,
    /// A metadata value of None is stored as `NullMetadataEntryData` (1.1.10);
    /// before, the class does not exist (1.1.9 refuses None values).
    pub null_metadata: bool,
    /// A user `container_config.name` names the container (1.1.15); before,
    /// it is always `dagster`.
    pub user_container_name: bool,
    /// Container context accepts `k8s.env` (1.1.21).
    pub context_env: bool,
    /// CeleryK8sRunLauncher accepts `job_namespace`, and the celery-k8s
    /// executor's `job_namespace` loses its "default" default (1.2.2).
    pub celery_launcher_namespace: bool,
    /// A user `restartPolicy` wins over `Never` (1.4.5).
    pub user_restart_policy: bool,
    /// Run and Celery step Jobs carry `dagster/code-location` (1.4.6).
    pub code_location_label: bool,
    /// The Celery step payload asks the step to print its events (1.4.15).
    pub step_print_events: bool,
    /// User pod labels win over launcher/executor `labels` (1.5.0).
    pub user_pod_labels_win: bool,
    /// `merge_behavior` is accepted in tags and container-context config (1.5.3).
    pub merge_behavior_key: bool,
    /// `only_allow_user_defined_k8s_config_fields` / `_env_vars` (1.6.3).
    pub allowlists: bool,
    /// `automountServiceAccountToken` is always written, `true` unless the
    /// user sets it (1.6.5); before, only a user value appears.
    pub automount_default: bool,
    /// A user `imagePullPolicy` and `imagePullSecrets` count (1.7.0, with
    /// raw layering); before, only the Job config's do.
    pub user_image_pull: bool,
    /// celery-k8s `per_step_k8s_config` (1.7.15): in the executor schema and
    /// a required kwarg of the step task.
    pub per_step_k8s_config: bool,
    /// Where a run's image must come from.
    pub run_image: RunImage,
    /// `deployment_metadata` / `service_metadata` sections and the allowlist
    /// `namespace` key (1.8.11).
    pub metadata_sections: bool,
    /// `dagster/deployment-name` from `DAGSTER_CLOUD_DEPLOYMENT_NAME` (1.10.19).
    pub deployment_name_label: bool,
    /// `InstanceRef.defs_state_storage_data` in step payloads (1.11.8).
    pub defs_state_storage_data: bool,
    /// `service_spec_config` and `k8s_api_ssl_ca_cert_file` (1.12.20).
    pub service_spec_config: bool,
    /// Container context accepts `server_replica_count` (1.13.5).
    pub server_replica_count: bool,
}

const fn v(minor: u32, patch: u32) -> DagsterVersion {
    DagsterVersion::new(1, minor, patch)
}

/// One change of behaviour, at the first release that has it.
#[derive(Debug)]
pub struct Change {
    pub since: DagsterVersion,
    /// What changed, for the profile table.
    pub what: &'static str,
    apply: fn(&mut Rules),
}

/// Every change from the seed release on, oldest first. [`Rules::of`] applies
/// those a release has; a profile is a run of releases between two changes.
pub const CHANGES: &[Change] = &[
    Change {
        since: v(1, 10),
        what: "event metadata may be null (NullMetadataEntryData)",
        apply: |r| r.null_metadata = true,
    },
    Change {
        since: v(1, 15),
        what: "a user container_config.name names the container",
        apply: |r| r.user_container_name = true,
    },
    Change {
        since: v(1, 21),
        what: "container context k8s.env (before DAGSTER_HOME)",
        apply: |r| r.context_env = true,
    },
    Change {
        since: v(2, 2),
        what: "CeleryK8sRunLauncher job_namespace; executor job_namespace falls back to it",
        apply: |r| r.celery_launcher_namespace = true,
    },
    Change {
        since: v(4, 5),
        what: "a user restartPolicy wins",
        apply: |r| r.user_restart_policy = true,
    },
    Change {
        since: v(4, 6),
        what: "dagster/code-location label; a run without an image launches",
        apply: |r| {
            r.code_location_label = true;
            r.run_image = RunImage::Optional;
        },
    },
    Change {
        since: v(4, 15),
        what: "Celery step payload print_serialized_events",
        apply: |r| r.step_print_events = true,
    },
    Change {
        since: v(5, 0),
        what: "user pod labels beat launcher/executor labels",
        apply: |r| r.user_pod_labels_win = true,
    },
    Change {
        since: v(5, 3),
        what: "merge_behavior key (SHALLOW default); lists keep layer order",
        apply: |r| r.merge_behavior_key = true,
    },
    Change {
        since: v(6, 3),
        what: "allowlists (only_allow_user_defined_*)",
        apply: |r| r.allowlists = true,
    },
    Change {
        since: v(6, 5),
        what: "automountServiceAccountToken always written",
        apply: |r| r.automount_default = true,
    },
    Change {
        since: v(7, 0),
        what: "raw layering, DEEP by default; user imagePullPolicy/imagePullSecrets count",
        apply: |r| {
            r.layering = Layering::Raw;
            r.user_image_pull = true;
        },
    },
    Change {
        since: v(7, 15),
        what: "per_step_k8s_config",
        apply: |r| r.per_step_k8s_config = true,
    },
    Change {
        since: v(8, 5),
        what: "the run's image must be in the built Job",
        apply: |r| r.run_image = RunImage::InJob,
    },
    Change {
        since: v(8, 11),
        what: "deployment_metadata/service_metadata; allowlist namespace key",
        apply: |r| r.metadata_sections = true,
    },
    Change {
        since: v(10, 19),
        what: "dagster/deployment-name label",
        apply: |r| r.deployment_name_label = true,
    },
    Change {
        since: v(11, 8),
        what: "InstanceRef.defs_state_storage_data in step payloads",
        apply: |r| r.defs_state_storage_data = true,
    },
    Change {
        since: v(12, 20),
        what: "service_spec_config; k8s_api_ssl_ca_cert_file",
        apply: |r| r.service_spec_config = true,
    },
    Change {
        since: v(13, 5),
        what: "container context server_replica_count",
        apply: |r| r.server_replica_count = true,
    },
];

/// A Job-shape profile: the releases from one change up to the next, which
/// all follow the same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// `P0` is the seed's; `Pn` starts at the n-th change.
    pub number: usize,
    pub first: DagsterVersion,
    /// The first release of the next profile (none for the newest).
    pub until: Option<DagsterVersion>,
    pub what: &'static str,
}

impl Profile {
    /// Every profile, oldest first.
    pub fn all() -> Vec<Profile> {
        let seed = Profile {
            number: 0,
            first: Rules::SEED.version,
            until: CHANGES.first().map(|c| c.since),
            what: "the seed: field layering, SHALLOW sections, forced fields",
        };
        let later = CHANGES.iter().enumerate().map(|(i, c)| Profile {
            number: i + 1,
            first: c.since,
            until: CHANGES.get(i + 1).map(|n| n.since),
            what: c.what,
        });
        std::iter::once(seed).chain(later).collect()
    }

    /// The profile `version` renders with.
    pub fn of(version: DagsterVersion) -> Profile {
        let number = CHANGES.iter().filter(|c| c.since <= version).count();
        Profile::all()[number]
    }
}

impl Rules {
    /// The rules of Dagster `version`: the seed's, with every change up to
    /// `version` applied.
    pub fn of(version: DagsterVersion) -> Rules {
        let mut rules = Rules::SEED;
        rules.version = version;
        for change in CHANGES.iter().filter(|c| c.since <= version) {
            (change.apply)(&mut rules);
        }
        rules
    }

    /// Dagster 1.1.9's rules.
    const SEED: Rules = Rules {
        version: v(1, 9),
        layering: Layering::Fields,
        null_metadata: false,
        user_container_name: false,
        context_env: false,
        celery_launcher_namespace: false,
        user_restart_policy: false,
        code_location_label: false,
        step_print_events: false,
        user_pod_labels_win: false,
        merge_behavior_key: false,
        allowlists: false,
        automount_default: false,
        user_image_pull: false,
        per_step_k8s_config: false,
        run_image: RunImage::FromLauncher,
        metadata_sections: false,
        deployment_name_label: false,
        defs_state_storage_data: false,
        service_spec_config: false,
        server_replica_count: false,
    };
}

impl Rules {
    /// The merge behaviour of a layer that does not name one; `None` when the
    /// release has no `merge_behavior` key at all (every merge is SHALLOW).
    pub fn merge_default(&self) -> Option<MergeBehavior> {
        match (self.merge_behavior_key, self.layering) {
            (false, _) => None,
            (true, Layering::Fields) => Some(MergeBehavior::Shallow),
            (true, Layering::Raw) => Some(MergeBehavior::Deep),
        }
    }

    /// How the allowlist sees a User layer's namespace.
    pub fn namespace_rule(&self) -> NamespaceRule {
        if self.metadata_sections {
            NamespaceRule::Key
        } else {
            NamespaceRule::MetadataFields
        }
    }

    /// The sections `UserDefinedDagsterK8sConfig` of this release reads.
    pub fn user_sections(&self) -> &'static [Section] {
        let known = if self.service_spec_config {
            9
        } else if self.metadata_sections {
            8
        } else {
            6
        };
        &Section::ALL[..known]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_and_the_newest_release_differ_in_every_rule() {
        let seed = Rules::of(v(1, 9));
        let newest = Rules::of(v(13, 27));
        assert_eq!(seed.layering, Layering::Fields);
        assert_eq!(newest.layering, Layering::Raw);
        assert_eq!(seed.run_image, RunImage::FromLauncher);
        assert_eq!(newest.run_image, RunImage::InJob);
        let flags = |r: &Rules| {
            [
                r.null_metadata,
                r.user_container_name,
                r.context_env,
                r.celery_launcher_namespace,
                r.user_restart_policy,
                r.code_location_label,
                r.step_print_events,
                r.user_pod_labels_win,
                r.merge_behavior_key,
                r.allowlists,
                r.automount_default,
                r.user_image_pull,
                r.per_step_k8s_config,
                r.metadata_sections,
                r.deployment_name_label,
                r.defs_state_storage_data,
                r.service_spec_config,
                r.server_replica_count,
            ]
        };
        assert!(flags(&seed).iter().all(|f| !f));
        assert!(flags(&newest).iter().all(|f| *f));
    }

    #[test]
    fn profiles_run_from_one_change_to_the_next() {
        let all = Profile::all();
        assert_eq!(all.len(), CHANGES.len() + 1);
        assert_eq!(Profile::of(v(1, 9)).number, 0);
        assert_eq!(Profile::of(v(1, 10)).number, 1);
        assert_eq!(Profile::of(v(1, 15)).number, 2);
        assert_eq!(Profile::of(v(13, 27)).number, CHANGES.len());
        for pair in all.windows(2) {
            assert_eq!(pair[0].until, Some(pair[1].first));
            assert!(pair[0].first < pair[1].first);
        }
    }

    #[test]
    fn each_rule_starts_at_its_release() {
        assert!(!Rules::of(v(4, 5)).code_location_label);
        assert!(Rules::of(v(4, 6)).code_location_label);
        assert_eq!(Rules::of(v(6, 14)).layering, Layering::Fields);
        assert_eq!(Rules::of(v(7, 0)).layering, Layering::Raw);
        assert!(!Rules::of(v(13, 4)).server_replica_count);
        assert_eq!(Rules::of(v(8, 4)).run_image, RunImage::Optional);
    }
}
