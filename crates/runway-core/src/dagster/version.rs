//! Which Dagster a Job is rendered for. dagster-k8s and dagster-celery-k8s
//! changed the Jobs they build between releases (merge rules, labels, forced
//! fields, payloads, accepted keys); a [`Target`] is the caller's version and
//! the [`Rules`] that version follows. A version outside the supported ranges
//! is refused, never rendered in the wrong shape.

use std::fmt;

pub use super::rules::{Layering, Profile, Rules, RunImage};

/// A Dagster release, as `dagster.__version__` spells it (`1.13.27`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DagsterVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl DagsterVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> DagsterVersion {
        DagsterVersion {
            major,
            minor,
            patch,
        }
    }

    /// Parses `X.Y.Z`, allowing a pre-release or local suffix on the patch
    /// (`1.13.27rc1`, `1.13.27+local` count as 1.13.27).
    pub fn parse(text: &str) -> Option<DagsterVersion> {
        let mut parts = text.trim().splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch_text = parts.next()?;
        let digits: String = patch_text
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let patch = digits.parse().ok()?;
        Some(DagsterVersion::new(major, minor, patch))
    }
}

impl fmt::Display for DagsterVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A supported range of Dagster releases, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub first: DagsterVersion,
    pub last: DagsterVersion,
}

impl Range {
    pub fn contains(self, v: DagsterVersion) -> bool {
        self.first <= v && v <= self.last
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.first, self.last)
    }
}

/// The releases Runway renders: from the seed's 1.1.9 (the oldest whose code
/// was read) to the last 1.13 with its libraries. Parity checks the ends, the
/// compat sweep the last release of every minor between; every change of Job
/// shape inside is a [`super::rules::Change`] at its first release.
pub const SUPPORTED: &[Range] = &[Range {
    first: DagsterVersion::new(1, 1, 9),
    last: DagsterVersion::new(1, 13, 27),
}];

/// The newest supported release: what a request without a version gets.
pub const NEWEST: DagsterVersion = DagsterVersion::new(1, 13, 27);

/// Why a version cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("{0:?} is not a Dagster version (expected X.Y.Z, e.g. 1.13.27)")]
    Malformed(String),
    #[error(
        "Dagster {version} is not supported: Runway renders the Jobs of Dagster {supported}; \
         use a supported Dagster, or Dagster's own launcher with this one"
    )]
    Unsupported { version: String, supported: String },
}

/// The Dagster a Job is rendered for: its version (stamped on the Job's
/// `app.kubernetes.io/version` label, as every release stamps its own) and
/// the rules that version follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The version as the caller spelled it (`dagster.__version__`).
    pub label: String,
    pub rules: Rules,
}

impl Target {
    /// The caller's version; empty means the newest supported.
    pub fn parse(text: &str) -> Result<Target, VersionError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Target::newest());
        }
        let version =
            DagsterVersion::parse(text).ok_or_else(|| VersionError::Malformed(text.into()))?;
        if !SUPPORTED.iter().any(|r| r.contains(version)) {
            return Err(VersionError::Unsupported {
                version: text.into(),
                supported: supported(),
            });
        }
        Ok(Target {
            label: text.to_owned(),
            rules: Rules::of(version),
        })
    }

    pub fn newest() -> Target {
        Target {
            label: NEWEST.to_string(),
            rules: Rules::of(NEWEST),
        }
    }
}

impl Target {
    pub fn version(&self) -> DagsterVersion {
        self.rules.version
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl Default for Target {
    fn default() -> Target {
        Target::newest()
    }
}

/// Every supported range, for messages.
pub fn supported() -> String {
    SUPPORTED
        .iter()
        .map(Range::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_their_rules_or_are_refused_by_range() {
        assert_eq!(Target::parse("").unwrap(), Target::newest());
        let seed = Target::parse("1.1.9").unwrap();
        assert_eq!(seed.label, "1.1.9");
        assert_eq!(seed.rules.layering, Layering::Fields);
        let current = Target::parse("1.13.0rc2").unwrap();
        assert_eq!(current.version(), DagsterVersion::new(1, 13, 0));
        assert_eq!(current.label, "1.13.0rc2");
        assert_eq!(current.rules.layering, Layering::Raw);
        assert_eq!(
            Target::parse("1.5.14").unwrap().rules.layering,
            Layering::Fields
        );
        for refused in ["0.15.3", "1.1.8", "1.13.28", "2.0.0"] {
            let err = Target::parse(refused).unwrap_err().to_string();
            assert!(
                err.contains(refused) && err.contains("1.1.9..=1.13.27"),
                "{err}"
            );
        }
        let err = Target::parse("one.two").unwrap_err().to_string();
        assert!(err.contains("expected X.Y.Z"), "{err}");
    }
}
