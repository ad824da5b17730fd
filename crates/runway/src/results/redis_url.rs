//! A Redis result-backend URL as Celery reads it, TLS included:
//! `rediss://` with Celery's own query parameters `ssl_cert_reqs`
//! (`required`/`CERT_REQUIRED`, `optional`/`CERT_OPTIONAL`,
//! `none`/`CERT_NONE`) and `ssl_ca_certs` (a PEM file). The same URL is
//! Dagster's `backend` setting, so the worker and the Celery client agree.
//!
//! Celery refuses a `rediss://` URL without `ssl_cert_reqs`; here it
//! defaults to `required`, the safe reading. `optional` checks as
//! `required` does: Python's client-side `CERT_OPTIONAL` verifies the
//! certificate, and redis-py checks the host name for both.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::tls::Verify;

const CELERY_SSL_KEYS: [&str; 4] = [
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "ssl_cert_reqs={0:?}: expected required, optional or none (or CERT_REQUIRED, \
         CERT_OPTIONAL, CERT_NONE), as Celery reads it"
    )]
    CertReqs(String),
    #[error("{0} is given on a redis:// URL: a Redis TLS URL uses the rediss:// scheme")]
    SchemeMismatch(String),
    #[error("{0} (a client certificate) is not supported; authenticate with the URL's password")]
    ClientCert(String),
}

/// The URL for the redis crate (Celery's parameters taken out) and how TLS
/// is checked, `None` for plain `redis://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub verify: Verify,
    /// The CA to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
}

/// Splits Celery's TLS parameters out of `url`; `ca_file` is the
/// `--redis-ca-file` option, which wins over `ssl_ca_certs` (a path where
/// Dagster runs, maybe not in this pod).
pub fn target(url: &str, ca_file: Option<&Path>) -> Result<Target, Error> {
    let (head, fragment) = match url.split_once('#') {
        Some((h, f)) => (h, Some(f)),
        None => (url, None),
    };
    let (base, query) = head.split_once('?').unwrap_or((head, ""));
    let mut kept = Vec::new();
    let mut ssl: Vec<(&str, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match CELERY_SSL_KEYS.iter().find(|key| **key == k) {
            Some(key) => ssl.push((key, percent_decode(v))),
            None => kept.push(pair),
        }
    }
    let get = |key: &str| {
        ssl.iter()
            .rev()
            .find(|(k, v)| *k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let mut clean = base.to_owned();
    if !kept.is_empty() {
        clean.push('?');
        clean.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        clean.push('#');
        clean.push_str(f);
    }
    if !url.starts_with("rediss://") {
        if let Some((key, _)) = ssl.first() {
            return Err(Error::SchemeMismatch((*key).to_owned()));
        }
        return Ok(Target {
            url: clean,
            tls: None,
        });
    }
    for key in ["ssl_certfile", "ssl_keyfile"] {
        if get(key).is_some() {
            return Err(Error::ClientCert(key.to_owned()));
        }
    }
    let verify = match get("ssl_cert_reqs").as_deref() {
        None | Some("required" | "CERT_REQUIRED" | "optional" | "CERT_OPTIONAL") => Verify::Full,
        Some("none" | "CERT_NONE") => Verify::Nothing,
        Some(other) => return Err(Error::CertReqs(other.to_owned())),
    };
    let ca = ca_file
        .map(Path::to_owned)
        .or_else(|| get("ssl_ca_certs").map(PathBuf::from));
    Ok(Target {
        url: clean,
        tls: Some(Tls { verify, ca }),
    })
}

/// Celery unquotes its parameters (a path may be `%2F`-encoded).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = s.get(i + 1..i + 3).filter(|_| bytes[i] == b'%');
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str, ca: Option<&Path>) -> Target {
        target(url, ca).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn plain_urls_pass_through() {
        let t = ok("redis://:pw@r:6379/0?protocol=resp2", None);
        assert_eq!(t.url, "redis://:pw@r:6379/0?protocol=resp2");
        assert_eq!(t.tls, None);
    }

    #[test]
    fn celery_cert_reqs_spellings() {
        for (v, want) in [
            ("required", Verify::Full),
            ("CERT_REQUIRED", Verify::Full),
            ("optional", Verify::Full),
            ("CERT_OPTIONAL", Verify::Full),
            ("none", Verify::Nothing),
            ("CERT_NONE", Verify::Nothing),
        ] {
            let t = ok(&format!("rediss://r:6380/1?ssl_cert_reqs={v}"), None);
            assert_eq!(t.url, "rediss://r:6380/1", "{v}");
            assert_eq!(t.tls.map(|t| t.verify), Some(want), "{v}");
        }
        assert_eq!(
            ok("rediss://r/0", None).tls.map(|t| t.verify),
            Some(Verify::Full)
        );
    }

    #[test]
    fn the_ca_comes_from_our_option_then_ssl_ca_certs() {
        let url = "rediss://r/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fetc%2Fca.pem&protocol=resp3";
        let t = ok(url, None);
        assert_eq!(t.url, "rediss://r/0?protocol=resp3");
        assert_eq!(t.tls.and_then(|t| t.ca), Some(PathBuf::from("/etc/ca.pem")));
        let t = ok(url, Some(Path::new("/mnt/ca.pem")));
        assert_eq!(t.tls.and_then(|t| t.ca), Some(PathBuf::from("/mnt/ca.pem")));
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            target("rediss://r/0?ssl_cert_reqs=maybe", None),
            Err(Error::CertReqs("maybe".into()))
        );
        assert_eq!(
            target("redis://r/0?ssl_cert_reqs=required", None),
            Err(Error::SchemeMismatch("ssl_cert_reqs".into()))
        );
        assert_eq!(
            target("rediss://r/0?ssl_certfile=/c.pem", None),
            Err(Error::ClientCert("ssl_certfile".into()))
        );
        let e = Error::CertReqs("maybe".into()).to_string();
        assert!(e.contains("CERT_REQUIRED"), "{e}");
    }
}
