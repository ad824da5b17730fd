//! The three levels of checking against certificates made here: a CA, a
//! server certificate it signed for `localhost`, and a CA that signed nothing.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;

struct Pki {
    dir: PathBuf,
    server: CertificateDer<'static>,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("runway-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| unreachable!("{e}"));
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap_or_else(|e| unreachable!("{e}"));
            let mut p = CertificateParams::new(Vec::<String>::new())
                .unwrap_or_else(|e| unreachable!("{e}"));
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name
                .push(rcgen::DnType::CommonName, name.to_owned());
            let cert = p.self_signed(&key).unwrap_or_else(|e| unreachable!("{e}"));
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("test CA");
        let (other, _) = ca("other CA");
        let key = KeyPair::generate().unwrap_or_else(|e| unreachable!("{e}"));
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .and_then(|p| p.signed_by(&key, &ca_cert, &ca_key))
            .unwrap_or_else(|e| unreachable!("{e}"));
        for (name, pem) in [("ca.pem", ca_cert.pem()), ("other.pem", other.pem())] {
            std::fs::write(dir.join(name), pem).unwrap_or_else(|e| unreachable!("{e}"));
        }
        Pki {
            dir,
            server: server.der().clone(),
        }
    }

    fn check(&self, verify: Verify, ca: &str, host: &str) -> Result<(), rustls::Error> {
        let roots = Roots::File(self.dir.join(ca));
        let v = verifier(verify, &roots, provider()).unwrap_or_else(|e| unreachable!("{e}"));
        let name = ServerName::try_from(host.to_owned()).unwrap_or_else(|e| unreachable!("{e}"));
        v.verify_server_cert(&self.server, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn full_checks_chain_and_name_chain_only_the_chain_nothing_nothing() {
    let pki = Pki::new("levels");
    assert_eq!(pki.check(Verify::Full, "ca.pem", "localhost"), Ok(()));
    let wrong_name = pki.check(Verify::Full, "ca.pem", "127.0.0.1");
    assert!(
        matches!(
            wrong_name,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{wrong_name:?}"
    );
    assert_eq!(pki.check(Verify::Chain, "ca.pem", "127.0.0.1"), Ok(()));
    for verify in [Verify::Full, Verify::Chain] {
        assert_eq!(
            pki.check(verify, "other.pem", "localhost"),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )),
            "{verify:?}"
        );
    }
    assert_eq!(pki.check(Verify::Nothing, "other.pem", "127.0.0.1"), Ok(()));
}

#[test]
fn ca_files_must_hold_pem_certificates() {
    let pki = Pki::new("files");
    let empty = pki.dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap_or_else(|e| unreachable!("{e}"));
    let e = Roots::File(empty).load().err().map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("no PEM certificate")));
    let missing = Roots::File(pki.dir.join("missing.pem")).load();
    assert!(matches!(missing, Err(Error::ReadCa { .. })), "{missing:?}");
    assert!(Roots::File(pki.dir.join("ca.pem")).load().is_ok());
}
