//! libpq's `sslmode` and `sslrootcert`, as the Dagster instance gives them
//! (`postgres_db.params` or the `postgres_url` query), turned into what
//! tokio-postgres and rustls need, with libpq's meaning:
//!
//! | sslmode       | TLS                           | checked                   |
//! |---------------|-------------------------------|---------------------------|
//! | `disable`     | never                         | -                         |
//! | `allow`       | if the server offers it (1)   | chain, when a CA is known |
//! | `prefer` (2)  | if the server offers it       | chain, when a CA is known |
//! | `require`     | always                        | chain, when a CA is known |
//! | `verify-ca`   | always                        | chain                     |
//! | `verify-full` | always                        | chain and host name       |
//!
//! (1) libpq tries plain first; tokio-postgres cannot, so `allow` asks for
//! TLS first, as `prefer` does. (2) The default, as in libpq.
//!
//! "A CA is known" follows libpq, which checks the chain whenever its root
//! file exists: `--postgres-ca-file` (the worker's own mount, which wins
//! because `sslrootcert` names a file where Dagster runs), else an existing
//! `sslrootcert` file. `verify-*` without either uses the system's roots,
//! as does `sslrootcert=system` (which, as in libpq 16, makes `verify-full`
//! the default).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio_postgres::config::SslMode as WireMode;

use crate::tls::{self, postgres::MakeRustls, Roots, Verify};

#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "sslmode {0:?} (in the instance's postgres_db.params, its postgres_url or \
         --postgres-url) is not one of disable, allow, prefer, require, verify-ca, verify-full"
    )]
    SslMode(String),
    #[error(
        "{0} (a client certificate) is not supported: remove it from the instance's \
         postgres_db.params or postgres_url, and authenticate with a password"
    )]
    ClientCert(String),
    #[error("TLS: {0}")]
    Tls(#[from] tls::Error),
}

/// What one target asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    pub wire: Wire,
    pub verify: Verify,
    pub roots: Roots,
}

/// tokio-postgres's mode (its `SslMode` is neither `Eq` nor `Hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    Disable,
    Prefer,
    Require,
}

impl Wire {
    pub fn mode(self) -> WireMode {
        match self {
            Wire::Disable => WireMode::Disable,
            Wire::Prefer => WireMode::Prefer,
            Wire::Require => WireMode::Require,
        }
    }
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The policy of a target's libpq parameters; `ca_file` is
/// `--postgres-ca-file`. Pure but for whether `sslrootcert` exists.
pub fn policy(params: &[(String, String)], ca_file: Option<&Path>) -> Result<Policy, Error> {
    for key in ["sslcert", "sslkey"] {
        if param(params, key).is_some_and(|v| !v.is_empty()) {
            return Err(Error::ClientCert(key.to_owned()));
        }
    }
    let rootcert = param(params, "sslrootcert").filter(|v| !v.is_empty());
    let system = rootcert == Some("system");
    let default_mode = if system { "verify-full" } else { "prefer" };
    let mode = param(params, "sslmode").unwrap_or(default_mode);
    // The CA libpq would load: ours, else sslrootcert when it exists
    // (`verify-*` report a missing one when they read it).
    let ca: Option<PathBuf> = match (ca_file, rootcert) {
        (Some(p), _) => Some(p.to_owned()),
        (None, Some(r)) if !system => Some(PathBuf::from(r)),
        _ => None,
    };
    let ca_exists = ca.as_deref().is_some_and(Path::exists);
    let roots = match ca {
        Some(p) if !system => Roots::File(p),
        _ => Roots::System,
    };
    let known = if ca_exists || system {
        Verify::Chain
    } else {
        Verify::Nothing
    };
    let (wire, verify) = match mode {
        "disable" => (Wire::Disable, Verify::Nothing),
        "allow" | "prefer" => (Wire::Prefer, known),
        "require" => (Wire::Require, known),
        "verify-ca" => (Wire::Require, Verify::Chain),
        "verify-full" => (Wire::Require, Verify::Full),
        other => return Err(Error::SslMode(other.to_owned())),
    };
    Ok(Policy {
        wire,
        verify,
        roots,
    })
}

/// The rustls configurations in use, built once per policy (the system's
/// roots are read from disk).
#[derive(Debug, Default)]
pub struct Connectors {
    built: Mutex<HashMap<(Verify, Roots), MakeRustls>>,
}

impl Connectors {
    pub fn get(&self, p: &Policy) -> Result<MakeRustls, Error> {
        let key = (p.verify, p.roots.clone());
        if let Some(m) = self.lock().get(&key) {
            return Ok(m.clone());
        }
        let made = MakeRustls::new(Arc::new(tls::client_config(p.verify, &p.roots)?));
        self.lock().insert(key, made.clone());
        Ok(made)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Verify, Roots), MakeRustls>> {
        self.built.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn of(pairs: &[(&str, &str)], ca: Option<&Path>) -> (Wire, Verify, Roots) {
        let got = policy(&p(pairs), ca).unwrap_or_else(|e| unreachable!("{e}"));
        (got.wire, got.verify, got.roots)
    }

    #[test]
    fn modes_follow_libpq() {
        use Verify::*;
        assert_eq!(of(&[], None), (Wire::Prefer, Nothing, Roots::System));
        let cases = [
            ("disable", Wire::Disable, Nothing),
            ("allow", Wire::Prefer, Nothing),
            ("prefer", Wire::Prefer, Nothing),
            ("require", Wire::Require, Nothing),
            ("verify-ca", Wire::Require, Chain),
            ("verify-full", Wire::Require, Full),
        ];
        for (mode, wire, verify) in cases {
            assert_eq!(
                of(&[("sslmode", mode)], None),
                (wire, verify, Roots::System),
                "{mode}"
            );
        }
    }

    #[test]
    fn a_known_ca_makes_require_check_the_chain() {
        let ca = std::env::temp_dir().join(format!("runway-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "x").unwrap_or_else(|e| unreachable!("{e}"));
        let file = Roots::File(ca.clone());
        let rootcert = ca.to_string_lossy().into_owned();
        let params = [("sslmode", "require"), ("sslrootcert", rootcert.as_str())];
        assert_eq!(
            of(&params, None),
            (Wire::Require, Verify::Chain, file.clone())
        );
        assert_eq!(
            of(&[("sslmode", "require")], Some(&ca)),
            (Wire::Require, Verify::Chain, file.clone())
        );
        // Our option wins over the instance's path.
        assert_eq!(
            of(
                &[
                    ("sslmode", "verify-full"),
                    ("sslrootcert", "/elsewhere.pem")
                ],
                Some(&ca)
            ),
            (Wire::Require, Verify::Full, file)
        );
        let _ = std::fs::remove_file(&ca);
    }

    #[test]
    fn a_missing_rootcert_is_ignored_by_require_and_read_by_verify() {
        let missing = [
            ("sslmode", "require"),
            ("sslrootcert", "/nonexistent/ca.pem"),
        ];
        let missing_file = Roots::File("/nonexistent/ca.pem".into());
        assert_eq!(
            of(&missing, None),
            (Wire::Require, Verify::Nothing, missing_file.clone())
        );
        let verify = [
            ("sslmode", "verify-ca"),
            ("sslrootcert", "/nonexistent/ca.pem"),
        ];
        assert_eq!(
            of(&verify, None),
            (Wire::Require, Verify::Chain, missing_file)
        );
    }

    #[test]
    fn sslrootcert_system_defaults_to_verify_full() {
        assert_eq!(
            of(&[("sslrootcert", "system")], None),
            (Wire::Require, Verify::Full, Roots::System)
        );
        assert_eq!(
            of(&[("sslrootcert", "system"), ("sslmode", "require")], None),
            (Wire::Require, Verify::Chain, Roots::System)
        );
    }

    #[test]
    fn unknown_modes_and_client_certs_are_refused_clearly() {
        let e = policy(&p(&[("sslmode", "verify_full")]), None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("sslmode \"verify_full\""), "{e}");
        assert!(e.contains("verify-full"), "{e}");
        let e = policy(&p(&[("sslcert", "/c.pem")]), None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("sslcert"), "{e}");
    }
}
