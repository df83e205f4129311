//! A blocking test client: std TcpStream (optionally rustls) + the core wire encode / Decoder.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anymongo_proto::options::Compressor;
use anymongo_proto::wire::{
    encode, Body, Decoder, DocumentSequence, Message, MsgFlags, OpMsg, OpQuery, WireError,
    DEFAULT_MAX_MESSAGE_SIZE,
};
use anymongo_testkit::bson::{Document, RawDocumentBuf};
use anymongo_testkit::TlsIdentity;

pub trait Transport: Read + Write + Send {}
impl<T: Read + Write + Send> Transport for T {}

/// What a receive saw.
#[derive(Debug)]
pub enum Recv {
    Msg(Message),
    /// The server closed the connection; `buffered` bytes of a partial message were left.
    Closed {
        buffered: usize,
    },
    /// The bytes were not a valid message.
    Invalid(WireError),
}

pub struct Client {
    io: Box<dyn Transport>,
    dec: Decoder,
    next_id: i32,
    pub compressor: Option<Compressor>,
}

pub fn raw(doc: &Document) -> RawDocumentBuf {
    RawDocumentBuf::try_from(doc).expect("encodable")
}

pub fn to_doc(raw: &RawDocumentBuf) -> Document {
    Document::try_from(raw.as_ref()).expect("valid reply document")
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client::over(Box::new(s))
    }

    pub fn connect_tls(addr: SocketAddr, identity: &TlsIdentity, name: &'static str) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let cfg = Arc::new(identity.client_config().expect("client config"));
        let server_name = rustls_pki_types::ServerName::try_from(name).expect("server name");
        let conn = rustls::ClientConnection::new(cfg, server_name).expect("client connection");
        Client::over(Box::new(rustls::StreamOwned::new(conn, s)))
    }

    pub fn over(io: Box<dyn Transport>) -> Client {
        Client {
            io,
            dec: Decoder::new(DEFAULT_MAX_MESSAGE_SIZE),
            next_id: 1,
            compressor: None,
        }
    }

    pub fn write_bytes(&mut self, b: &[u8]) {
        self.io.write_all(b).unwrap();
        self.io.flush().unwrap();
    }

    /// Sends a message, returning its request id.
    pub fn send(&mut self, body: Body) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        let msg = Message::new(id, body);
        let mut out = Vec::new();
        encode(&msg, self.compressor.as_ref(), &mut out).expect("encode");
        self.write_bytes(&out);
        id
    }

    pub fn recv(&mut self) -> Recv {
        loop {
            match self.dec.decode() {
                Ok(Some(m)) => return Recv::Msg(m),
                Ok(None) => {}
                Err(e) => return Recv::Invalid(e),
            }
            let buf = self.dec.spare(4096);
            match self.io.read(buf) {
                Ok(0) | Err(_) => {
                    return Recv::Closed {
                        buffered: self.dec.buffered(),
                    }
                }
                Ok(n) => self.dec.commit(n),
            }
        }
    }

    /// Receives a message that must be an OP_MSG reply to `id`, and returns its body.
    pub fn recv_reply(&mut self, id: i32) -> (Message, Document) {
        match self.recv() {
            Recv::Msg(m) => {
                assert_eq!(m.response_to, id, "responseTo");
                let d = match &m.body {
                    Body::Msg(msg) => to_doc(&msg.body),
                    Body::Reply(r) => to_doc(r.documents.first().expect("one document")),
                    Body::Query(_) => panic!("server sent OP_QUERY"),
                };
                (m, d)
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Runs an OP_MSG command and returns the reply body.
    pub fn command(&mut self, cmd: Document) -> Document {
        let id = self.send(Body::Msg(OpMsg::new(raw(&cmd))));
        self.recv_reply(id).1
    }

    /// Runs an OP_MSG command with one document sequence.
    pub fn command_seq(&mut self, cmd: Document, ident: &str, docs: &[Document]) -> Document {
        let mut m = OpMsg::new(raw(&cmd));
        m.sequences.push(DocumentSequence {
            identifier: ident.to_string(),
            documents: docs.iter().map(raw).collect(),
        });
        let id = self.send(Body::Msg(m));
        self.recv_reply(id).1
    }

    /// Sends an OP_MSG with extra flags (no reply read).
    pub fn send_flags(&mut self, cmd: Document, flags: MsgFlags) -> i32 {
        let mut m = OpMsg::new(raw(&cmd));
        m.flags = flags;
        self.send(Body::Msg(m))
    }

    /// Runs a legacy OP_QUERY command on `<db>.$cmd`.
    pub fn query(&mut self, db: &str, cmd: Document) -> (Message, Document) {
        let id = self.send(Body::Query(OpQuery {
            flags: 0,
            full_collection_name: format!("{db}.$cmd"),
            number_to_skip: 0,
            number_to_return: -1,
            query: raw(&cmd),
            return_fields_selector: None,
        }));
        self.recv_reply(id)
    }
}
