//! DNS messages (RFC 1035 §4): the queries a stub resolver sends and the answers it reads.
//!
//! A query has one question (class IN) and asks for recursion. An answer is read as far as the
//! driver needs: the header, the question section (which must echo the question asked) and the
//! answer section, whose SRV, TXT, A, AAAA and CNAME records are decoded and whose other records
//! are skipped. The authority and additional sections are not read. Every length is checked
//! against the message: a record whose data runs past the end, a name that loops, a count that
//! promises more records than there are bytes, are all [`DnsError::Malformed`].

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{name, DnsError, RecordType};

/// The size of the header.
pub const HEADER_LEN: usize = 12;
/// The class of Internet records.
pub const CLASS_IN: u16 = 1;
/// The type number of a CNAME record.
pub const TYPE_CNAME: u16 = 5;

/// Response codes (RFC 1035 §4.1.1, RFC 6895).
pub mod rcode {
    pub const NO_ERROR: u8 = 0;
    pub const FORMAT_ERROR: u8 = 1;
    pub const SERVER_FAILURE: u8 = 2;
    pub const NAME_ERROR: u8 = 3;
    pub const NOT_IMPLEMENTED: u8 = 4;
    pub const REFUSED: u8 = 5;
}

/// A short name of a response code, for messages.
pub fn rcode_name(code: u8) -> &'static str {
    match code {
        rcode::NO_ERROR => "NOERROR",
        rcode::FORMAT_ERROR => "FORMERR",
        rcode::SERVER_FAILURE => "SERVFAIL",
        rcode::NAME_ERROR => "NXDOMAIN",
        rcode::NOT_IMPLEMENTED => "NOTIMP",
        rcode::REFUSED => "REFUSED",
        _ => "other",
    }
}

/// Encodes a query for `name`'s records of type `record_type`, with id `id` and recursion
/// desired.
pub fn encode_query(id: u16, name: &str, record_type: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    // QR=0, OPCODE=0 (query), RD=1.
    out.extend_from_slice(&[0x01, 0x00]);
    // One question; no answers, authority or additional records.
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    name::encode(name, &mut out)?;
    out.extend_from_slice(&record_type.code().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

/// The id of a message: its first two bytes, if it has them.
pub fn message_id(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// The data of a record the driver reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Txt(Vec<Vec<u8>>),
    Cname(String),
}

/// A record of the answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The owner name (lowercase, no final dot).
    pub name: String,
    /// Time to live, in seconds.
    pub ttl: u32,
    pub data: RData,
}

/// A decoded answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    /// The TC bit: the answer did not fit (UDP) and is incomplete.
    pub truncated: bool,
    pub rcode: u8,
    /// The question section's questions: `(name, type, class)`.
    pub questions: Vec<(String, u16, u16)>,
    /// The answer section's records of the types the driver reads, in order; records of other
    /// types or classes are skipped.
    pub answers: Vec<Record>,
}

/// Reads big-endian integers with bounds checks.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u16(&mut self, what: &str) -> Result<u16, DnsError> {
        let b = self
            .msg
            .get(self.pos..self.pos + 2)
            .ok_or_else(|| DnsError::malformed(format!("{what} runs past the end")))?;
        self.pos += 2;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DnsError> {
        let hi = self.u16(what)?;
        let lo = self.u16(what)?;
        Ok((u32::from(hi) << 16) | u32::from(lo))
    }

    fn name(&mut self) -> Result<String, DnsError> {
        let (name, after) = name::decode(self.msg, self.pos)?;
        self.pos = after;
        Ok(name)
    }
}

impl Response {
    /// Decodes an answer. A message that is a query (QR=0) or not a standard query's answer
    /// (OPCODE≠0) is malformed here.
    pub fn decode(msg: &[u8]) -> Result<Response, DnsError> {
        if msg.len() < HEADER_LEN {
            return Err(DnsError::malformed(format!(
                "{} bytes, shorter than a DNS header",
                msg.len()
            )));
        }
        let mut r = Reader { msg, pos: 0 };
        let id = r.u16("the header")?;
        let flags = r.u16("the header")?;
        if flags & 0x8000 == 0 {
            return Err(DnsError::malformed("a query where an answer was expected"));
        }
        if (flags >> 11) & 0xf != 0 {
            return Err(DnsError::malformed(
                "an answer to something other than a query",
            ));
        }
        let truncated = flags & 0x0200 != 0;
        let rcode = (flags & 0xf) as u8;
        let qdcount = r.u16("the header")?;
        let ancount = r.u16("the header")?;
        let _nscount = r.u16("the header")?;
        let _arcount = r.u16("the header")?;

        let mut questions = Vec::new();
        for _ in 0..qdcount {
            let name = r.name()?;
            let qtype = r.u16("a question")?;
            let qclass = r.u16("a question")?;
            questions.push((name, qtype, qclass));
        }
        let mut answers = Vec::new();
        for _ in 0..ancount {
            if truncated && r.pos >= msg.len() {
                // A truncated answer may stop short of its counts.
                break;
            }
            let owner = r.name()?;
            let rtype = r.u16("a record")?;
            let class = r.u16("a record")?;
            let ttl = r.u32("a record")?;
            let rdlength = usize::from(r.u16("a record")?);
            let start = r.pos;
            let end = start + rdlength;
            if end > msg.len() {
                return Err(DnsError::malformed(format!(
                    "a record's data ({rdlength} bytes) runs past the end of the message"
                )));
            }
            let data = if class != CLASS_IN {
                None
            } else {
                decode_rdata(msg, start, end, rtype)?
            };
            if let Some(data) = data {
                answers.push(Record {
                    name: owner,
                    // RFC 2181 §8: a TTL with the top bit set is read as zero.
                    ttl: if ttl > i32::MAX as u32 { 0 } else { ttl },
                    data,
                });
            }
            r.pos = end;
        }
        Ok(Response {
            id,
            truncated,
            rcode,
            questions,
            answers,
        })
    }
}

/// Decodes the data of a record of type `rtype` at `msg[start..end]`; `None` for types the
/// driver does not read.
fn decode_rdata(
    msg: &[u8],
    start: usize,
    end: usize,
    rtype: u16,
) -> Result<Option<RData>, DnsError> {
    let data = &msg[start..end];
    let exact = |n: usize, what: &str| {
        if data.len() == n {
            Ok(())
        } else {
            Err(DnsError::malformed(format!(
                "{what} record data of {} bytes, not {n}",
                data.len()
            )))
        }
    };
    let rdata = match rtype {
        1 => {
            exact(4, "an A")?;
            RData::A(Ipv4Addr::new(data[0], data[1], data[2], data[3]))
        }
        28 => {
            exact(16, "an AAAA")?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(data);
            RData::Aaaa(Ipv6Addr::from(octets))
        }
        33 => {
            if data.len() < 7 {
                return Err(DnsError::malformed("SRV record data shorter than 7 bytes"));
            }
            let field = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
            // Decoded against the whole message: servers compress targets despite RFC 2782.
            let (target, after) = name::decode(msg, start + 6)?;
            if after != end {
                return Err(DnsError::malformed(
                    "an SRV record's target does not fill its record data",
                ));
            }
            RData::Srv {
                priority: field(0),
                weight: field(2),
                port: field(4),
                target,
            }
        }
        16 => {
            let mut strings = Vec::new();
            let mut pos = 0;
            while pos < data.len() {
                let len = usize::from(data[pos]);
                let Some(s) = data.get(pos + 1..pos + 1 + len) else {
                    return Err(DnsError::malformed(
                        "a TXT string runs past the end of its record",
                    ));
                };
                strings.push(s.to_vec());
                pos += 1 + len;
            }
            if strings.is_empty() {
                return Err(DnsError::malformed("a TXT record with no string"));
            }
            RData::Txt(strings)
        }
        TYPE_CNAME => {
            let (target, after) = name::decode(msg, start)?;
            if after != end {
                return Err(DnsError::malformed(
                    "a CNAME record's name does not fill its record data",
                ));
            }
            RData::Cname(target)
        }
        _ => return Ok(None),
    };
    Ok(Some(rdata))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds answers for tests, compressing owner names as pointers to the question (as real
    /// servers do).
    pub(crate) struct AnswerBuilder {
        pub(crate) bytes: Vec<u8>,
        count: u16,
    }

    impl AnswerBuilder {
        /// An answer to `query` (its id and question echoed) with response code `rcode`.
        pub(crate) fn new(query: &[u8], rcode: u8) -> Self {
            let mut bytes = query.to_vec();
            bytes[2] |= 0x80; // QR
            bytes[3] = 0x80 | rcode; // RA + rcode
            AnswerBuilder { bytes, count: 0 }
        }

        pub(crate) fn truncated(mut self) -> Self {
            self.bytes[2] |= 0x02;
            self
        }

        /// Appends a record owned by the question's name.
        pub(crate) fn record(mut self, rtype: u16, ttl: u32, rdata: &[u8]) -> Self {
            self.bytes.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
            self.bytes.extend_from_slice(&rtype.to_be_bytes());
            self.bytes.extend_from_slice(&CLASS_IN.to_be_bytes());
            self.bytes.extend_from_slice(&ttl.to_be_bytes());
            self.bytes
                .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            self.bytes.extend_from_slice(rdata);
            self.count += 1;
            self.bytes[6..8].copy_from_slice(&self.count.to_be_bytes());
            self
        }

        pub(crate) fn srv(self, ttl: u32, port: u16, target: &str) -> Self {
            let mut rdata = vec![0, 1, 0, 2];
            rdata.extend_from_slice(&port.to_be_bytes());
            name::encode(target, &mut rdata).expect("valid target");
            self.record(33, ttl, &rdata)
        }

        pub(crate) fn txt(self, ttl: u32, strings: &[&str]) -> Self {
            let mut rdata = Vec::new();
            for s in strings {
                rdata.push(s.len() as u8);
                rdata.extend_from_slice(s.as_bytes());
            }
            self.record(16, ttl, &rdata)
        }

        pub(crate) fn a(self, ttl: u32, ip: [u8; 4]) -> Self {
            self.record(1, ttl, &ip)
        }

        pub(crate) fn build(self) -> Vec<u8> {
            self.bytes
        }
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        encode_query(0xbeef, name, t).expect("valid query")
    }

    #[test]
    fn a_query_has_one_question_and_asks_for_recursion() {
        let q = query("_mongodb._tcp.Example.com", RecordType::Srv);
        assert_eq!(&q[..12], &[0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[q.len() - 4..], &[0, 33, 0, 1]);
        assert_eq!(message_id(&q), Some(0xbeef));
        // A query is not an answer.
        assert!(Response::decode(&q).is_err());
    }

    #[test]
    fn decodes_srv_txt_a_aaaa_and_cname() {
        let q = query("x.example.com", RecordType::Srv);
        let mut aaaa = [0u8; 16];
        aaaa[15] = 1;
        let mut cname = Vec::new();
        name::encode("Y.Example.com.", &mut cname).unwrap();
        let bytes = AnswerBuilder::new(&q, 0)
            .srv(300, 27017, "Host1.Example.com.")
            .txt(60, &["replicaS", "et=rs0"])
            .a(10, [127, 0, 0, 1])
            .record(28, 10, &aaaa)
            .record(TYPE_CNAME, 5, &cname)
            .record(99, 5, b"ignored")
            .build();
        let r = Response::decode(&bytes).expect("decodes");
        assert_eq!(r.id, 0xbeef);
        assert!(!r.truncated);
        assert_eq!(r.rcode, 0);
        assert_eq!(r.questions, vec![("x.example.com".to_string(), 33, 1)]);
        let data: Vec<&RData> = r.answers.iter().map(|a| &a.data).collect();
        assert_eq!(
            data,
            vec![
                &RData::Srv {
                    priority: 1,
                    weight: 2,
                    port: 27017,
                    target: "host1.example.com".into()
                },
                &RData::Txt(vec![b"replicaS".to_vec(), b"et=rs0".to_vec()]),
                &RData::A(Ipv4Addr::LOCALHOST),
                &RData::Aaaa(Ipv6Addr::LOCALHOST),
                &RData::Cname("y.example.com".into()),
            ]
        );
        assert!(r.answers.iter().all(|a| a.name == "x.example.com"));
        assert_eq!(r.answers[0].ttl, 300);
    }

    #[test]
    fn malformed_answers_are_typed_errors() {
        let q = query("x.example.com", RecordType::Srv);
        let good = AnswerBuilder::new(&q, 0).srv(1, 1, "h.example.com").build();
        // Every strict prefix fails (a count promises more than there is).
        for n in 0..good.len() {
            assert!(
                matches!(
                    Response::decode(&good[..n]),
                    Err(DnsError::Malformed { .. })
                ),
                "prefix of {n} bytes"
            );
        }
        // Record data longer than the message.
        let mut over = good.clone();
        let rdlen_at = q.len() + 2 + 2 + 2 + 4;
        over[rdlen_at..rdlen_at + 2].copy_from_slice(&0xffffu16.to_be_bytes());
        assert!(Response::decode(&over).is_err());
        // An SRV target that points at itself.
        let mut looped = AnswerBuilder::new(&q, 0)
            .record(33, 1, &[0, 0, 0, 0, 0, 1])
            .build();
        let at = looped.len();
        looped.extend_from_slice(&[0xc0 | (at >> 8) as u8, at as u8]);
        let rdlen_at = at - 6 - 2;
        looped[rdlen_at..rdlen_at + 2].copy_from_slice(&8u16.to_be_bytes());
        assert!(matches!(
            Response::decode(&looped),
            Err(DnsError::Malformed { .. })
        ));
        // Wrong sizes of A / AAAA data, a TXT string past its record, an empty TXT.
        for (t, rdata) in [
            (1u16, &b"\x01\x02\x03"[..]),
            (28, &[0u8; 15][..]),
            (16, &b"\x05ab"[..]),
            (16, &b""[..]),
            (33, &b"\x00\x00\x00\x00\x00\x01\x00\x00"[..]),
        ] {
            let bytes = AnswerBuilder::new(&q, 0).record(t, 1, rdata).build();
            assert!(Response::decode(&bytes).is_err(), "type {t} {rdata:?}");
        }
    }

    #[test]
    fn a_truncated_answer_may_stop_short_of_its_counts() {
        let q = query("x.example.com", RecordType::Srv);
        let mut bytes = AnswerBuilder::new(&q, 0)
            .srv(1, 1, "h.example.com")
            .truncated()
            .build();
        bytes[7] = 5; // promises five answers, has one
        let r = Response::decode(&bytes).expect("truncated answers are read as far as they go");
        assert!(r.truncated);
        assert_eq!(r.answers.len(), 1);
    }

    #[test]
    fn ttls_with_the_top_bit_set_read_as_zero() {
        let q = query("x.example.com", RecordType::A);
        let bytes = AnswerBuilder::new(&q, 0)
            .a(0x8000_0000, [1, 2, 3, 4])
            .build();
        assert_eq!(Response::decode(&bytes).unwrap().answers[0].ttl, 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = Response::decode(&bytes);
        }

        #[test]
        fn mutated_answers_never_panic(
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..6),
            cut in 0usize..200,
        ) {
            let q = query("_mongodb._tcp.c.example.com", RecordType::Srv);
            let mut bytes = AnswerBuilder::new(&q, 0)
                .srv(60, 27017, "a.example.com")
                .srv(60, 27018, "b.example.com")
                .txt(60, &["authSource=admin"])
                .build();
            for (at, b) in flips {
                if let Some(slot) = bytes.get_mut(at) {
                    *slot = b;
                }
            }
            bytes.truncate(bytes.len().min(cut.max(1) + 40));
            if let Ok(r) = Response::decode(&bytes) {
                prop_assert!(r.answers.len() <= 3);
            }
        }

        #[test]
        fn srv_answers_round_trip(
            records in proptest::collection::vec(("[a-z0-9]{1,12}", any::<u16>(), any::<u32>()), 0..10),
        ) {
            let q = query("_mongodb._tcp.c.example.com", RecordType::Srv);
            let mut b = AnswerBuilder::new(&q, 0);
            for (host, port, ttl) in &records {
                b = b.srv(*ttl, *port, &format!("{host}.example.com"));
            }
            let r = Response::decode(&b.build()).unwrap();
            prop_assert_eq!(r.answers.len(), records.len());
            for (rec, (host, port, _)) in r.answers.iter().zip(&records) {
                match &rec.data {
                    RData::Srv { port: p, target, .. } => {
                        prop_assert_eq!(p, port);
                        prop_assert_eq!(target, &format!("{host}.example.com"));
                    }
                    other => prop_assert!(false, "not SRV: {other:?}"),
                }
            }
        }
    }
}
