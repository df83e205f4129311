//! Opening a connection: TCP through the runtime, TLS (rustls, in core), the handshake and
//! authentication. Pools use it through [`cmap::Connector`](crate::cmap::Connector); monitors
//! use it without authentication.

use std::sync::Arc;
use std::time::Duration;

use bson::Document;

use super::handshake::{HandshakeRequest, StreamDescription};
use super::{connect_tcp_staged, Connection};
use crate::auth::{AuthStep, Authenticator, HelloAuthInfo, ScramCache};
use crate::cmap::Connector;
use crate::dns::Resolver;
use crate::error::{Error, ErrorKind, Result, RETRYABLE_ERROR, SYSTEM_OVERLOADED_ERROR};
use crate::operation::{check_ok, Command};
use crate::options::{Credential, ServerAddress};
use crate::rt::{BoxFuture, Runtime, Stream};
use crate::wire::raw::to_document;

/// Everything needed to open connections to one server.
#[derive(Clone)]
pub struct Establisher {
    runtime: Arc<dyn Runtime>,
    address: ServerAddress,
    connect_timeout: Option<Duration>,
    socket_timeout: Option<Duration>,
    tls: Option<Arc<rustls::ClientConfig>>,
    handshake: HandshakeRequest,
    credential: Option<Credential>,
    scram_cache: ScramCache,
    /// Resolves host names when it does so (a resolver with name servers of its own).
    resolver: Option<Arc<dyn Resolver>>,
}

impl std::fmt::Debug for Establisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Establisher")
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .field("authenticates", &self.credential.is_some())
            .finish_non_exhaustive()
    }
}

impl Establisher {
    /// An establisher for `address`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runtime: Arc<dyn Runtime>,
        address: ServerAddress,
        connect_timeout: Option<Duration>,
        socket_timeout: Option<Duration>,
        tls: Option<Arc<rustls::ClientConfig>>,
        handshake: HandshakeRequest,
        credential: Option<Credential>,
        scram_cache: ScramCache,
    ) -> Self {
        Establisher {
            runtime,
            address,
            connect_timeout,
            socket_timeout,
            tls,
            handshake,
            credential,
            scram_cache,
            resolver: None,
        }
    }

    /// Resolves host names with `resolver` (when it resolves them: [`Resolver::lookup_host`]).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// The server this establisher connects to.
    pub fn address(&self) -> &ServerAddress {
        &self.address
    }

    /// Opens a stream: TCP, then TLS if configured. On failure, also says whether the failure
    /// may be a sign of server overload (an I/O error or timeout after the name was resolved;
    /// not a DNS failure, nor a certificate or other non-I/O TLS error).
    async fn open_stream(&self) -> std::result::Result<Box<dyn Stream>, (Error, bool)> {
        if self.tls.is_some() && matches!(self.address, ServerAddress::Unix { .. }) {
            return Err((
                Error::invalid_argument(format!(
                    "TLS over a Unix domain socket is not supported: {}",
                    self.address
                )),
                false,
            ));
        }
        let tcp = connect_tcp_staged(
            &self.runtime,
            self.resolver.as_ref(),
            &self.address,
            self.connect_timeout,
        )
        .await
        .map_err(|f| {
            let overload = f.resolved && f.error.is_network_error();
            (f.error, overload)
        })?;
        match &self.tls {
            None => Ok(tcp),
            Some(config) => {
                let handshake = crate::tls::connect_tls(tcp, self.address.host(), config.clone());
                let tls = match self.connect_timeout.filter(|d| !d.is_zero()) {
                    Some(t) => {
                        use crate::rt::RuntimeExt;
                        match self.runtime.timeout(t, handshake).await {
                            Ok(r) => r,
                            Err(_) => Err(Error::from(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("TLS handshake with {} timed out", self.address),
                            ))),
                        }
                    }
                    None => handshake.await,
                };
                match tls {
                    Ok(tls) => Ok(Box::new(tls)),
                    Err(e) => {
                        let overload = e.is_network_error();
                        Err((e, overload))
                    }
                }
            }
        }
    }

    /// Opens connection `id` and runs the handshake; with `authenticate`, also authenticates.
    /// A server whose wire versions do not overlap the driver's is refused with
    /// `IncompatibleServer`. Returns the connection and the handshake's hello reply.
    pub async fn establish(
        &self,
        id: u64,
        generation: u64,
        authenticate: bool,
    ) -> Result<(Connection, Document)> {
        self.establish_inner(id, generation, authenticate, true)
            .await
    }

    /// Like [`Establisher::establish`], for a pool: network errors and timeouts while connecting
    /// or during the handshake's hello get the CMAP backpressure labels
    /// ([`SYSTEM_OVERLOADED_ERROR`] and [`RETRYABLE_ERROR`]); authentication errors,
    /// DNS failures and certificate errors do not.
    pub async fn establish_for_pool(&self, id: u64, generation: u64) -> Result<Connection> {
        self.establish_inner(id, generation, true, true)
            .await
            .map(|(conn, _)| conn)
    }

    /// Opens a monitoring connection: the handshake only, no authentication, and no
    /// wire-version judgement. The reply goes to discovery, which marks an incompatible
    /// server's topology incompatible (so server selection fails at once with
    /// `IncompatibleServer` instead of waiting for a server that never becomes known).
    pub async fn establish_for_monitoring(&self, id: u64) -> Result<(Connection, Document)> {
        self.establish_inner(id, 0, false, false).await
    }

    async fn establish_inner(
        &self,
        id: u64,
        generation: u64,
        authenticate: bool,
        check_wire_version: bool,
    ) -> Result<(Connection, Document)> {
        // Backpressure labels concern application connections, not monitoring ones.
        let label = |e: Error, overload: bool| {
            if overload && check_wire_version {
                with_backpressure_labels(e)
            } else {
                e
            }
        };
        let stream = self.open_stream().await.map_err(|(e, o)| label(e, o))?;
        let mut conn = Connection::new(
            id,
            self.address.clone(),
            generation,
            stream,
            self.runtime.clone(),
        );
        // The handshake is bounded by connectTimeoutMS, like the connect itself.
        conn.set_socket_timeout(self.connect_timeout);
        let mut request = self.handshake.clone();
        let mut authenticator = match (&self.credential, authenticate) {
            (Some(credential), true) => {
                let mut auth = Authenticator::new(credential, &self.scram_cache)?;
                request.sasl_supported_mechs = auth.sasl_supported_mechs();
                request.speculative_authenticate = auth.speculative()?;
                Some(auth)
            }
            _ => None,
        };
        let reply = if request.uses_op_msg() {
            let cmd = Command::new("admin", request.command(false));
            let request_id = super::next_request_id();
            conn.send_command(&cmd, request_id).await
        } else {
            let body = bson::RawDocumentBuf::try_from(&request.command(true))?;
            conn.send_legacy_command("admin", body).await
        }
        .map_err(|e| {
            let overload = e.is_network_error();
            label(e, overload)
        })?;
        check_ok(&reply)?;
        let reply = to_document(&reply)?;
        let description = StreamDescription::parse(&reply, &request.compressors)?;
        if check_wire_version {
            description.check_wire_version()?;
        }
        conn.set_description(description);
        if let Some(auth) = authenticator.as_mut() {
            authenticate_connection(&mut conn, auth, &reply).await?;
        }
        conn.set_socket_timeout(self.socket_timeout);
        Ok((conn, reply))
    }
}

fn with_backpressure_labels(mut e: Error) -> Error {
    e.add_label(SYSTEM_OVERLOADED_ERROR);
    e.add_label(RETRYABLE_ERROR);
    e
}

/// Runs an authentication conversation on `conn` after its handshake reply `hello`.
async fn authenticate_connection(
    conn: &mut Connection,
    auth: &mut Authenticator,
    hello: &Document,
) -> Result<()> {
    let mut step = auth.start(&HelloAuthInfo::from_hello_reply(hello))?;
    // A conversation has a handful of steps; bound it so a confused server cannot loop us.
    for _ in 0..16 {
        match step {
            AuthStep::Done => return Ok(()),
            AuthStep::Send { command, db } => {
                let cmd = Command::new(db, command);
                let reply = conn.send_command(&cmd, super::next_request_id()).await?;
                let reply = to_document(&reply)?;
                step = auth.handle_reply(&reply)?;
            }
        }
    }
    Err(Error::new(ErrorKind::Authentication {
        message: "the server did not finish the authentication conversation".into(),
    }))
}

impl Connector for Establisher {
    type Conn = Connection;

    fn connect(&self, conn_id: u64, generation: u64) -> BoxFuture<'static, Result<Connection>> {
        let this = self.clone();
        Box::pin(async move { this.establish_for_pool(conn_id, generation).await })
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Instant;

    use super::*;
    use crate::rt::Sleep;
    use crate::testing::ThreadRuntime;

    /// How the scripted runtime's name resolution and connects behave.
    #[derive(Clone, Copy)]
    enum Script {
        /// Resolution fails.
        NoSuchHost,
        /// Resolution works, the connect is refused.
        Refused,
        /// The connection opens, and the server closes it without answering the hello.
        ClosedDuringHello,
    }

    struct ScriptedRuntime(Script);

    /// A stream that swallows writes and reads end-of-stream.
    struct Eof;

    impl Stream for Eof {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(0))
        }
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Runtime for ScriptedRuntime {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn spawn(&self, fut: BoxFuture<'static, ()>) {
            ThreadRuntime.spawn(fut)
        }
        fn now(&self) -> Instant {
            Instant::now()
        }
        fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
            ThreadRuntime.sleep_until(deadline)
        }
        fn connect(&self, _: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
            let script = self.0;
            Box::pin(async move {
                match script {
                    Script::ClosedDuringHello => Ok(Box::new(Eof) as Box<dyn Stream>),
                    _ => Err(io::ErrorKind::ConnectionRefused.into()),
                }
            })
        }
        fn resolve(&self, _: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            let script = self.0;
            Box::pin(async move {
                match script {
                    Script::NoSuchHost => Err(io::Error::other("no such host")),
                    _ => Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]),
                }
            })
        }
    }

    fn establisher(script: Script) -> Establisher {
        Establisher::new(
            Arc::new(ScriptedRuntime(script)),
            ServerAddress::tcp("db.example", 27017),
            None,
            None,
            None,
            HandshakeRequest::default(),
            None,
            ScramCache::default(),
        )
    }

    fn is_labelled(e: &Error) -> bool {
        e.contains_label(SYSTEM_OVERLOADED_ERROR) && e.contains_label(RETRYABLE_ERROR)
    }

    #[test]
    fn pool_connections_label_network_errors_for_backpressure() {
        for script in [Script::Refused, Script::ClosedDuringHello] {
            let e = futures::executor::block_on(establisher(script).establish_for_pool(1, 0))
                .unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Io(_)), "{e}");
            assert!(is_labelled(&e), "{e} {:?}", e.labels());
        }
    }

    #[test]
    fn dns_failures_and_monitoring_connections_are_not_labelled() {
        let e =
            futures::executor::block_on(establisher(Script::NoSuchHost).establish_for_pool(1, 0))
                .unwrap_err();
        assert!(!is_labelled(&e), "{e} {:?}", e.labels());
        let e = futures::executor::block_on(
            establisher(Script::ClosedDuringHello).establish_for_monitoring(1),
        )
        .unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Io(_)), "{e}");
        assert!(e.labels().is_empty(), "{:?}", e.labels());
    }

    #[test]
    fn only_io_errors_are_network_errors() {
        let io = Error::from(io::Error::from(io::ErrorKind::TimedOut));
        assert!(io.is_network_error());
        let tls = Error::new(ErrorKind::Tls {
            message: "certificate not trusted".into(),
        });
        assert!(!tls.is_network_error());
        let auth = Error::new(ErrorKind::Authentication {
            message: "bad password".into(),
        });
        assert!(!auth.is_network_error());
    }
}
