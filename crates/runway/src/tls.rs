//! TLS to the stores (PostgreSQL, Redis, RabbitMQ): the trust roots (a CA
//! file, else the system's) and the rustls client configurations for the
//! three levels of checking the stores' URL conventions ask for.
//!
//! Everything uses ring, explicitly, rather than a process-wide default
//! provider: the static musl build carries no other, and a provider chosen
//! by whichever dependency asks first would make the checks depend on
//! initialisation order.

pub mod postgres;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("CA file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {path}: no PEM certificate in it (give the CA's certificate in PEM form)")]
    NoCertificate { path: PathBuf },
    #[error("CA file {path}: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("the system's CA certificates could not be loaded ({0}); give a CA file")]
    SystemRoots(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verify {
    /// Nothing: encryption only (libpq `require` without a CA, Celery
    /// `ssl_cert_reqs=none`).
    Nothing,
    /// The chain up to a trusted root, not the name (libpq `verify-ca`).
    Chain,
    /// The chain and that the certificate names the host (libpq
    /// `verify-full`, Celery `required`, `amqps://`).
    Full,
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Roots {
    /// The PEM certificates of this file, and only those.
    File(PathBuf),
    /// The system's certificate store.
    System,
}

impl Roots {
    /// The given CA file, else the system's roots.
    pub fn file_or_system(file: Option<&Path>) -> Roots {
        file.map_or(Roots::System, |p| Roots::File(p.to_owned()))
    }

    pub fn load(&self) -> Result<RootCertStore, Error> {
        match self {
            Roots::File(path) => {
                let mut store = RootCertStore::empty();
                for cert in read_pem(path)? {
                    store.add(cert).map_err(|e| Error::BadCertificate {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                }
                Ok(store)
            }
            Roots::System => system_roots(),
        }
    }
}

/// The PEM certificates of a CA file (at least one).
pub fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadCa {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::BadCertificate {
            path: path.to_owned(),
            message: format!("not PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    // Stores often hold a few certificates webpki cannot parse: skip them,
    // as browsers do, but fail when nothing usable is left.
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(Error::SystemRoots(why));
    }
    Ok(store)
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration checking the server as `verify` says against
/// `roots` (unused for [`Verify::Nothing`]).
pub fn client_config(verify: Verify, roots: &Roots) -> Result<ClientConfig, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier(verify, roots, provider)?)
        .with_no_client_auth())
}

fn verifier(
    verify: Verify,
    roots: &Roots,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, Error> {
    Ok(match verify {
        Verify::Nothing => Arc::new(NoVerification(provider)),
        Verify::Chain => Arc::new(ChainOnly(webpki(roots, provider)?)),
        Verify::Full => webpki(roots, provider)?,
    })
}

fn webpki(
    roots: &Roots,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, Error> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots.load()?), provider)
        .build()
        .map_err(|e| Error::Rustls(rustls::Error::General(e.to_string())))
}

// === impl NoVerification ===

/// Accepts any certificate; the handshake's signatures are still checked,
/// so the session is encrypted to whoever holds the presented key.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// === impl ChainOnly ===

/// webpki's checks minus the name: webpki checks the chain before the
/// name, so a name error means the chain itself was trusted.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
