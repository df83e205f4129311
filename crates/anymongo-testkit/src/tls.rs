//! A throw-away TLS identity: a CA and a server certificate for `localhost` / `127.0.0.1`,
//! generated with rcgen, served with rustls.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A generated CA plus a server certificate signed by it, and the rustls server configuration.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// Where the CA PEM was written (under `std::env::temp_dir()`), for `tlsCAFile`. The file is
    /// removed when the last clone of the identity (including the server's) is dropped.
    pub ca_path: PathBuf,
    /// The CA certificate, DER (for a rustls client's root store).
    pub ca_der: CertificateDer<'static>,
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// The server's private key, PEM (PKCS#8).
    pub key_pem: String,
    pub(crate) config: Arc<ServerConfig>,
    /// Whether a server with this identity also serves clients that do not start TLS
    /// (mongod's `--tlsMode allowTLS`); see [`TlsIdentity::allowing_plaintext`].
    pub(crate) allow_plaintext: bool,
    /// Removes the CA file when the last clone of this identity is dropped.
    _file: Arc<CaFile>,
}

struct CaFile(PathBuf);

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

fn other<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

impl TlsIdentity {
    /// Generates a fresh CA and server certificate (SANs `localhost`, `127.0.0.1`) and writes the
    /// CA PEM to a unique file under the temp directory.
    pub fn generate() -> io::Result<Self> {
        Self::generate_for(&["localhost", "127.0.0.1"])
    }

    /// Like [`TlsIdentity::generate`], with the server certificate's SANs (DNS names or IP
    /// literals) given: e.g. a name the client does not connect with, to test hostname checks.
    pub fn generate_for(names: &[&str]) -> io::Result<Self> {
        let ca_key = KeyPair::generate().map_err(other)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "anymongo-testkit CA");
        let ca = ca_params.self_signed(&ca_key).map_err(other)?;

        let key = KeyPair::generate().map_err(other)?;
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(other)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(other)?;

        static SEQ: AtomicU32 = AtomicU32::new(0);
        let ca_path = std::env::temp_dir().join(format!(
            "anymongo-testkit-ca-{}-{}.pem",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&ca_path, ca.pem())?;
        let file = Arc::new(CaFile(ca_path.clone()));

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(other)?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), ca.der().clone()], key_der)
            .map_err(other)?;
        Ok(TlsIdentity {
            ca_pem: ca.pem(),
            ca_path,
            ca_der: ca.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            config: Arc::new(config),
            allow_plaintext: false,
            _file: file,
        })
    }

    /// This identity, for a server that also serves clients that do not start TLS, as mongod
    /// does with `--tlsMode allowTLS`: a connection whose first bytes are not a TLS handshake
    /// record is served in plain text.
    pub fn allowing_plaintext(mut self) -> Self {
        self.allow_plaintext = true;
        self
    }

    /// Whether the client on `stream` starts with a TLS handshake record (type 22, version 3.x),
    /// waiting for its first three bytes (without consuming them); `None` if it closes (or
    /// fails) first. A MongoDB message starting so would be at least 66 KiB long, which no
    /// first message is.
    pub(crate) fn starts_tls(stream: &std::net::TcpStream) -> Option<bool> {
        let mut head = [0u8; 3];
        loop {
            match stream.peek(&mut head) {
                Ok(n) if n >= 3 => {
                    return Some(head[0] == 0x16 && head[1] == 0x03 && head[2] <= 0x04)
                }
                Ok(0) | Err(_) => return None,
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
    }

    /// A rustls client configuration trusting only this identity's CA (for tests).
    pub fn client_config(&self) -> io::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(other)?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}
