//! Opening a connection: TCP through the runtime, TLS (rustls, in core), the handshake and
//! authentication. Pools use it through [`cmap::Connector`](crate::cmap::Connector); monitors
//! use it without authentication.

use std::sync::Arc;
use std::time::Duration;

use bson::Document;

use super::handshake::{to_document, HandshakeRequest, StreamDescription};
use super::{connect_tcp, Connection};
use crate::auth::{AuthStep, Authenticator, HelloAuthInfo, ScramCache};
use crate::cmap::Connector;
use crate::error::{Error, ErrorKind, Result};
use crate::operation::{check_ok, Command};
use crate::options::{Credential, ServerAddress};
use crate::rt::{BoxFuture, Runtime, Stream};

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
        }
    }

    /// The server this establisher connects to.
    pub fn address(&self) -> &ServerAddress {
        &self.address
    }

    /// Opens a stream: TCP, then TLS if configured.
    async fn open_stream(&self) -> Result<Box<dyn Stream>> {
        let tcp = connect_tcp(&self.runtime, &self.address, self.connect_timeout).await?;
        match &self.tls {
            None => Ok(tcp),
            Some(config) => {
                let handshake = crate::tls::connect_tls(tcp, self.address.host(), config.clone());
                let tls = match self.connect_timeout.filter(|d| !d.is_zero()) {
                    Some(t) => {
                        use crate::rt::RuntimeExt;
                        self.runtime.timeout(t, handshake).await.map_err(|_| {
                            Error::from(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("TLS handshake with {} timed out", self.address),
                            ))
                        })??
                    }
                    None => handshake.await?,
                };
                Ok(Box::new(tls))
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
        let stream = self.open_stream().await?;
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
            conn.send_command(&cmd, request_id).await?
        } else {
            let body = bson::RawDocumentBuf::try_from(&request.command(true))?;
            conn.send_legacy_command("admin", body).await?
        };
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
        Box::pin(async move {
            this.establish(conn_id, generation, true)
                .await
                .map(|(conn, _)| conn)
        })
    }
}
