//! Which Dagster a Job is rendered for. dagster-k8s changed the Jobs it
//! builds between releases (merge rules, labels, forced fields, payloads);
//! a [`Profile`] names one Job shape, and a caller's Dagster version picks
//! it. A version no profile covers is refused, never rendered in the wrong
//! shape.

use std::fmt;

/// A Dagster release, as `dagster.__version__` spells it (`1.13.27`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DagsterVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl DagsterVersion {
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
        Some(DagsterVersion {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for DagsterVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A Job shape of dagster-k8s / dagster-celery-k8s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Dagster 1.13 (dagster-k8s 0.29): deep merges, allowlists,
    /// `per_step_k8s_config`, the code-location label.
    V1_13,
}

/// Why a version cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("{0:?} is not a Dagster version (expected X.Y.Z, e.g. 1.13.27)")]
    Malformed(String),
    #[error("Dagster {version} is not supported: Runway renders the Jobs of Dagster {supported}")]
    Unsupported { version: String, supported: String },
}

impl Profile {
    /// The profile of the newest supported Dagster (what an empty version asks for).
    pub const NEWEST: Profile = Profile::V1_13;

    /// Every profile, oldest first.
    pub const ALL: &'static [Profile] = &[Profile::V1_13];

    /// The profile for a caller's Dagster version; empty means the newest.
    pub fn for_version(text: &str) -> Result<Profile, VersionError> {
        if text.trim().is_empty() {
            return Ok(Profile::NEWEST);
        }
        let v = DagsterVersion::parse(text).ok_or_else(|| VersionError::Malformed(text.into()))?;
        Profile::ALL
            .iter()
            .copied()
            .find(|p| p.covers(v))
            .ok_or_else(|| VersionError::Unsupported {
                version: v.to_string(),
                supported: Profile::supported(),
            })
    }

    /// Whether this profile renders `v`'s Jobs.
    pub fn covers(self, v: DagsterVersion) -> bool {
        match self {
            Profile::V1_13 => (v.major, v.minor) == (1, 13),
        }
    }

    /// The versions this profile covers, for messages.
    pub fn range(self) -> &'static str {
        match self {
            Profile::V1_13 => "1.13.x",
        }
    }

    /// Every covered range, for the message of a refused version.
    pub fn supported() -> String {
        Profile::ALL
            .iter()
            .map(|p| p.range())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_their_profile_or_are_refused_by_range() {
        assert_eq!(Profile::for_version(""), Ok(Profile::NEWEST));
        assert_eq!(Profile::for_version("1.13.27"), Ok(Profile::V1_13));
        assert_eq!(Profile::for_version("1.13.0rc2"), Ok(Profile::V1_13));
        let err = Profile::for_version("0.15.3").unwrap_err().to_string();
        assert!(err.contains("0.15.3") && err.contains("1.13.x"), "{err}");
        let err = Profile::for_version("one.two").unwrap_err().to_string();
        assert!(err.contains("expected X.Y.Z"), "{err}");
    }
}
