//! Job names and labels exactly as dagster-k8s spells them.

use md5::{Digest, Md5};

use super::Error;

/// Kubernetes names Dagster creates are capped at this length.
pub const MAX_K8S_NAME_LEN: usize = 63;

/// `get_job_name_from_run_id`: `dagster-run-<run_id>[-<resume attempt>]`.
pub fn run_job_name(run_id: &str, resume_attempt: u32) -> String {
    if resume_attempt == 0 {
        format!("dagster-run-{run_id}")
    } else {
        format!("dagster-run-{run_id}-{resume_attempt}")
    }
}

/// celery-k8s step Jobs: `dagster-step-<md5(run_id + step_key)>[-<attempt>]`.
pub fn step_job_name(run_id: &str, step_key: &str, attempt: u64) -> String {
    let mut hasher = Md5::new();
    hasher.update(run_id.as_bytes());
    hasher.update(step_key.as_bytes());
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(32);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    if attempt == 0 {
        format!("dagster-step-{hex}")
    } else {
        format!("dagster-step-{hex}-{attempt}")
    }
}

/// Refuses names Kubernetes would refuse, as `construct_dagster_k8s_job` does.
pub fn check_name_len(name: &str, what: &str) -> Result<(), Error> {
    let len = name.chars().count();
    if len > MAX_K8S_NAME_LEN {
        return Err(Error::Invalid {
            path: what.to_owned(),
            message: format!(
                "{name:?} is {len} characters long; Kubernetes names cannot be longer than \
                 {MAX_K8S_NAME_LEN} characters (use a shorter run id)"
            ),
        });
    }
    Ok(())
}

/// `sanitize_k8s_label`, quirks included: truncate to 63 code points *before*
/// replacing, then strip `-`, `_` and `.` once each, in that order, so a value
/// such as `"_-.x.-_"` comes out as `"-.x.-"` exactly as Dagster makes it.
pub fn sanitize_label(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    let edge = |c: char| c == '-' || c == '_' || c == '.';
    // Most values (run ids, job names, versions) need no change at all.
    if value.len() <= 63
        && value.chars().all(plain)
        && !value.starts_with(edge)
        && !value.ends_with(edge)
    {
        return value.to_owned();
    }
    let replaced: String = value
        .chars()
        .take(63)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    replaced
        .trim_matches('-')
        .trim_matches('_')
        .trim_matches('.')
        .to_owned()
}

/// `get_common_labels` plus the component; `version` is the caller's
/// `dagster.__version__` (every release stamps its own).
pub fn common_labels(component: &str, version: &str) -> Vec<(String, String)> {
    vec![
        ("app.kubernetes.io/name".into(), "dagster".into()),
        ("app.kubernetes.io/instance".into(), "dagster".into()),
        ("app.kubernetes.io/version".into(), sanitize_label(version)),
        ("app.kubernetes.io/part-of".into(), "dagster".into()),
        ("app.kubernetes.io/component".into(), component.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_name_matches_dagster_example() {
        assert_eq!(
            step_job_name("1c2e9a5b-7d3e-4e8f-9a1b-2c3d4e5f6a7b", "my_op", 0),
            "dagster-step-03275dcd7c2ac5718eeed2ba67abed3e"
        );
        assert_eq!(
            step_job_name("1c2e9a5b-7d3e-4e8f-9a1b-2c3d4e5f6a7b", "my_op", 2),
            "dagster-step-03275dcd7c2ac5718eeed2ba67abed3e-2"
        );
    }

    #[test]
    fn run_names() {
        assert_eq!(run_job_name("abc", 0), "dagster-run-abc");
        assert_eq!(run_job_name("abc", 3), "dagster-run-abc-3");
    }

    #[test]
    fn sanitize_keeps_dagster_quirks() {
        assert_eq!(sanitize_label("_-.x.-_"), "-.x.-");
        assert_eq!(sanitize_label("my job/é"), "my-job");
        assert_eq!(sanitize_label("a".repeat(70).as_str()), "a".repeat(63));
        // Truncation happens before replacement: 62 letters then a space then more.
        let v = format!("{} tail", "b".repeat(62));
        assert_eq!(sanitize_label(&v), "b".repeat(62));
        assert_eq!(sanitize_label("--x__"), "x");
    }
}
