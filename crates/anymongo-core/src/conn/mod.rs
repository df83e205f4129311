//! A connection to one server: a [`Stream`] plus the wire codec, exchanging whole messages.
//!
//! A connection is *poisoned* when an exchange did not finish (the future was dropped mid-write or
//! mid-read, or an I/O or protocol error happened): its stream may hold half a message, so it must
//! never be reused. The executor checks [`Connection::is_clean`] before check-in; the pool closes poisoned
//! connections instead of returning them.

mod establish;
pub use anymongo_proto::operation::handshake;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::RawDocumentBuf;

use crate::dns::Resolver;
use crate::error::{Error, ErrorKind, Result};
use crate::operation::Command;
use crate::options::{Compressor, ServerAddress};
use crate::rt::{Runtime, RuntimeExt, Stream, StreamExt};
use crate::wire::{self, Body, Decoder, Message, MsgFlags, OpQuery};

pub use establish::Establisher;
pub use handshake::{HandshakeRequest, StreamDescription};

/// How many socket reads [`Connection::read_message`] makes between two yields to the runtime
/// (a reply of up to 16 reads, 256 KiB to 4 MiB, never yields).
pub const READS_PER_YIELD: u32 = 16;

/// Request ids are unique per process, like other drivers do.
static NEXT_REQUEST_ID: AtomicI32 = AtomicI32::new(1);

/// A fresh request id (unique in this process).
pub fn next_request_id() -> i32 {
    NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed)
}

/// One connection to a server.
pub struct Connection {
    id: u64,
    address: ServerAddress,
    generation: u64,
    stream: Box<dyn Stream>,
    decoder: Decoder,
    write_buf: Vec<u8>,
    /// Shared so an operation can keep it past the connection's check-in without a copy.
    description: Option<Arc<StreamDescription>>,
    compressor: Option<Compressor>,
    /// Set while an exchange is under way; still set afterwards means it was interrupted.
    in_flight: bool,
    /// Set after an I/O or protocol error.
    broken: bool,
    socket_timeout: Option<Duration>,
    runtime: Arc<dyn Runtime>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("address", &self.address)
            .field("generation", &self.generation)
            .field("clean", &self.is_clean())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Wraps an established stream (TCP, or TLS over TCP). No handshake is done yet.
    pub fn new(
        id: u64,
        address: ServerAddress,
        generation: u64,
        stream: Box<dyn Stream>,
        runtime: Arc<dyn Runtime>,
    ) -> Self {
        Connection {
            id,
            address,
            generation,
            stream,
            decoder: Decoder::new(wire::DEFAULT_MAX_MESSAGE_SIZE),
            write_buf: Vec::with_capacity(1024),
            description: None,
            compressor: None,
            in_flight: false,
            broken: false,
            socket_timeout: None,
            runtime,
        }
    }

    /// The pool's id for this connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The server this connection is to.
    pub fn address(&self) -> &ServerAddress {
        &self.address
    }

    /// The pool generation the connection was created in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What the handshake learned about the server, once it is done.
    pub fn description(&self) -> Option<&StreamDescription> {
        self.description.as_deref()
    }

    /// The handshake's outcome as a shared handle (no copy).
    pub fn shared_description(&self) -> Option<Arc<StreamDescription>> {
        self.description.clone()
    }

    /// Records the handshake's outcome: limits and the negotiated compressor.
    ///
    /// The server's `maxMessageSizeBytes` can lower the bound on the messages this connection
    /// accepts, never raise it past [`wire::DEFAULT_MAX_MESSAGE_SIZE`] (the specification's
    /// 48,000,000 bytes, what every MongoDB server announces): a server that announces 2 GiB
    /// must not make the client buffer or decompress 2 GiB.
    pub fn set_description(&mut self, description: StreamDescription) {
        // A nonsensical limit from the server (negative, or too small for a header) keeps the
        // default.
        let max = usize::try_from(description.max_message_size_bytes)
            .ok()
            .filter(|&n| n >= wire::HEADER_LEN)
            .map_or(wire::DEFAULT_MAX_MESSAGE_SIZE, |n| {
                n.min(wire::DEFAULT_MAX_MESSAGE_SIZE)
            });
        self.decoder.set_max_message_size(max);
        self.compressor = description.compressor;
        self.description = Some(Arc::new(description));
    }

    /// Sets the socket timeout applied to each exchange (`socketTimeoutMS`); `None` waits forever.
    pub fn set_socket_timeout(&mut self, timeout: Option<Duration>) {
        self.socket_timeout = timeout.filter(|d| !d.is_zero());
    }

    /// Whether the connection can go back to the pool: no exchange was interrupted, no error.
    pub fn is_clean(&self) -> bool {
        !self.in_flight && !self.broken && self.decoder.buffered() == 0
    }

    /// Marks the connection unusable (e.g. the pool was cleared with interruption).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Sends `command` as an OP_MSG and returns the reply body. With `moreToCome` set on the
    /// command (unacknowledged writes) no reply is read and an empty document is returned.
    pub async fn send_command(
        &mut self,
        command: &Command<'_>,
        request_id: i32,
    ) -> Result<RawDocumentBuf> {
        let mut flags = MsgFlags::default();
        if command.more_to_come {
            flags.insert(MsgFlags::MORE_TO_COME);
        }
        let compressor = self
            .compressor
            .filter(|_| wire::command_may_be_compressed(command.name()));
        // Encoded straight from the command's parts into the write buffer: neither the body nor
        // the document sequences (an insert's documents) are copied into a message first.
        let encode = |out: &mut Vec<u8>| {
            wire::encode_command(
                request_id,
                flags,
                command.wire_body(),
                &command.sequences,
                compressor.as_ref(),
                out,
            )
        };
        let reply = self
            .exchange(request_id, encode, !command.more_to_come)
            .await?;
        match reply {
            None => Ok(RawDocumentBuf::new()),
            Some(Message {
                body: Body::Msg(msg),
                ..
            }) => Ok(msg.body),
            Some(other) => {
                self.broken = true;
                Err(Error::invalid_response(format!(
                    "expected an OP_MSG reply, got {}",
                    body_name(&other.body)
                )))
            }
        }
    }

    /// Sends `command` as an OP_MSG with `exhaustAllowed` set (a streaming hello) and returns
    /// the reply body and whether the server set `moreToCome` on it; if it did, read the next
    /// replies with [`read_streamed_reply`](Self::read_streamed_reply).
    pub async fn send_exhaust_allowed(
        &mut self,
        command: &Command<'_>,
        request_id: i32,
    ) -> Result<(RawDocumentBuf, bool)> {
        let compressor = self
            .compressor
            .filter(|_| wire::command_may_be_compressed(command.name()));
        let encode = |out: &mut Vec<u8>| {
            wire::encode_command(
                request_id,
                MsgFlags::EXHAUST_ALLOWED,
                command.wire_body(),
                &command.sequences,
                compressor.as_ref(),
                out,
            )
        };
        let reply = self.exchange(request_id, encode, true).await?;
        self.streamed_body(reply)
    }

    /// Reads the next reply of an exhaust stream (after a reply with `moreToCome`), bounded by
    /// the socket timeout. Returns its body and whether `moreToCome` is still set.
    pub async fn read_streamed_reply(&mut self) -> Result<(RawDocumentBuf, bool)> {
        if self.broken {
            return Err(Error::new(ErrorKind::Io(Arc::new(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "connection is no longer usable after a failed exchange",
            )))));
        }
        self.in_flight = true;
        let runtime = self.runtime.clone();
        let result = match self.socket_timeout {
            Some(t) => match runtime.timeout(t, self.read_message()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(ErrorKind::Io(Arc::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("socket timeout of {t:?} elapsed"),
                ))))),
            },
            None => self.read_message().await,
        };
        match result {
            Ok(message) => {
                self.in_flight = false;
                self.streamed_body(Some(message))
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    fn streamed_body(&mut self, reply: Option<Message>) -> Result<(RawDocumentBuf, bool)> {
        match reply {
            Some(Message {
                body: Body::Msg(msg),
                ..
            }) => Ok((msg.body, msg.flags.contains(MsgFlags::MORE_TO_COME))),
            other => {
                self.broken = true;
                Err(Error::invalid_response(format!(
                    "expected an OP_MSG reply, got {}",
                    other.map_or("nothing", |m| body_name(&m.body))
                )))
            }
        }
    }

    /// Sends a legacy OP_QUERY command (only the first handshake uses it) and returns the
    /// first document of the OP_REPLY.
    pub async fn send_legacy_command(
        &mut self,
        db: &str,
        body: RawDocumentBuf,
    ) -> Result<RawDocumentBuf> {
        let message = Message {
            request_id: next_request_id(),
            response_to: 0,
            body: Body::Query(OpQuery {
                flags: 0,
                full_collection_name: format!("{db}.$cmd"),
                number_to_skip: 0,
                number_to_return: -1,
                query: body,
                return_fields_selector: None,
            }),
            compressor_id: None,
        };
        let request_id = message.request_id;
        let encode = |out: &mut Vec<u8>| Ok(wire::encode(&message, None, out)?);
        match self.exchange(request_id, encode, true).await? {
            Some(Message {
                body: Body::Reply(reply),
                ..
            }) => reply.documents.into_iter().next().ok_or_else(|| {
                self.broken = true;
                Error::invalid_response("OP_REPLY without documents")
            }),
            Some(other) => {
                self.broken = true;
                Err(Error::invalid_response(format!(
                    "expected an OP_REPLY, got {}",
                    body_name(&other.body)
                )))
            }
            None => Err(Error::internal("legacy command expects a reply")),
        }
    }

    /// Encodes a message with `encode` into the write buffer, writes it and, if `expect_reply`,
    /// reads the reply to it. Poisons the connection if the future is dropped before it
    /// completes, or on any error once writing has begun (an encoding error sends nothing and
    /// leaves the connection usable).
    async fn exchange(
        &mut self,
        request_id: i32,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<()>,
        expect_reply: bool,
    ) -> Result<Option<Message>> {
        if !self.is_clean() {
            return Err(Error::new(ErrorKind::Io(Arc::new(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "connection is no longer usable after an interrupted or failed exchange",
            )))));
        }
        self.write_buf.clear();
        encode(&mut self.write_buf)?;
        self.in_flight = true;
        let result = match self.socket_timeout {
            Some(t) => {
                let runtime = self.runtime.clone();
                match runtime
                    .timeout(t, self.exchange_inner(request_id, expect_reply))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(Error::new(ErrorKind::Io(Arc::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("socket timeout of {t:?} elapsed"),
                    ))))),
                }
            }
            None => self.exchange_inner(request_id, expect_reply).await,
        };
        match &result {
            Ok(_) => self.in_flight = false,
            Err(_) => self.broken = true,
        }
        result
    }

    /// Writes the encoded message in the write buffer and reads the reply.
    async fn exchange_inner(
        &mut self,
        request_id: i32,
        expect_reply: bool,
    ) -> Result<Option<Message>> {
        self.stream.write_all(&self.write_buf).await?;
        self.stream.flush().await?;
        if self.write_buf.capacity() > 1 << 20 {
            // Do not keep a large document's buffer around for the life of the connection.
            self.write_buf = Vec::with_capacity(1024);
        }
        if !expect_reply {
            return Ok(None);
        }
        let reply = self.read_message().await?;
        if reply.response_to != request_id {
            return Err(Error::invalid_response(format!(
                "the reply answers request {}, not request {} (the one sent)",
                reply.response_to, request_id
            )));
        }
        Ok(Some(reply))
    }

    /// Reads the next whole message (used for replies and for exhaust/streaming hello).
    ///
    /// Yields to the runtime every [`READS_PER_YIELD`] reads: a server that keeps the socket
    /// readable would otherwise keep this loop from ever returning `Pending`, and a timeout
    /// around it (`socketTimeoutMS`) from being checked.
    pub async fn read_message(&mut self) -> Result<Message> {
        let mut reads = 0u32;
        loop {
            if let Some(message) = self.decoder.decode()? {
                return Ok(message);
            }
            reads += 1;
            if reads % READS_PER_YIELD == 0 {
                crate::rt::yield_now().await;
            }
            let buf = self.decoder.spare(16 * 1024);
            let n = self.stream.read(buf).await?;
            if n == 0 {
                return Err(Error::new(ErrorKind::Io(Arc::new(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )))));
            }
            self.decoder.commit(n);
        }
    }

    /// Closes the write half; errors are ignored (the connection is going away).
    pub async fn shutdown(&mut self) {
        self.broken = true;
        let _ = self.stream.shutdown().await;
    }
}

fn body_name(body: &Body) -> &'static str {
    match body {
        Body::Msg(_) => "OP_MSG",
        Body::Query(_) => "OP_QUERY",
        Body::Reply(_) => "OP_REPLY",
    }
}

/// Opens a TCP stream to `address`: resolves it, then tries each address in turn within
/// `connect_timeout` (`None` or zero means no timeout).
pub async fn connect_tcp(
    runtime: &Arc<dyn Runtime>,
    address: &ServerAddress,
    connect_timeout: Option<Duration>,
) -> Result<Box<dyn Stream>> {
    connect_tcp_staged(runtime, None, address, connect_timeout)
        .await
        .map_err(|failure| failure.error)
}

/// Why [`connect_tcp_staged`] failed, and whether the host name had been resolved by then.
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    pub(crate) error: Error,
    /// False when resolving the name failed (or timed out): such failures are never a sign of
    /// server overload (CMAP backpressure).
    pub(crate) resolved: bool,
}

/// [`connect_tcp`], telling name-resolution failures apart from connection failures. Host
/// names are resolved by `resolver` when it resolves them ([`Resolver::lookup_host`]), else by
/// the runtime. A Unix domain socket address connects through [`Runtime::connect_unix`].
pub(crate) async fn connect_tcp_staged(
    runtime: &Arc<dyn Runtime>,
    resolver: Option<&Arc<dyn Resolver>>,
    address: &ServerAddress,
    connect_timeout: Option<Duration>,
) -> std::result::Result<Box<dyn Stream>, ConnectFailure> {
    let (host, port) = match address {
        ServerAddress::Tcp { host, port } => (host.as_str(), *port),
        ServerAddress::Unix { path } => {
            let connect = runtime.connect_unix(std::path::Path::new(path));
            let result = match connect_timeout.filter(|d| !d.is_zero()) {
                Some(t) => match runtime.timeout(t, connect).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting to {path} timed out after {t:?}"),
                    )),
                },
                None => connect.await,
            };
            // Nothing to resolve: a failure is the socket's (as a TCP connection's would be).
            return result.map_err(|e| ConnectFailure {
                error: Error::from(e),
                resolved: true,
            });
        }
    };
    let resolved = std::sync::atomic::AtomicBool::new(false);
    let attempt = async {
        let addrs = match resolver.and_then(|r| r.lookup_host(host, port)) {
            Some(lookup) => lookup.await?,
            None => runtime.resolve(host, port).await?,
        };
        resolved.store(true, Ordering::Relaxed);
        let mut last_err = None;
        for addr in addrs {
            match runtime.connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last_err = Some(e),
            }
        }
        // Resolving to nothing is a name-resolution failure.
        resolved.store(last_err.is_some(), Ordering::Relaxed);
        Err(last_err.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} resolved to no addresses"),
            )
        }))
    };
    let result = match connect_timeout.filter(|d| !d.is_zero()) {
        Some(t) => match runtime.timeout(t, attempt).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {address} timed out after {t:?}"),
            )),
        },
        None => attempt.await,
    };
    result.map_err(|e| ConnectFailure {
        error: Error::from(e),
        resolved: resolved.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use bson::doc;

    use super::*;
    use crate::testing::ThreadRuntime;
    use crate::wire::OpMsg;

    /// A stream that records what is written and reads back scripted bytes.
    struct Scripted {
        written: Arc<Mutex<Vec<u8>>>,
        to_read: VecDeque<u8>,
    }

    impl Stream for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.to_read.len());
            for (slot, byte) in buf.iter_mut().zip(self.to_read.drain(..n)) {
                *slot = byte;
            }
            Poll::Ready(Ok(n))
        }
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.written.lock().unwrap().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn commands_go_out_as_before_and_an_unencodable_one_leaves_the_connection_usable() {
        let request_id = 77;
        let mut reply = Vec::new();
        let ok = Message {
            response_to: request_id,
            ..Message::new(
                5,
                Body::Msg(OpMsg::from_document(&doc! { "ok": 1 }).unwrap()),
            )
        };
        wire::encode(&ok, None, &mut reply).unwrap();
        let written = Arc::new(Mutex::new(Vec::new()));
        let stream = Scripted {
            written: written.clone(),
            to_read: reply.into(),
        };
        let mut conn = Connection::new(
            1,
            ServerAddress::tcp("localhost", 27017),
            0,
            Box::new(stream),
            Arc::new(ThreadRuntime),
        );

        let bad = Command::new("db", doc! { "find": "c", "filter": { "a\0b": 1 } });
        let err = futures::executor::block_on(conn.send_command(&bad, 76)).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Bson { .. }), "{err:?}");
        assert!(
            conn.is_clean(),
            "nothing was sent: the connection stays usable"
        );
        assert!(written.lock().unwrap().is_empty());

        let body = doc! { "find": "c", "filter": { "a": 1 } };
        let mut good = Command::borrowed("db", &body);
        good.set_read_preference(&crate::options::ReadPreference {
            mode: crate::options::ReadPreferenceMode::PrimaryPreferred,
            ..Default::default()
        });
        let reply = futures::executor::block_on(conn.send_command(&good, request_id)).unwrap();
        assert_eq!(reply.get_i32("ok").unwrap(), 1);
        assert!(conn.is_clean());
        let whole = doc! {
            "find": "c", "filter": { "a": 1 }, "$readPreference": { "mode": "primaryPreferred" },
            "$db": "db",
        };
        let mut expected = Vec::new();
        wire::encode_op_msg(
            request_id,
            MsgFlags::empty(),
            &RawDocumentBuf::try_from(&whole).unwrap(),
            &[],
            None,
            &mut expected,
        )
        .unwrap();
        assert_eq!(*written.lock().unwrap(), expected);
    }

    /// The server's `maxMessageSizeBytes` can lower the connection's bound on replies, never
    /// lift it: a hello announcing 2 GiB used to let a reply or an OP_COMPRESSED frame claim
    /// 2 GiB, which the client then allocated.
    #[test]
    fn the_server_cannot_lift_the_message_size_bound() {
        let stream = Scripted {
            written: Arc::default(),
            to_read: VecDeque::new(),
        };
        let mut conn = Connection::new(
            1,
            ServerAddress::tcp("localhost", 27017),
            0,
            Box::new(stream),
            Arc::new(ThreadRuntime),
        );
        for (announced, bound) in [
            (i64::from(i32::MAX), wire::DEFAULT_MAX_MESSAGE_SIZE),
            (1 << 40, wire::DEFAULT_MAX_MESSAGE_SIZE),
            (48_000_000, 48_000_000),
            (1_000_000, 1_000_000),
            (-1, wire::DEFAULT_MAX_MESSAGE_SIZE),
            (3, wire::DEFAULT_MAX_MESSAGE_SIZE),
        ] {
            let reply = doc! { "ok": 1, "maxWireVersion": 21, "maxMessageSizeBytes": announced };
            let description = StreamDescription::from_reply(&reply, &[]).unwrap();
            conn.set_description(description);
            assert_eq!(conn.decoder.max_message_size(), bound, "{announced}");
        }
    }

    /// A stream that always has one more byte of a 47 MB reply: never `Pending`.
    struct Endless {
        sent: usize,
    }

    impl Stream for Endless {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let mut start = Vec::new();
            for v in [47_000_000i32, 1, 0, 2013, 0] {
                start.extend_from_slice(&v.to_le_bytes());
            }
            start.push(0);
            start.extend_from_slice(&(47_000_000i32 - 21).to_le_bytes());
            buf[0] = start.get(self.sent).copied().unwrap_or(0x0A);
            self.sent += 1;
            Poll::Ready(Ok(1))
        }
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A socket that is always readable: the read loop yields to the runtime, so the socket
    /// timeout around it fires on time (before, the loop never returned `Pending` and the
    /// timeout was never polled until the whole reply had arrived).
    #[test]
    fn the_socket_timeout_fires_while_bytes_keep_arriving() {
        let mut conn = Connection::new(
            1,
            ServerAddress::tcp("localhost", 27017),
            0,
            Box::new(Endless { sent: 0 }),
            Arc::new(ThreadRuntime),
        );
        conn.set_socket_timeout(Some(Duration::from_millis(100)));
        let started = std::time::Instant::now();
        let err = futures::executor::block_on(conn.read_streamed_reply()).unwrap_err();
        match err.kind() {
            ErrorKind::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{err}"),
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(!conn.is_clean());
    }
}
