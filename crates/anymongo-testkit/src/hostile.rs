//! A hostile server: a raw TCP server on std threads that speaks just enough of the wire
//! protocol (the legacy `isMaster` and OP_MSG `hello` handshakes) to get a client connected,
//! then misbehaves on purpose in one [`Hostile`] way: lying lengths, compression bombs, deep
//! nesting, slowloris, half replies then silence, mismatched `responseTo`, endless cursors,
//! accept-and-close.
//!
//! It allocates little itself (what it sends is written from small buffers, a deep document is
//! built once as bytes), so a test can measure the client's memory while it runs.
//!
//! ```no_run
//! use anymongo_testkit::hostile::{Hostile, HostileServer};
//! let server = HostileServer::start(Hostile::LyingLength { announced: i32::MAX, sent: 64 });
//! let uri = server.uri(); // mongodb://127.0.0.1:<port>/?directConnection=true
//! # let _ = uri;
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bson::{doc, Document, RawDocumentBuf};

/// How the server misbehaves. The handshake (`isMaster`/`hello`, on application and monitoring
/// connections alike) is answered honestly unless said otherwise, announcing a
/// `maxMessageSizeBytes` of 2^31-1 (a server cannot lift the client's bound); `killCursors`
/// and `endSessions` are answered `{ok: 1}`; every other command gets the misbehavior.
#[derive(Debug, Clone)]
pub enum Hostile {
    /// A reply header announcing `announced` bytes, then `sent` bytes of it, then the socket
    /// closes.
    LyingLength { announced: i32, sent: usize },
    /// An OP_COMPRESSED reply with compressor `compressor_id`, announcing `uncompressed_size`
    /// bytes, holding `payload`.
    CompressedBomb {
        compressor_id: u8,
        uncompressed_size: i32,
        payload: Vec<u8>,
    },
    /// Replies nesting a document `depth` levels deep: `find` gets it as its one batch
    /// document, any other command as the field `deep` of `{ok: 1}`.
    DeepReply { depth: usize },
    /// `{ok: 0, code: 10107, topologyVersion: <depth levels>}`.
    DeepTopologyVersion { depth: usize },
    /// Hello replies with a field `deep` nested `depth` levels: a client that merely connects
    /// reads it (its monitor and its handshake).
    DeepHello { depth: usize },
    /// A reply announcing `announced` bytes whose body then streams `chunk` bytes every `every`
    /// (a reply that keeps the socket readable for as long as it takes).
    Streaming {
        announced: i32,
        chunk: usize,
        every: Duration,
    },
    /// A valid `{ok: 1}` reply sent one byte every `every`.
    Slowloris { every: Duration },
    /// Half of a valid reply, then silence (the socket stays open).
    HalfThenSilence,
    /// A valid reply whose `responseTo` is not the request's id.
    WrongResponseTo,
    /// `find` opens a cursor that never ends: every `getMore` returns `batch` more documents.
    EndlessCursor { batch: usize },
    /// Every connection is accepted and closed at once.
    AcceptAndClose,
    /// Every connection is accepted, read from, and never answered.
    AcceptAndSilence,
}

/// What the server saw.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicUsize,
    commands: Mutex<Vec<String>>,
}

/// A running hostile server; stops (closing its sockets) when dropped.
#[derive(Debug)]
pub struct HostileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    accept: Option<JoinHandle<()>>,
}

impl HostileServer {
    /// Starts a server on an ephemeral port of 127.0.0.1.
    pub fn start(behavior: Hostile) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let behavior = Arc::new(behavior);
        let accept = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("hostile-accept".into())
                .spawn(move || accept_loop(listener, behavior, stop, stats))
                .expect("spawn the accept thread")
        };
        HostileServer {
            addr,
            stop,
            stats,
            accept: Some(accept),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mongodb://127.0.0.1:<port>/?directConnection=true`.
    pub fn uri(&self) -> String {
        format!("mongodb://{}/?directConnection=true", self.addr)
    }

    /// How many connections were accepted.
    pub fn connection_count(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// The names of the commands received, in order (handshakes included).
    pub fn commands(&self) -> Vec<String> {
        self.stats
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    behavior: Arc<Hostile>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) {
    let mut connections = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                stats.connections.fetch_add(1, Ordering::SeqCst);
                if matches!(*behavior, Hostile::AcceptAndClose) {
                    drop(stream);
                    continue;
                }
                let (behavior, stop, stats) = (behavior.clone(), stop.clone(), stats.clone());
                let spawned = std::thread::Builder::new()
                    .name("hostile-conn".into())
                    .spawn(move || {
                        let _ = serve(stream, &behavior, &stop, &stats);
                    });
                if let Ok(t) = spawned {
                    connections.push(t);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for t in connections {
        let _ = t.join();
    }
}

/// One request: its id, opcode and command document.
struct Request {
    id: i32,
    op: i32,
    command: RawDocumentBuf,
}

impl Request {
    fn name(&self) -> String {
        self.command
            .iter()
            .next()
            .and_then(|e| e.ok())
            .map(|(k, _)| k.to_string())
            .unwrap_or_default()
    }
}

const OP_REPLY: i32 = 1;
const OP_COMPRESSED: i32 = 2012;
const OP_QUERY: i32 = 2004;
const OP_MSG: i32 = 2013;

/// Reads one request, polling `stop` while waiting; `None` once the peer closed or we stop.
fn read_request(s: &mut TcpStream, stop: &AtomicBool) -> io::Result<Option<Request>> {
    let mut header = [0u8; 16];
    if !read_full(s, &mut header, stop)? {
        return Ok(None);
    }
    let word =
        |i: usize| i32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, id, op) = (word(0), word(4), word(12));
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (16..=16 << 20).contains(l))
        .ok_or_else(|| io::Error::other("bad request length"))?;
    let mut body = vec![0u8; len - 16];
    if !read_full(s, &mut body, stop)? {
        return Ok(None);
    }
    let doc_at = match op {
        OP_QUERY => {
            // flags, full collection name, numberToSkip, numberToReturn, query.
            let name_end = body[4..]
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| io::Error::other("bad OP_QUERY"))?;
            4 + name_end + 1 + 8
        }
        OP_MSG => 5,
        _ => return Err(io::Error::other(format!("unexpected opcode {op}"))),
    };
    let doc = body.get(doc_at..).unwrap_or_default();
    let doc_len = doc
        .get(..4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .and_then(|l| usize::try_from(l).ok())
        .filter(|&l| l <= doc.len())
        .ok_or_else(|| io::Error::other("bad command document"))?;
    let command = RawDocumentBuf::from_bytes(doc[..doc_len].to_vec()).map_err(io::Error::other)?;
    Ok(Some(Request { id, op, command }))
}

/// Fills `buf`; `false` if the peer closed first or the server is stopping.
fn read_full(s: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> io::Result<bool> {
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut filled = 0;
    while filled < buf.len() {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match s.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Sleeps `d` in steps, returning `false` early once the server is stopping.
fn pause(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
    }
    true
}

fn serve(mut s: TcpStream, behavior: &Hostile, stop: &AtomicBool, stats: &Stats) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut next_id = 1;
    while let Some(req) = read_request(&mut s, stop)? {
        let name = req.name();
        stats
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        next_id += 1;
        let hello = ["hello", "isMaster", "ismaster"].contains(&name.as_str());
        if matches!(behavior, Hostile::AcceptAndSilence) {
            continue;
        }
        if hello {
            let mut body = raw(&hello_reply());
            if let Hostile::DeepHello { depth } = behavior {
                body = with_raw_element(&body, "deep", 0x03, &nested(*depth));
            }
            s.write_all(&reply(next_id, &req, &body))?;
            continue;
        }
        if ["killCursors", "endSessions"].contains(&name.as_str()) {
            s.write_all(&reply(next_id, &req, &raw(&doc! { "ok": 1 })))?;
            continue;
        }
        match behavior {
            Hostile::LyingLength { announced, sent } => {
                let mut out = header(*announced, next_id, req.id, OP_MSG);
                out.resize(16 + sent, 0);
                s.write_all(&out)?;
                return Ok(());
            }
            Hostile::CompressedBomb {
                compressor_id,
                uncompressed_size,
                payload,
            } => {
                let len = i32::try_from(16 + 9 + payload.len()).unwrap_or(i32::MAX);
                let mut out = header(len, next_id, req.id, OP_COMPRESSED);
                out.extend_from_slice(&OP_MSG.to_le_bytes());
                out.extend_from_slice(&uncompressed_size.to_le_bytes());
                out.push(*compressor_id);
                out.extend_from_slice(payload);
                s.write_all(&out)?;
            }
            Hostile::DeepReply { depth } => {
                let deep = nested(*depth);
                let body = if name == "find" {
                    cursor_reply(&[deep], 0, "firstBatch")
                } else {
                    with_raw_element(&raw(&doc! { "ok": 1 }), "deep", 0x03, &deep)
                };
                s.write_all(&reply(next_id, &req, &body))?;
            }
            Hostile::DeepTopologyVersion { depth } => {
                let base = raw(&doc! { "ok": 0, "code": 10107, "errmsg": "not primary" });
                let body = with_raw_element(&base, "topologyVersion", 0x03, &nested(*depth));
                s.write_all(&reply(next_id, &req, &body))?;
            }
            Hostile::DeepHello { .. } => {
                s.write_all(&reply(next_id, &req, &raw(&doc! { "ok": 1 })))?;
            }
            Hostile::Streaming {
                announced,
                chunk,
                every,
            } => {
                // A body-only OP_MSG whose document announces the rest of the message.
                let mut out = header(*announced, next_id, req.id, OP_MSG);
                out.extend_from_slice(&0u32.to_le_bytes());
                out.push(0);
                out.extend_from_slice(&(announced - 21).to_le_bytes());
                s.write_all(&out)?;
                let filler = vec![0x0A_u8; *chunk];
                let mut left = usize::try_from(announced - 25).unwrap_or(0);
                while left > 0 {
                    let n = left.min(filler.len());
                    if s.write_all(&filler[..n]).is_err() || !pause(*every, stop) {
                        return Ok(());
                    }
                    left -= n;
                }
            }
            Hostile::Slowloris { every } => {
                for byte in reply(next_id, &req, &raw(&doc! { "ok": 1 })) {
                    if s.write_all(&[byte]).is_err() || !pause(*every, stop) {
                        return Ok(());
                    }
                }
            }
            Hostile::HalfThenSilence => {
                let whole = reply(
                    next_id,
                    &req,
                    &raw(&doc! { "ok": 1, "pad": "x".repeat(64) }),
                );
                s.write_all(&whole[..whole.len() / 2])?;
                while pause(Duration::from_millis(100), stop) {}
                return Ok(());
            }
            Hostile::WrongResponseTo => {
                let mut out = reply(next_id, &req, &raw(&doc! { "ok": 1 }));
                out[8..12].copy_from_slice(&req.id.wrapping_add(1000).to_le_bytes());
                s.write_all(&out)?;
            }
            Hostile::EndlessCursor { batch } => {
                let docs: Vec<Vec<u8>> = (0..*batch)
                    .map(|i| raw(&doc! { "_id": i as i64, "pad": "endless" }))
                    .collect();
                let key = if name == "getMore" {
                    "nextBatch"
                } else {
                    "firstBatch"
                };
                s.write_all(&reply(next_id, &req, &cursor_reply(&docs, 7, key)))?;
            }
            Hostile::AcceptAndClose | Hostile::AcceptAndSilence => {}
        }
    }
    Ok(())
}

/// The hello the server answers with: a standalone that announces a 2^31-1 byte message
/// bound.
fn hello_reply() -> Document {
    doc! {
        "ok": 1, "helloOk": true, "isWritablePrimary": true, "ismaster": true,
        "minWireVersion": 0, "maxWireVersion": 21,
        "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": i32::MAX,
        "maxWriteBatchSize": 100_000, "connectionId": 1,
    }
}

fn raw(d: &Document) -> Vec<u8> {
    RawDocumentBuf::try_from(d)
        .map(RawDocumentBuf::into_bytes)
        .unwrap_or_else(|_| vec![5, 0, 0, 0, 0])
}

/// `doc` (bytes) with one more element, of type `kind`, whose value is `value` (bytes).
fn with_raw_element(doc: &[u8], key: &str, kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = doc[..doc.len() - 1].to_vec();
    out.push(kind);
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    out.extend_from_slice(value);
    out.push(0);
    let len = i32::try_from(out.len()).unwrap_or(i32::MAX);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// `{cursor: {<key>: [docs...], id, ns: "hostile.c"}, ok: 1}` as bytes.
fn cursor_reply(docs: &[Vec<u8>], id: i64, key: &str) -> Vec<u8> {
    let mut array = vec![0u8; 4];
    for (i, d) in docs.iter().enumerate() {
        array.push(0x03);
        array.extend_from_slice(i.to_string().as_bytes());
        array.push(0);
        array.extend_from_slice(d);
    }
    array.push(0);
    let len = i32::try_from(array.len()).unwrap_or(i32::MAX);
    array[..4].copy_from_slice(&len.to_le_bytes());
    // `{<key>: [...]}`, then the elements of `{id, ns}` spliced in after the batch.
    let mut cursor = with_raw_element(&raw(&doc! {}), key, 0x04, &array);
    let tail = raw(&doc! { "id": id, "ns": "hostile.c" });
    cursor.pop();
    cursor.extend_from_slice(&tail[4..]);
    let len = i32::try_from(cursor.len()).unwrap_or(i32::MAX);
    cursor[..4].copy_from_slice(&len.to_le_bytes());
    with_raw_element(&raw(&doc! { "ok": 1 }), "cursor", 0x03, &cursor)
}

/// `depth` levels of `{"n": {"n": ... {}}}` as bytes (the document itself is level 1).
pub fn nested(depth: usize) -> Vec<u8> {
    let depth = depth.max(1);
    let mut out = Vec::with_capacity(depth * 8);
    for level in (1..depth).rev() {
        let len = i32::try_from(5 + level * 8).unwrap_or(i32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0x03, b'n', 0]);
    }
    out.extend_from_slice(&[5, 0, 0, 0, 0]);
    out.resize(out.len() + depth - 1, 0);
    out
}

fn header(len: i32, id: i32, response_to: i32, op: i32) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    for v in [len, id, response_to, op] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// The reply to `req` holding `body`: an OP_REPLY for an OP_QUERY, else an OP_MSG.
fn reply(id: i32, req: &Request, body: &[u8]) -> Vec<u8> {
    let mut out = if req.op == OP_QUERY {
        let mut h = header(0, id, req.id, OP_REPLY);
        h.extend_from_slice(&0i32.to_le_bytes()); // responseFlags
        h.extend_from_slice(&0i64.to_le_bytes()); // cursorID
        h.extend_from_slice(&0i32.to_le_bytes()); // startingFrom
        h.extend_from_slice(&1i32.to_le_bytes()); // numberReturned
        h
    } else {
        let mut h = header(0, id, req.id, OP_MSG);
        h.extend_from_slice(&0u32.to_le_bytes());
        h.push(0);
        h
    };
    out.extend_from_slice(body);
    let len = i32::try_from(out.len()).unwrap_or(i32::MAX);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}
