//! Certificates for tests of etcd over TLS, made with `rcgen`: a CA, a server certificate for
//! 127.0.0.1, and client certificates whose CN is the etcd user (etcd's `--client-cert-auth`).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;

/// A CA and the certificates it signed, as PEM files in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// CA `ca` signs the server's certificate (SAN 127.0.0.1) and clients `root`, `n1`, `n2`;
    /// CA `other` signs a second `n1`, which the member must not trust.
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let ca = pki.ca("ca");
        pki.leaf(&ca, "server", "etcd", true);
        for cn in ["root", "n1", "n2"] {
            pki.leaf(&ca, cn, cn, false);
        }
        let other = pki.ca("other");
        pki.leaf(&other, "n1-other", "n1", false);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pem"))
    }

    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}-key.pem"))
    }

    fn ca(&self, name: &str) -> Issuer<'static, KeyPair> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("wiremesh test {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(self.path(name), cert.pem()).unwrap();
        Issuer::new(params, key)
    }

    fn leaf(&self, ca: &Issuer<'static, KeyPair>, name: &str, cn: &str, server: bool) {
        let key = KeyPair::generate().unwrap();
        let sans = if server {
            vec!["127.0.0.1".to_string()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, ca).unwrap();
        std::fs::write(self.path(name), cert.pem()).unwrap();
        std::fs::write(self.key_path(name), key.serialize_pem()).unwrap();
    }
}
