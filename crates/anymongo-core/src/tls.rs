//! TLS with rustls (ring provider), implemented once on top of [`Stream`] so that every runtime
//! gets byte-for-byte the same TLS.
//!
//! [`client_config`] turns the connection string's TLS options into a rustls `ClientConfig`;
//! [`connect_tls`] performs the handshake over any [`Stream`] and yields a [`TlsStream`], itself a
//! [`Stream`]. `TlsStream` drives `rustls::Connection` with `read_tls` / `write_tls` /
//! `process_new_packets` from `poll_*` methods; it never blocks and never spawns.

use std::fmt;
use std::future::poll_fn;
use std::io::{self, Read as _, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Connection, DigitallySignedStruct,
    RootCertStore, SignatureScheme,
};

use crate::error::{Error, ErrorKind, Result};
use crate::options::TlsOptions;
use crate::rt::Stream;

fn tls_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Tls {
        message: message.into(),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem_file(path: &str, option: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_error(format!("{option} '{path}' cannot be read: {e}")))
}

fn load_roots(opts: &TlsOptions) -> Result<RootCertStore> {
    let Some(path) = opts.ca_file.as_deref() else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let pem = read_pem_file(path, "tlsCAFile")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(format!("tlsCAFile '{path}' is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "tlsCAFile '{path}' contains no PEM certificates"
        )));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            tls_error(format!(
                "tlsCAFile '{path}' holds a certificate that cannot be a trust anchor: {e}"
            ))
        })?;
    }
    Ok(roots)
}

type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_client_identity(path: &str) -> Result<ClientIdentity> {
    let pem = read_pem_file(path, "tlsCertificateKeyFile")?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(tls_error(format!(
            "tlsCertificateKeyFile '{path}' holds an encrypted private key, which is not \
             supported (tlsCertificateKeyFilePassword); store the key unencrypted, e.g. with \
             `openssl pkcs8 -topk8 -nocrypt`"
        )));
    }
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            tls_error(format!(
                "tlsCertificateKeyFile '{path}' is not valid PEM: {e}"
            ))
        })?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "tlsCertificateKeyFile '{path}' contains no PEM certificate"
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        tls_error(format!(
            "tlsCertificateKeyFile '{path}' contains no usable private key: {e}"
        ))
    })?;
    Ok((certs, key))
}

/// The verifier of the lenient TLS options. Handshake signatures are always checked, so the
/// session is encrypted to whoever holds the presented certificate's key; what is relaxed is
/// the certificate:
/// - `chain: None` accepts any server certificate (`tlsAllowInvalidCertificates`);
/// - `chain: Some(..)` verifies the chain like the default verifier but ignores a host name
///   mismatch (`tlsAllowInvalidHostnames`). WebPKI checks the chain before the name, so a
///   `NotValidForName` error means the chain itself was valid.
#[derive(Debug)]
struct LenientVerifier {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for LenientVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Builds the rustls client configuration for `opts`.
///
/// Trust anchors come from `tlsCAFile` (PEM) or else the bundled web PKI roots; a client
/// certificate and key come from `tlsCertificateKeyFile` (PEM holding both; encrypted keys are
/// reported as unsupported). Certificates and host names are verified unless
/// `tlsAllowInvalidCertificates` (no certificate checks), `tlsAllowInvalidHostnames` (chain checked,
/// name not) or `tlsInsecure` (both) say otherwise. `tlsDisableOCSPEndpointCheck` and
/// `tlsDisableCertificateRevocationCheck` need no action: rustls fetches neither OCSP responses nor
/// CRLs. A `tlsCertificateKeyFilePassword` for an unencrypted key is not needed and is ignored.
/// Errors are [`ErrorKind::Tls`].
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let insecure = opts.insecure == Some(true);
    let allow_invalid_certificates = insecure || opts.allow_invalid_certificates == Some(true);
    let allow_invalid_hostnames = insecure || opts.allow_invalid_hostnames == Some(true);

    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("no usable TLS protocol version: {e}")))?;

    let builder = if allow_invalid_certificates {
        // The CA file is still read so that a bad path is reported, not silently ignored.
        if opts.ca_file.is_some() {
            load_roots(opts)?;
        }
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LenientVerifier {
                provider: provider.clone(),
                chain: None,
            }))
    } else {
        let roots = Arc::new(load_roots(opts)?);
        if allow_invalid_hostnames {
            let chain = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| tls_error(format!("cannot build the certificate verifier: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LenientVerifier {
                    provider: provider.clone(),
                    chain: Some(chain),
                }))
        } else {
            builder.with_root_certificates(roots)
        }
    };

    let config = match opts.cert_key_file.as_deref() {
        Some(path) => {
            let (certs, key) = load_client_identity(path)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                tls_error(format!(
                    "tlsCertificateKeyFile '{path}' cannot be used as a client identity: {e}"
                ))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The rustls name for `host`: an IP address literal (IPv6 with or without brackets) or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_string())
        .map_err(|e| tls_error(format!("'{host}' is not a valid TLS server name: {e}")))
}

/// Adapts a poll-based [`Stream`] to `std::io::{Read, Write}` for rustls: `Pending` becomes
/// `WouldBlock`, with the waker registered.
struct SyncIo<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
}

impl<S: Stream> io::Read for SyncIo<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: Stream> io::Write for SyncIo<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// A TLS session over a [`Stream`]; itself a [`Stream`] of plaintext.
pub struct TlsStream<S> {
    io: S,
    conn: Connection,
    close_sent: bool,
}

impl<S> fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.conn.is_handshaking())
            .field("protocol_version", &self.conn.protocol_version())
            .finish_non_exhaustive()
    }
}

impl<S: Stream> TlsStream<S> {
    fn new(io: S, conn: Connection) -> Self {
        TlsStream {
            io,
            conn,
            close_sent: false,
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The rustls connection (negotiated version, peer certificates, ...).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Writes every pending TLS record to the underlying stream.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut sync = SyncIo {
                io: &mut self.io,
                cx,
            };
            match self.conn.write_tls(&mut sync) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads TLS records from the underlying stream and processes them. `Ok(0)` is end of stream.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut sync = SyncIo {
            io: &mut self.io,
            cx,
        };
        let n = match self.conn.read_tls(&mut sync) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        if let Err(e) = self.conn.process_new_packets() {
            // Best effort: tell the peer why (rustls queued an alert).
            let _ = self.poll_write_tls(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(n))
    }

    /// Drives the handshake to completion.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let write_pending = match self.poll_write_tls(cx) {
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => true,
            };
            if !self.conn.is_handshaking() {
                if write_pending {
                    return Poll::Pending;
                }
                return Pin::new(&mut self.io).poll_flush(cx);
            }
            if self.conn.wants_read() {
                if !write_pending {
                    ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                }
                match ready!(self.poll_read_tls(cx)) {
                    Ok(0) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection was closed during the TLS handshake",
                        )))
                    }
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            } else if write_pending {
                return Poll::Pending;
            } else {
                return Poll::Ready(Err(io::Error::other(
                    "the TLS handshake stalled: nothing to read or write",
                )));
            }
        }
    }
}

/// Maps a handshake I/O error: rustls protocol and certificate errors become
/// [`ErrorKind::Tls`], transport errors stay I/O errors.
fn handshake_error(server_name: &str, e: io::Error) -> Error {
    let is_tls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_tls {
        tls_error(format!("TLS handshake with '{server_name}' failed: {e}"))
    } else {
        Error::from(e)
    }
}

/// Performs a TLS client handshake over `stream`, verifying the server as `server_name` (a host
/// name, or an IP address literal) according to `config`.
pub async fn connect_tls<S: Stream>(
    stream: S,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<S>> {
    let name = self::server_name(server_name)?;
    let conn = ClientConnection::new(config, name)
        .map_err(|e| tls_error(format!("cannot start TLS with '{server_name}': {e}")))?;
    let mut tls = TlsStream::new(stream, Connection::Client(conn));
    poll_fn(|cx| tls.poll_handshake(cx))
        .await
        .map_err(|e| handshake_error(server_name, e))?;
    Ok(tls)
}

impl<S: Stream> Stream for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            match this.conn.reader().read(buf) {
                // Ok(0) after close_notify: a clean end of stream.
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // UnexpectedEof: the transport closed without close_notify.
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Flush records rustls wants to send (alerts, key updates) without waiting on them.
            if let Poll::Ready(Err(e)) = this.poll_write_tls(cx) {
                return Poll::Ready(Err(e));
            }
            if ready!(this.poll_read_tls(cx))? == 0 {
                // The transport is at EOF; the reader now reports clean or unexpected EOF.
                return match this.conn.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Ready(Ok(0)),
                    other => Poll::Ready(other),
                };
            }
        }
    }

    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut flushed_everything = false;
        loop {
            let n = this.conn.writer().write(buf)?;
            let pending = match this.poll_write_tls(cx) {
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => true,
            };
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            if pending {
                return Poll::Pending;
            }
            if flushed_everything {
                // rustls accepted nothing even with empty buffers: cannot make progress.
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            flushed_everything = true;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.writer().flush()?;
        ready!(this.poll_write_tls(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.conn.send_close_notify();
            this.close_sent = true;
        }
        ready!(this.poll_write_tls(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::StreamExt;
    use futures::executor::block_on;
    use futures::future::join;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ServerConfig, ServerConnection};
    use std::collections::VecDeque;
    use std::path::PathBuf;
    use std::sync::{Mutex, OnceLock};
    use std::task::Waker;

    // ---- an in-memory duplex pipe, small chunks and little buffer space ----

    #[derive(Default)]
    struct Direction {
        buf: VecDeque<u8>,
        writer_closed: bool,
        reader_closed: bool,
        read_waker: Option<Waker>,
        write_waker: Option<Waker>,
    }

    struct PipeEnd {
        rx: Arc<Mutex<Direction>>,
        tx: Arc<Mutex<Direction>>,
        chunk: usize,
        cap: usize,
    }

    fn lock(d: &Mutex<Direction>) -> std::sync::MutexGuard<'_, Direction> {
        d.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Two connected ends; each read or write moves at most `chunk` bytes, and at most `cap`
    /// bytes wait in each direction.
    fn duplex(chunk: usize, cap: usize) -> (PipeEnd, PipeEnd) {
        let ab = Arc::new(Mutex::new(Direction::default()));
        let ba = Arc::new(Mutex::new(Direction::default()));
        (
            PipeEnd {
                rx: ba.clone(),
                tx: ab.clone(),
                chunk,
                cap,
            },
            PipeEnd {
                rx: ab,
                tx: ba,
                chunk,
                cap,
            },
        )
    }

    impl Stream for PipeEnd {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let mut d = lock(&self.rx);
            if d.buf.is_empty() {
                if d.writer_closed {
                    return Poll::Ready(Ok(0));
                }
                d.read_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = buf.len().min(self.chunk).min(d.buf.len());
            for (slot, byte) in buf.iter_mut().zip(d.buf.drain(..n)) {
                *slot = byte;
            }
            if let Some(w) = d.write_waker.take() {
                w.wake();
            }
            Poll::Ready(Ok(n))
        }

        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let mut d = lock(&self.tx);
            if d.reader_closed || d.writer_closed {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let space = self.cap.saturating_sub(d.buf.len());
            if space == 0 {
                d.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = buf.len().min(self.chunk).min(space);
            d.buf.extend(&buf[..n]);
            if let Some(w) = d.read_waker.take() {
                w.wake();
            }
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut d = lock(&self.tx);
            d.writer_closed = true;
            if let Some(w) = d.read_waker.take() {
                w.wake();
            }
            Poll::Ready(Ok(()))
        }
    }

    impl Drop for PipeEnd {
        fn drop(&mut self) {
            let mut tx = lock(&self.tx);
            tx.writer_closed = true;
            if let Some(w) = tx.read_waker.take() {
                w.wake();
            }
            drop(tx);
            let mut rx = lock(&self.rx);
            rx.reader_closed = true;
            if let Some(w) = rx.write_waker.take() {
                w.wake();
            }
        }
    }

    // ---- certificates made at test time ----

    struct Pki {
        dir: PathBuf,
        ca_file: String,
        other_ca_file: String,
        ca_der: CertificateDer<'static>,
        server_chain: Vec<CertificateDer<'static>>,
        server_key_der: Vec<u8>,
        client_file: String,
    }

    fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-signed");
        (cert, key)
    }

    fn pki() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("anymongo-tls-test-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let (ca_cert, ca_key) = ca("anymongo test CA");
            let (other_cert, _) = ca("unrelated CA");

            let server_key = KeyPair::generate().expect("key");
            let mut sp =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                    .expect("params");
            sp.distinguished_name.push(DnType::CommonName, "localhost");
            let server_cert = sp.signed_by(&server_key, &ca_cert, &ca_key).expect("sign");

            let client_key = KeyPair::generate().expect("key");
            let mut cp = CertificateParams::new(Vec::<String>::new()).expect("params");
            cp.distinguished_name.push(DnType::CommonName, "client");
            let client_cert = cp.signed_by(&client_key, &ca_cert, &ca_key).expect("sign");

            let write = |name: &str, text: String| {
                let path = dir.join(name);
                std::fs::write(&path, text).expect("write pem");
                path.to_string_lossy().into_owned()
            };
            let ca_file = write("ca.pem", ca_cert.pem());
            let other_ca_file = write("other-ca.pem", other_cert.pem());
            let client_file = write(
                "client.pem",
                format!("{}{}", client_cert.pem(), client_key.serialize_pem()),
            );
            Pki {
                ca_der: ca_cert.der().clone(),
                server_chain: vec![server_cert.der().clone()],
                server_key_der: server_key.serialize_der(),
                dir,
                ca_file,
                other_ca_file,
                client_file,
            }
        })
    }

    fn server_config(require_client_cert: bool) -> Arc<ServerConfig> {
        let pki = pki();
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots.add(pki.ca_der.clone()).expect("root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone()));
        Arc::new(
            builder
                .with_single_cert(pki.server_chain.clone(), key)
                .expect("server cert"),
        )
    }

    fn opts(ca_file: Option<&str>) -> TlsOptions {
        TlsOptions {
            ca_file: ca_file.map(str::to_string),
            ..Default::default()
        }
    }

    type Pair = (Result<TlsStream<PipeEnd>>, io::Result<TlsStream<PipeEnd>>);

    /// Handshakes a client configured by `opts` (connecting to `host`) with the test server.
    fn handshake(opts: &TlsOptions, host: &str, require_client_cert: bool) -> Pair {
        let (c, s) = duplex(517, 4096);
        let config = client_config(opts).expect("client config");
        let server_cfg = server_config(require_client_cert);
        let client = connect_tls(c, host, config);
        let server = async move {
            let conn = ServerConnection::new(server_cfg).map_err(io::Error::other)?;
            let mut tls = TlsStream::new(s, Connection::Server(conn));
            poll_fn(|cx| tls.poll_handshake(cx)).await?;
            Ok(tls)
        };
        block_on(join(client, server))
    }

    fn assert_tls_err<T: fmt::Debug>(r: Result<T>, needle: &str) {
        let err = r.expect_err("handshake must fail");
        assert!(
            matches!(err.kind(), ErrorKind::Tls { .. }),
            "not a TLS error: {err}"
        );
        assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
    }

    #[test]
    fn right_ca_file_succeeds_for_name_and_ip() {
        let pki = pki();
        for host in ["localhost", "127.0.0.1"] {
            let (client, server) = handshake(&opts(Some(&pki.ca_file)), host, false);
            let client = client.expect("client handshake");
            server.expect("server handshake");
            assert!(client.connection().protocol_version().is_some());
            assert!(!format!("{client:?}").is_empty());
        }
    }

    #[test]
    fn wrong_ca_fails() {
        let pki = pki();
        let (client, _) = handshake(&opts(Some(&pki.other_ca_file)), "localhost", false);
        assert_tls_err(client, "UnknownIssuer");
    }

    #[test]
    fn default_web_pki_roots_reject_a_private_ca() {
        let (client, _) = handshake(&opts(None), "localhost", false);
        assert_tls_err(client, "UnknownIssuer");
    }

    #[test]
    fn wrong_hostname_fails() {
        let pki = pki();
        let (client, _) = handshake(&opts(Some(&pki.ca_file)), "mongo.example.com", false);
        assert_tls_err(client, "certificate");
        let (client, _) = handshake(&opts(Some(&pki.ca_file)), "10.1.2.3", false);
        assert_tls_err(client, "certificate");
    }

    #[test]
    fn allow_invalid_hostnames_ignores_only_the_name() {
        let pki = pki();
        let mut o = opts(Some(&pki.ca_file));
        o.allow_invalid_hostnames = Some(true);
        let (client, server) = handshake(&o, "mongo.example.com", false);
        client.expect("name mismatch allowed");
        server.expect("server");
        let mut o = opts(Some(&pki.other_ca_file));
        o.allow_invalid_hostnames = Some(true);
        let (client, _) = handshake(&o, "mongo.example.com", false);
        assert_tls_err(client, "UnknownIssuer");
    }

    #[test]
    fn allow_invalid_certificates_accepts_unknown_ca() {
        let pki = pki();
        let mut o = opts(Some(&pki.other_ca_file));
        o.allow_invalid_certificates = Some(true);
        let (client, server) = handshake(&o, "localhost", false);
        client.expect("unknown CA allowed");
        server.expect("server");
        let mut o = opts(None);
        o.allow_invalid_certificates = Some(true);
        client_config(&o).expect("no CA file needed");
    }

    #[test]
    fn insecure_accepts_everything() {
        let pki = pki();
        let mut o = opts(Some(&pki.other_ca_file));
        o.insecure = Some(true);
        let (client, server) = handshake(&o, "mongo.example.com", false);
        client.expect("insecure");
        server.expect("server");
    }

    #[test]
    fn client_certificate_is_presented() {
        let pki = pki();
        let mut o = opts(Some(&pki.ca_file));
        o.cert_key_file = Some(pki.client_file.clone());
        let (client, server) = handshake(&o, "localhost", true);
        client.expect("client");
        let server = server.expect("server accepted the client certificate");
        let peer = server
            .connection()
            .peer_certificates()
            .expect("client cert seen");
        assert_eq!(peer.len(), 1);
    }

    #[test]
    fn missing_client_certificate_is_refused_by_the_server() {
        let pki = pki();
        let (_, server) = handshake(&opts(Some(&pki.ca_file)), "localhost", true);
        assert!(server.is_err());
    }

    #[test]
    fn bad_files_give_clear_tls_errors() {
        let pki = pki();
        let missing = pki
            .dir
            .join("does-not-exist.pem")
            .to_string_lossy()
            .into_owned();
        assert_tls_err(client_config(&opts(Some(&missing))), "cannot be read");
        let mut o = opts(Some(&missing));
        o.allow_invalid_certificates = Some(true);
        assert_tls_err(client_config(&o), "cannot be read");

        let garbage = pki.dir.join("garbage.pem");
        std::fs::write(&garbage, "not a pem file\n").expect("write");
        let garbage = garbage.to_string_lossy().into_owned();
        assert_tls_err(client_config(&opts(Some(&garbage))), "no PEM certificates");

        let mut o = opts(Some(&pki.ca_file));
        o.cert_key_file = Some(pki.ca_file.clone());
        assert_tls_err(client_config(&o), "no usable private key");
        o.cert_key_file = Some(garbage);
        assert_tls_err(client_config(&o), "no PEM certificate");
        o.cert_key_file = Some(missing);
        assert_tls_err(client_config(&o), "cannot be read");

        let encrypted = pki.dir.join("encrypted.pem");
        let ca_pem = std::fs::read_to_string(&pki.ca_file).expect("read");
        std::fs::write(
            &encrypted,
            format!("{ca_pem}-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"),
        )
        .expect("write");
        o.cert_key_file = Some(encrypted.to_string_lossy().into_owned());
        o.cert_key_file_password = Some(crate::options::Redacted("pw".into()));
        assert_tls_err(client_config(&o), "encrypted private key");
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("localhost"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert_tls_err(server_name("bad name!"), "not a valid TLS server name");
    }

    #[test]
    fn peer_closing_mid_handshake_is_an_error() {
        let pki = pki();
        let (c, s) = duplex(64, 1024);
        drop(s);
        let config = client_config(&opts(Some(&pki.ca_file))).expect("config");
        let err = block_on(connect_tls(c, "localhost", config)).expect_err("closed");
        assert!(err.is_network_error(), "{err}");
    }

    #[test]
    fn garbage_from_the_server_is_a_tls_error() {
        let pki = pki();
        let (c, mut s) = duplex(64, 4096);
        let config = client_config(&opts(Some(&pki.ca_file))).expect("config");
        let server = async move {
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .await
                .expect("write");
            let mut sink = [0u8; 512];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let (client, ()) = block_on(join(connect_tls(c, "localhost", config), server));
        assert_tls_err(client, "TLS handshake");
    }

    #[test]
    fn one_mebibyte_round_trip_with_partial_reads_and_writes() {
        let pki = pki();
        let (client, server) = handshake(&opts(Some(&pki.ca_file)), "localhost", false);
        let mut client = client.expect("client");
        let mut server = server.expect("server");
        let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();

        let client_side = async move {
            client.write_all(&data).await?;
            client.flush().await?;
            let mut echoed = Vec::with_capacity(data.len());
            let mut buf = [0u8; 333];
            while echoed.len() < data.len() {
                let n = client.read(&mut buf).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                echoed.extend_from_slice(&buf[..n]);
            }
            client.shutdown().await?;
            Ok::<_, io::Error>(echoed)
        };
        let server_side = async move {
            let mut received = Vec::new();
            let mut buf = [0u8; 1000];
            while received.len() < 1024 * 1024 {
                let n = server.read(&mut buf).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                received.extend_from_slice(&buf[..n]);
            }
            server.write_all(&received).await?;
            server.flush().await?;
            // The client's close_notify is a clean end of stream.
            let n = server.read(&mut buf).await?;
            Ok::<_, io::Error>((received, n))
        };
        let (echoed, served) = block_on(join(client_side, server_side));
        let (received, after_close) = served.expect("server side");
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "server received different bytes");
        assert!(echoed.expect("client side") == expected, "echo differs");
        assert_eq!(after_close, 0);
    }

    #[test]
    fn works_over_boxed_dyn_streams() {
        let pki = pki();
        let (c, s) = duplex(4096, 65536);
        let boxed: Box<dyn Stream> = Box::new(c);
        let config = client_config(&opts(Some(&pki.ca_file))).expect("config");
        let server_cfg = server_config(false);
        let server = async move {
            let conn = ServerConnection::new(server_cfg).map_err(io::Error::other)?;
            let mut tls = TlsStream::new(s, Connection::Server(conn));
            poll_fn(|cx| tls.poll_handshake(cx)).await?;
            let mut buf = [0u8; 5];
            let mut got = 0;
            while got < buf.len() {
                let n = tls.read(&mut buf[got..]).await?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            Ok::<_, io::Error>(buf[..got].to_vec())
        };
        let client = async move {
            let tls = connect_tls(boxed, "localhost", config).await?;
            // The connection layer keeps TLS sessions as `Box<dyn Stream>` too.
            let mut stream: Box<dyn Stream> = Box::new(tls);
            stream.write_all(b"hello").await?;
            stream.flush().await?;
            Ok::<_, Error>(stream)
        };
        let (client, server) = block_on(join(client, server));
        let _keep_open = client.expect("client");
        assert_eq!(server.expect("server"), b"hello");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

            #[test]
            fn garbage_handshake_bytes_never_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..3000),
                tls_prefix in any::<bool>(),
            ) {
                let pki = pki();
                let (c, mut s) = duplex(97, 8192);
                let config = client_config(&opts(Some(&pki.ca_file))).expect("config");
                let mut bytes = bytes;
                if tls_prefix {
                    // Look like a TLS 1.2 handshake record so rustls parses deeper.
                    let mut rec = vec![0x16, 0x03, 0x03, (bytes.len() >> 8) as u8, bytes.len() as u8];
                    rec.append(&mut bytes);
                    bytes = rec;
                }
                let server = async move {
                    let _ = s.write_all(&bytes).await;
                    drop(s);
                };
                let (client, ()) = block_on(join(connect_tls(c, "localhost", config), server));
                prop_assert!(client.is_err());
            }
        }
    }

    #[test]
    fn transport_eof_without_close_notify_is_reported() {
        let pki = pki();
        let (client, server) = handshake(&opts(Some(&pki.ca_file)), "localhost", false);
        let mut client = client.expect("client");
        drop(server.expect("server"));
        let mut buf = [0u8; 16];
        let r = block_on(client.read(&mut buf));
        // Either the server's session ticket arrives first, then EOF, or EOF at once: never a
        // clean close, never a panic.
        let r = match r {
            Ok(n) if n > 0 => block_on(client.read(&mut buf)),
            other => other,
        };
        let err = r.expect_err("no close_notify");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
