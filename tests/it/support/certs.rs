//! Throwaway certificates for the TLS tests, made with `rcgen` on aws-lc-rs and written as PEM
//! files into a temporary directory (the configuration names files, as in production).
//!
//! ```ignore
//! let pki = Pki::new("test");                  // a CA
//! let server = pki.issue("hub", &["127.0.0.1", "localhost"]); // server.cert / server.key
//! let peer = pki.issue("peer-a", &["peer-a"]); // a client certificate naming its node id
//! let outsider = Pki::new("outsider");         // another CA: its certificates are "wrong"
//! ```
//!
//! Not here: any check of the certificates (the code under test does that).

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tempfile::TempDir;

/// A CA and the directory its files go to.
pub struct Pki {
    name: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate (PEM file).
    pub ca: PathBuf,
    dir: TempDir,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("herald-pki-")
            .tempdir()
            .unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let ca = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca, certificate.pem()).unwrap();
        Pki {
            name: name.to_owned(),
            issuer: Issuer::new(params, key),
            ca,
            dir,
        }
    }

    /// A certificate signed by this CA for `names` (DNS names, or IP addresses), written as
    /// `<file>.pem` and `<file>-key.pem`.
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{file} ({})", self.name));
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let cert = self.dir.path().join(format!("{file}.pem"));
        let key_path = self.dir.path().join(format!("{file}-key.pem"));
        std::fs::write(&cert, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued {
            cert,
            key: key_path,
        }
    }

    /// A server certificate for loopback (`127.0.0.1` and `localhost`).
    pub fn loopback_server(&self, file: &str) -> Issued {
        self.issue(file, &["127.0.0.1", "localhost"])
    }

    /// Writes `content` to a file of this directory (a token file), returns its path.
    pub fn write(&self, file: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, content).unwrap();
        path
    }
}
