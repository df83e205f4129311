//! A stub DNS server on 127.0.0.1 (UDP and TCP on the same port), for `mongodb+srv` tests: the
//! driver is pointed at it with a resolver configuration ([`DnsServer::resolver_config`]),
//! never through the machine's `/etc/resolv.conf`.
//!
//! It answers A, AAAA, SRV and TXT questions from the records it was given (NXDOMAIN for a name
//! it has no record of, an empty NOERROR for a name it has records of other types), answering
//! names case-insensitively and compressing names as real servers do (owners point at the
//! question, SRV targets share the question's suffix by pointer). Over UDP an answer longer
//! than [`DnsServer::set_udp_limit`] (512 bytes by default, as without EDNS) comes back
//! truncated (TC set, no records); TCP answers in full. Faults ([`DnsFault`]) script silence,
//! delays, SERVFAIL and REFUSED, forced truncation, wrong ids and malformed answers
//! (a compression loop, a record longer than the message, a message cut short). Every query is
//! logged ([`DnsServer::queries`]).
//!
//! The encoder here is written independently of the driver's decoder, so that the two check
//! each other.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anymongo_proto::dns::ResolverConfig;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The data of a record the stub serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsRecord {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        port: u16,
        target: String,
    },
    /// The record's character strings (each at most 255 bytes).
    Txt(Vec<String>),
}

impl DnsRecord {
    fn type_code(&self) -> u16 {
        match self {
            DnsRecord::A(_) => 1,
            DnsRecord::Aaaa(_) => 28,
            DnsRecord::Srv { .. } => 33,
            DnsRecord::Txt(_) => 16,
        }
    }
}

/// How the stub misbehaves for a name (or every name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsFault {
    /// No answer at all.
    Silent,
    /// The right answer, this much later.
    Delay(Duration),
    /// SERVFAIL.
    ServFail,
    /// REFUSED.
    Refused,
    /// Over UDP, a truncated answer (TC, no records) whatever its length; TCP answers in full.
    Truncate,
    /// The right answer with another id.
    WrongId,
    /// An answer whose first record is an SRV record whose target points at itself.
    CompressionLoop,
    /// An answer whose first record claims more data than the message has.
    OversizedRecord,
    /// The right answer, cut in the middle of its records.
    CutShort,
}

/// How a query arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A query the stub received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    /// The name asked for, lowercase, without the final dot.
    pub name: String,
    /// The type asked for (1 A, 28 AAAA, 33 SRV, 16 TXT, ...).
    pub qtype: u16,
    pub transport: Transport,
}

#[derive(Default)]
struct Zone {
    /// Records by owner name (lowercase, no final dot): `(ttl, data)`.
    records: HashMap<String, Vec<(u32, DnsRecord)>>,
    /// Faults by name; `None` for every name.
    faults: HashMap<Option<String>, DnsFault>,
    udp_limit: usize,
    log: Vec<DnsQuery>,
}

struct Shared {
    zone: Mutex<Zone>,
    stop: AtomicBool,
    addr: SocketAddr,
}

/// The stub DNS server (see the module docs). Dropping it stops it.
pub struct DnsServer {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl DnsServer {
    /// Starts a stub with no records on an ephemeral port of 127.0.0.1 (UDP and TCP).
    pub fn start() -> io::Result<DnsServer> {
        // Find a port free for both protocols.
        let (udp, tcp) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
                Some((udp, tcp))
            })
            .ok_or_else(|| io::Error::other("no port free for both UDP and TCP"))?;
        let addr = udp.local_addr()?;
        udp.set_read_timeout(Some(Duration::from_millis(50)))?;
        tcp.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            zone: Mutex::new(Zone {
                udp_limit: 512,
                ..Zone::default()
            }),
            stop: AtomicBool::new(false),
            addr,
        });
        let s1 = shared.clone();
        let s2 = shared.clone();
        let threads = vec![
            std::thread::Builder::new()
                .name("testkit-dns-udp".into())
                .spawn(move || udp_loop(s1, udp))?,
            std::thread::Builder::new()
                .name("testkit-dns-tcp".into())
                .spawn(move || tcp_loop(s2, tcp))?,
        ];
        Ok(DnsServer { shared, threads })
    }

    /// The address (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// A resolver configuration that asks this server only, with a per-try `timeout` and one
    /// attempt.
    pub fn resolver_config(&self, timeout: Duration) -> ResolverConfig {
        ResolverConfig::with_nameservers([self.addr()])
            .timeout(timeout)
            .attempts(1)
    }

    /// Adds a record owned by `name`.
    pub fn add(&self, name: &str, ttl: u32, record: DnsRecord) {
        lock(&self.shared.zone)
            .records
            .entry(normalize(name))
            .or_default()
            .push((ttl, record));
    }

    /// Adds an SRV record.
    pub fn add_srv(&self, name: &str, ttl: u32, port: u16, target: &str) {
        self.add(
            name,
            ttl,
            DnsRecord::Srv {
                port,
                target: target.to_string(),
            },
        );
    }

    /// Adds a TXT record of `strings`.
    pub fn add_txt(&self, name: &str, ttl: u32, strings: &[&str]) {
        self.add(
            name,
            ttl,
            DnsRecord::Txt(strings.iter().map(|s| s.to_string()).collect()),
        );
    }

    /// Adds an A record.
    pub fn add_a(&self, name: &str, ttl: u32, ip: Ipv4Addr) {
        self.add(name, ttl, DnsRecord::A(ip));
    }

    /// Removes every record of `name` of the type of `kind` (its data is ignored); every record
    /// of `name` with `None`.
    pub fn remove(&self, name: &str, kind: Option<&DnsRecord>) {
        let mut zone = lock(&self.shared.zone);
        let key = normalize(name);
        match kind {
            None => {
                zone.records.remove(&key);
            }
            Some(kind) => {
                if let Some(rs) = zone.records.get_mut(&key) {
                    rs.retain(|(_, r)| r.type_code() != kind.type_code());
                    if rs.is_empty() {
                        zone.records.remove(&key);
                    }
                }
            }
        }
    }

    /// Replaces the SRV records of `name` with `records` (`(ttl, port, target)`).
    pub fn set_srv(&self, name: &str, records: &[(u32, u16, &str)]) {
        self.remove(
            name,
            Some(&DnsRecord::Srv {
                port: 0,
                target: String::new(),
            }),
        );
        for (ttl, port, target) in records {
            self.add_srv(name, *ttl, *port, target);
        }
    }

    /// Removes every record and fault, and clears the log.
    pub fn clear(&self) {
        let mut zone = lock(&self.shared.zone);
        zone.records.clear();
        zone.faults.clear();
        zone.log.clear();
    }

    /// Misbehaves as `fault` for queries of `name` (every name with `None`); a fault for the
    /// name wins over one for every name. `None` as the fault removes it.
    pub fn set_fault(&self, name: Option<&str>, fault: Option<DnsFault>) {
        let mut zone = lock(&self.shared.zone);
        let key = name.map(normalize);
        match fault {
            Some(f) => {
                zone.faults.insert(key, f);
            }
            None => {
                zone.faults.remove(&key);
            }
        }
    }

    /// The largest answer sent over UDP; longer ones come back truncated.
    pub fn set_udp_limit(&self, bytes: usize) {
        lock(&self.shared.zone).udp_limit = bytes;
    }

    /// Every query received, in order.
    pub fn queries(&self) -> Vec<DnsQuery> {
        lock(&self.shared.zone).log.clone()
    }

    /// Stops the server (also on drop).
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn udp_loop(shared: Arc<Shared>, socket: UdpSocket) {
    let socket = Arc::new(socket);
    let mut buf = [0u8; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (shared, socket) = (shared.clone(), socket.clone());
        // A thread per query, so that a delayed answer holds up no other.
        let _ = std::thread::Builder::new()
            .name("testkit-dns-answer".into())
            .spawn(move || {
                if let Some(answer) = answer(&shared, &query, Transport::Udp) {
                    let _ = socket.send_to(&answer, from);
                }
            });
    }
}

fn tcp_loop(shared: Arc<Shared>, listener: TcpListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("testkit-dns-tcp-conn".into())
                    .spawn(move || serve_tcp(shared, stream));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve_tcp(shared: Arc<Shared>, mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut query).is_err() {
            return;
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(answer) = answer(&shared, &query, Transport::Tcp) else {
            continue;
        };
        let mut out = (answer.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&answer);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// A parsed question: the name's labels as sent, the type, where the question ends.
struct Question {
    labels: Vec<Vec<u8>>,
    qtype: u16,
    end: usize,
}

fn parse_question(q: &[u8]) -> Option<Question> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(q.get(pos + 1..pos + 1 + len)?.to_vec());
        pos += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    q.get(pos + 2..pos + 4)?;
    Some(Question {
        labels,
        qtype,
        end: pos + 4,
    })
}

/// The answer to `query`, or `None` for silence.
fn answer(shared: &Shared, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let question = parse_question(query)?;
    let name = question
        .labels
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(".");
    let (records, fault, udp_limit, known) = {
        let mut zone = lock(&shared.zone);
        zone.log.push(DnsQuery {
            name: name.clone(),
            qtype: question.qtype,
            transport,
        });
        let fault = zone
            .faults
            .get(&Some(name.clone()))
            .or_else(|| zone.faults.get(&None))
            .cloned();
        let all = zone.records.get(&name).cloned().unwrap_or_default();
        let known = !all.is_empty();
        let records: Vec<(u32, DnsRecord)> = all
            .into_iter()
            .filter(|(_, r)| r.type_code() == question.qtype)
            .collect();
        (records, fault, zone.udp_limit, known)
    };
    let rcode = match fault {
        Some(DnsFault::Silent) => return None,
        Some(DnsFault::Delay(d)) => {
            std::thread::sleep(d);
            None
        }
        Some(DnsFault::ServFail) => Some(2),
        Some(DnsFault::Refused) => Some(5),
        _ => None,
    }
    .unwrap_or(if known { 0 } else { 3 });
    let mut out = encode_answer(query, &question, rcode, &records);
    match fault {
        Some(DnsFault::Truncate) if transport == Transport::Udp => {
            return Some(truncated(query, &question));
        }
        Some(DnsFault::CompressionLoop) => return Some(looped(query, &question)),
        Some(DnsFault::OversizedRecord) if out.len() > question.end + 12 => {
            let at = question.end + 10;
            out[at..at + 2].copy_from_slice(&0xfff0u16.to_be_bytes());
        }
        Some(DnsFault::CutShort) => {
            let keep = question.end + (out.len() - question.end) / 2;
            out.truncate(keep.max(question.end + 1));
        }
        _ => {}
    }
    if transport == Transport::Udp && out.len() > udp_limit {
        out = truncated(query, &question);
    }
    if fault == Some(DnsFault::WrongId) {
        out[0] ^= 0xff;
        out[1] ^= 0xff;
    }
    Some(out)
}

/// Header flags of an answer to `query`: QR, AA, the query's RD, RA, and `rcode`.
fn header(query: &[u8], rcode: u8, ancount: u16, tc: bool) -> Vec<u8> {
    let rd = query[2] & 0x01;
    let mut h = vec![
        query[0],
        query[1],
        0x84 | rd | if tc { 0x02 } else { 0 },
        0x80 | rcode,
        0,
        1,
    ];
    h.extend_from_slice(&ancount.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

fn truncated(query: &[u8], question: &Question) -> Vec<u8> {
    let mut out = header(query, 0, 0, true);
    out.extend_from_slice(&query[12..question.end]);
    out
}

/// Appends `name` compressed against the question's name (at offset 12): the longest suffix it
/// shares with it becomes a pointer.
fn push_name(out: &mut Vec<u8>, name: &str, question: &Question) {
    let labels: Vec<String> = normalize(name)
        .split('.')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let q: Vec<String> = question
        .labels
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    // Offsets of each suffix of the question's name.
    let mut offsets = Vec::new();
    let mut at = 12usize;
    for l in &question.labels {
        offsets.push(at);
        at += 1 + l.len();
    }
    for i in 0..labels.len() {
        let suffix = &labels[i..];
        if suffix.len() <= q.len() && q[q.len() - suffix.len()..] == *suffix {
            let target = offsets[q.len() - suffix.len()];
            out.extend_from_slice(&[0xc0 | (target >> 8) as u8, target as u8]);
            return;
        }
        out.push(labels[i].len() as u8);
        out.extend_from_slice(labels[i].as_bytes());
    }
    out.push(0);
}

fn encode_answer(
    query: &[u8],
    question: &Question,
    rcode: u8,
    records: &[(u32, DnsRecord)],
) -> Vec<u8> {
    let ancount = if rcode == 0 { records.len() } else { 0 };
    let mut out = header(query, rcode, ancount as u16, false);
    out.extend_from_slice(&query[12..question.end]);
    if rcode != 0 {
        return out;
    }
    for (ttl, record) in records {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&record.type_code().to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        match record {
            DnsRecord::A(ip) => out.extend_from_slice(&ip.octets()),
            DnsRecord::Aaaa(ip) => out.extend_from_slice(&ip.octets()),
            DnsRecord::Srv { port, target } => {
                out.extend_from_slice(&[0, 0, 0, 0]);
                out.extend_from_slice(&port.to_be_bytes());
                push_name(&mut out, target, question);
            }
            DnsRecord::Txt(strings) => {
                for s in strings {
                    let bytes = &s.as_bytes()[..s.len().min(255)];
                    out.push(bytes.len() as u8);
                    out.extend_from_slice(bytes);
                }
            }
        }
        let len = (out.len() - len_at - 2) as u16;
        out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }
    out
}

/// An answer with one SRV record whose target is a pointer to itself.
fn looped(query: &[u8], question: &Question) -> Vec<u8> {
    let mut out = header(query, 0, 1, false);
    out.extend_from_slice(&query[12..question.end]);
    out.extend_from_slice(&[
        0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60, 0, 8, 0, 0, 0, 0, 0x69, 0x89,
    ]);
    let at = out.len();
    out.extend_from_slice(&[0xc0 | (at >> 8) as u8, at as u8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    fn ask(server: &DnsServer, q: &[u8]) -> Option<Vec<u8>> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.send_to(q, server.addr()).unwrap();
        let mut buf = [0u8; 4096];
        s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
    }

    #[test]
    fn answers_records_nxdomain_and_logs() {
        let server = DnsServer::start().unwrap();
        server.add_srv("_mongodb._tcp.a.example.com", 60, 27017, "h.a.example.com.");
        let a = ask(&server, &query(7, "_mongodb._tcp.A.example.com", 33)).unwrap();
        assert_eq!(&a[..2], &[0, 7]);
        assert_eq!(a[3] & 0xf, 0);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1);
        // The target "h.a.example.com" shares "a.example.com" with the question: a pointer.
        assert_eq!(&a[a.len() - 4..], &[1, b'h', 0xc0, 12 + 9 + 5]);
        let nx = ask(&server, &query(8, "nope.example.com", 33)).unwrap();
        assert_eq!(nx[3] & 0xf, 3);
        let nodata = ask(&server, &query(9, "_mongodb._tcp.a.example.com", 16)).unwrap();
        assert_eq!((nodata[3] & 0xf, nodata[7]), (0, 0));
        assert_eq!(server.queries().len(), 3);
        assert_eq!(server.queries()[0].name, "_mongodb._tcp.a.example.com");
    }

    #[test]
    fn faults_and_truncation() {
        let server = DnsServer::start().unwrap();
        for i in 0..40 {
            server.add_srv(
                "big.example.com",
                60,
                27000 + i,
                "some-long-host-name.example.org",
            );
        }
        let q = query(1, "big.example.com", 33);
        let a = ask(&server, &q).unwrap();
        assert_ne!(a[2] & 0x02, 0, "truncated over UDP");
        assert!(a.len() <= 512);
        // Over TCP, in full.
        let mut t = TcpStream::connect(server.addr()).unwrap();
        let mut msg = (q.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(&q);
        t.write_all(&msg).unwrap();
        let mut len = [0u8; 2];
        t.read_exact(&mut len).unwrap();
        let mut full = vec![0u8; u16::from_be_bytes(len) as usize];
        t.read_exact(&mut full).unwrap();
        assert_eq!(u16::from_be_bytes([full[6], full[7]]), 40);

        server.set_fault(Some("big.example.com"), Some(DnsFault::Silent));
        assert!(ask(&server, &q).is_none());
        server.set_fault(None, Some(DnsFault::ServFail));
        assert!(ask(&server, &q).is_none(), "the name's own fault wins");
        server.set_fault(Some("big.example.com"), None);
        assert_eq!(ask(&server, &q).unwrap()[3] & 0xf, 2);
        server.set_fault(None, Some(DnsFault::WrongId));
        assert_ne!(&ask(&server, &q).unwrap()[..2], &q[..2]);
    }
}
