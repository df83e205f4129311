//! The raw-socket floor: OP_MSG requests encoded before the clock starts, written with a plain
//! blocking `std::net::TcpStream`, each reply read whole and discarded. No driver work at all
//! (no server selection, pool, events, or reply parsing beyond what a cursor needs).
//! Also the harness's own setup channel (drop, seed).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use bson::{Document, RawDocument};

const OP_MSG: i32 = 2013;

/// Encodes an OP_MSG: a kind-0 body (with `$db` appended) and an optional kind-1 sequence.
pub fn op_msg(
    request_id: i32,
    db: &str,
    body: &Document,
    sequence: Option<(&str, &[Document])>,
) -> Vec<u8> {
    let mut body = body.clone();
    body.insert("$db", db);
    let mut out = vec![0u8; 16];
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    body.to_writer(&mut out).expect("encode body");
    if let Some((id, docs)) = sequence {
        out.push(1);
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(id.as_bytes());
        out.push(0);
        for d in docs {
            d.to_writer(&mut out).expect("encode document");
        }
        let len = (out.len() - start) as i32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
    let len = out.len() as i32;
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&request_id.to_le_bytes());
    out[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
    out
}

/// One blocking connection.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: i32,
}

impl RawConn {
    /// Connects with Nagle off (as the drivers do).
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            next_id: 1,
        })
    }

    /// Writes pre-encoded request bytes and reads the whole reply into the buffer.
    pub fn round_trip(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_le_bytes(len);
        if !(16..=64 << 20).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad reply length",
            ));
        }
        self.buf.clear();
        self.buf.resize(len as usize - 4, 0);
        self.stream.read_exact(&mut self.buf)
    }

    /// The body of the last reply (an OP_MSG with one kind-0 section).
    pub fn reply(&self) -> io::Result<&RawDocument> {
        let body = self
            .buf
            .get(12 + 4 + 1..)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short reply"))?;
        RawDocument::from_bytes(body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    /// Fails unless the last reply has `ok: 1`.
    pub fn check_ok(&self) -> io::Result<()> {
        let reply = self.reply()?;
        let ok = match reply.get("ok") {
            Ok(Some(bson::RawBsonRef::Double(v))) => v == 1.0,
            Ok(Some(bson::RawBsonRef::Int32(v))) => v == 1,
            Ok(Some(bson::RawBsonRef::Int64(v))) => v == 1,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            let doc = Document::try_from(reply).unwrap_or_default();
            Err(io::Error::other(format!("command failed: {doc}")))
        }
    }

    /// Encodes and runs one command (setup only, not timed); returns the reply.
    pub fn command(
        &mut self,
        db: &str,
        body: &Document,
        sequence: Option<(&str, &[Document])>,
    ) -> io::Result<Document> {
        self.next_id += 1;
        let req = op_msg(self.next_id, db, body, sequence);
        self.round_trip(&req)?;
        Document::try_from(self.reply()?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    /// Drains a cursor: `find` (pre-encoded) then `getMore`s; returns the number of documents.
    pub fn drain(
        &mut self,
        find: &[u8],
        db: &str,
        coll: &str,
        batch: Option<i32>,
    ) -> io::Result<u64> {
        self.round_trip(find)?;
        let mut docs = 0u64;
        let mut key = "firstBatch";
        loop {
            let reply = self.reply()?;
            let cursor = reply
                .get_document("cursor")
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            docs += cursor
                .get_array(key)
                .map(|a| a.into_iter().count() as u64)
                .unwrap_or(0);
            let id = cursor.get_i64("id").unwrap_or(0);
            if id == 0 {
                return Ok(docs);
            }
            key = "nextBatch";
            let mut get_more = bson::doc! { "getMore": id, "collection": coll };
            if let Some(b) = batch {
                get_more.insert("batchSize", b);
            }
            self.next_id += 1;
            let req = op_msg(self.next_id, db, &get_more, None);
            self.round_trip(&req)?;
        }
    }
}
