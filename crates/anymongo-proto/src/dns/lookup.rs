//! [`Lookup`]: one question asked of the configured name servers, as a machine.
//!
//! The caller owns the sockets and the clock:
//!
//! ```text
//! loop {
//!     if let Some(result) = lookup.poll_result() { break result }
//!     if let Some(t) = lookup.poll_transmit(now, rng) { send t (UDP datagram, or TCP exchange) }
//!     wait for a datagram (handle_udp), a TCP answer (handle_tcp), a socket error
//!     (handle_error) or lookup.poll_timeout() (handle_timeout)
//! }
//! ```
//!
//! Tries go to the servers in order, `attempts` rounds over all of them (glibc's order), each
//! waiting `timeout` for its answer. An answer is accepted only from the server asked, with the
//! query's id and the question echoed; anything else is ignored (counted, reported if the lookup
//! times out). A truncated UDP answer is asked again over TCP of the same server, with its own
//! `timeout`. NOERROR and NXDOMAIN end the lookup; SERVFAIL, REFUSED and other codes, malformed
//! answers, socket errors and timeouts move on to the next try.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::message::{self, rcode, RData, Record, Response};
use super::{name, DnsError, RecordType, ResolverConfig, SrvRecord, TxtRecord};

/// How many CNAMEs an answer may chain before the records asked for.
const MAX_CNAME_CHAIN: usize = 8;

/// A message for the caller to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Send `message` in one datagram to `server`, then wait for its answer.
    Udp {
        server: SocketAddr,
        message: Vec<u8>,
    },
    /// Connect to `server` over TCP, send `message` with its two-byte length prefix (included
    /// here), read the two-byte length of the answer and that many bytes, and give them (without
    /// the prefix) to [`Lookup::handle_tcp`].
    Tcp {
        server: SocketAddr,
        message: Vec<u8>,
    },
}

/// The outcome of a lookup that got an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The name asked for (lowercase, no final dot).
    pub name: String,
    pub record_type: RecordType,
    /// The records of the type asked for, owned by the name or by the end of a CNAME chain
    /// from it; in the order of the answer.
    pub records: Vec<Record>,
    /// The server said the name does not exist.
    pub nxdomain: bool,
}

impl Answer {
    fn not_found(&self) -> DnsError {
        DnsError::NotFound {
            name: self.name.clone(),
            record_type: self.record_type,
            nxdomain: self.nxdomain,
        }
    }

    /// The SRV records; [`DnsError::NotFound`] if there are none.
    pub fn srv(&self) -> Result<Vec<SrvRecord>, DnsError> {
        let out: Vec<SrvRecord> = self
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } => Some(SrvRecord {
                    target: target.clone(),
                    port: *port,
                    priority: *priority,
                    weight: *weight,
                    ttl: r.ttl,
                }),
                _ => None,
            })
            .collect();
        if out.is_empty() {
            return Err(self.not_found());
        }
        Ok(out)
    }

    /// The TXT records; [`DnsError::NotFound`] if there are none.
    pub fn txt(&self) -> Result<Vec<TxtRecord>, DnsError> {
        let out: Vec<TxtRecord> = self
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::Txt(strings) => Some(TxtRecord {
                    strings: strings.clone(),
                    ttl: r.ttl,
                }),
                _ => None,
            })
            .collect();
        if out.is_empty() {
            return Err(self.not_found());
        }
        Ok(out)
    }

    /// The addresses of A and AAAA records; [`DnsError::NotFound`] if there are none.
    pub fn ips(&self) -> Result<Vec<IpAddr>, DnsError> {
        let out: Vec<IpAddr> = self
            .records
            .iter()
            .filter_map(|r| match r.data {
                RData::A(ip) => Some(IpAddr::V4(ip)),
                RData::Aaaa(ip) => Some(IpAddr::V6(ip)),
                _ => None,
            })
            .collect();
        if out.is_empty() {
            return Err(self.not_found());
        }
        Ok(out)
    }
}

#[derive(Clone, Debug)]
enum State {
    /// The next try is due: [`Lookup::poll_transmit`] gives it.
    Ready {
        server: SocketAddr,
        tcp: bool,
    },
    /// A query is out; its answer is awaited until `deadline`.
    Waiting {
        server: SocketAddr,
        id: u16,
        tcp: bool,
        deadline: Instant,
    },
    Done,
}

/// One question asked of a list of name servers (see the module docs).
#[derive(Debug)]
pub struct Lookup {
    name: String,
    record_type: RecordType,
    servers: Vec<SocketAddr>,
    timeout: Duration,
    /// How many tries in all: attempts × servers.
    tries: usize,
    /// The index of the current try.
    try_index: usize,
    state: State,
    started: Option<Instant>,
    ignored: u32,
    /// The last failure other than a timeout.
    last_failure: Option<DnsError>,
    result: Option<Result<Answer, DnsError>>,
}

impl Lookup {
    /// A lookup of `name`'s records of type `record_type` with `config`'s servers, timeout and
    /// attempts. Fails at once if the name cannot be queried or no server is configured.
    pub fn new(
        config: &ResolverConfig,
        name: &str,
        record_type: RecordType,
    ) -> Result<Lookup, DnsError> {
        // Checks the name once; every try encodes it the same way.
        message::encode_query(0, name, record_type)?;
        let Some(&first) = config.nameservers.first() else {
            return Err(DnsError::NoNameservers);
        };
        let attempts = config.effective_attempts() as usize;
        Ok(Lookup {
            name: name::normalize(name),
            record_type,
            servers: config.nameservers.clone(),
            timeout: config.effective_timeout(),
            tries: attempts.saturating_mul(config.nameservers.len()),
            try_index: 0,
            state: State::Ready {
                server: first,
                tcp: false,
            },
            started: None,
            ignored: 0,
            last_failure: None,
            result: None,
        })
    }

    /// The name looked up (lowercase, no final dot).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message to send, if one is due. `rng` draws the query id.
    pub fn poll_transmit(&mut self, now: Instant, rng: &mut impl rand::Rng) -> Option<Transmit> {
        let State::Ready { server, tcp } = self.state else {
            return None;
        };
        self.started.get_or_insert(now);
        let id: u16 = rng.random();
        let mut message = match message::encode_query(id, &self.name, self.record_type) {
            Ok(m) => m,
            Err(e) => {
                // Checked in `new`; kept as an error rather than a panic.
                self.finish(Err(e));
                return None;
            }
        };
        self.state = State::Waiting {
            server,
            id,
            tcp,
            deadline: crate::time::deadline_after(now, self.timeout),
        };
        Some(if tcp {
            let len = message.len() as u16;
            message.splice(0..0, len.to_be_bytes());
            Transmit::Tcp { server, message }
        } else {
            Transmit::Udp { server, message }
        })
    }

    /// When the answer awaited is due, if one is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// Whether a UDP answer is awaited (the caller keeps reading its socket).
    pub fn awaits_udp(&self) -> bool {
        matches!(self.state, State::Waiting { tcp: false, .. })
    }

    /// The clock reached `now`: a try whose deadline passed has failed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Waiting { deadline, .. } = self.state {
            if now >= deadline {
                self.next_try(now);
            }
        }
    }

    /// The current try failed with a socket error (it could not be sent, the TCP connection was
    /// refused or closed, ...).
    pub fn handle_error(&mut self, now: Instant, message: impl Into<String>) {
        if matches!(self.state, State::Waiting { .. }) {
            self.last_failure = Some(DnsError::Io {
                message: message.into(),
            });
            self.next_try(now);
        }
    }

    /// A datagram arrived from `from`.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let State::Waiting {
            server,
            id,
            tcp: false,
            ..
        } = self.state
        else {
            self.ignored += 1;
            return;
        };
        if from != server || message::message_id(bytes) != Some(id) {
            // Not the answer to this query (a late answer to an earlier try, or a forgery).
            self.ignored += 1;
            return;
        }
        let response = match Response::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.last_failure = Some(e);
                self.next_try(now);
                return;
            }
        };
        if !self.asks_our_question(&response) {
            self.ignored += 1;
            return;
        }
        if response.truncated {
            // Ask the same server again, over TCP.
            self.state = State::Ready { server, tcp: true };
            return;
        }
        self.handle_response(now, response);
    }

    /// The answer of the TCP exchange (without its length prefix).
    pub fn handle_tcp(&mut self, now: Instant, bytes: &[u8]) {
        let State::Waiting { id, tcp: true, .. } = self.state else {
            return;
        };
        let response = match Response::decode(bytes) {
            Ok(r) if r.id != id => Err(DnsError::malformed("a TCP answer with the wrong id")),
            Ok(r) if !self.asks_our_question(&r) => {
                Err(DnsError::malformed("a TCP answer to another question"))
            }
            other => other,
        };
        match response {
            Ok(r) => self.handle_response(now, r),
            Err(e) => {
                self.last_failure = Some(e);
                self.next_try(now);
            }
        }
    }

    /// The outcome, once the lookup is over (given once).
    pub fn poll_result(&mut self) -> Option<Result<Answer, DnsError>> {
        self.result.take()
    }

    /// Whether the lookup is over.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn asks_our_question(&self, r: &Response) -> bool {
        matches!(r.questions.as_slice(), [(name, qtype, qclass)]
            if *name == self.name
                && *qtype == self.record_type.code()
                && *qclass == message::CLASS_IN)
    }

    fn handle_response(&mut self, now: Instant, response: Response) {
        match response.rcode {
            rcode::NO_ERROR | rcode::NAME_ERROR => {
                let records = self.follow_chain(response.answers);
                self.finish(Ok(Answer {
                    name: self.name.clone(),
                    record_type: self.record_type,
                    records,
                    nxdomain: response.rcode == rcode::NAME_ERROR,
                }));
            }
            code => {
                self.last_failure = Some(DnsError::ServerFailure {
                    name: self.name.clone(),
                    rcode: code,
                });
                self.next_try(now);
            }
        }
    }

    /// The records of the type asked for owned by the name, or by the name a CNAME chain from it
    /// ends at.
    fn follow_chain(&self, answers: Vec<Record>) -> Vec<Record> {
        let mut owner = self.name.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            let next = answers.iter().find_map(|r| match &r.data {
                RData::Cname(target) if r.name == owner => Some(target.clone()),
                _ => None,
            });
            match next {
                Some(target) if target != owner => owner = target,
                _ => break,
            }
        }
        let wanted = self.record_type;
        answers
            .into_iter()
            .filter(|r| {
                r.name == owner
                    && matches!(
                        (&r.data, wanted),
                        (RData::A(_), RecordType::A)
                            | (RData::Aaaa(_), RecordType::Aaaa)
                            | (RData::Srv { .. }, RecordType::Srv)
                            | (RData::Txt(_), RecordType::Txt)
                    )
            })
            .collect()
    }

    fn next_try(&mut self, now: Instant) {
        self.try_index += 1;
        if self.try_index >= self.tries {
            let error = self
                .last_failure
                .take()
                .unwrap_or_else(|| DnsError::Timeout {
                    name: self.name.clone(),
                    after: now.saturating_duration_since(self.started.unwrap_or(now)),
                    ignored: self.ignored,
                });
            self.finish(Err(error));
            return;
        }
        self.state = State::Ready {
            server: self.servers[self.try_index % self.servers.len()],
            tcp: false,
        };
    }

    fn finish(&mut self, result: Result<Answer, DnsError>) {
        self.state = State::Done;
        self.result = Some(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::message::tests::AnswerBuilder;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn config(servers: &[&str], attempts: u32) -> ResolverConfig {
        ResolverConfig::with_nameservers(servers.iter().map(|s| s.parse().unwrap()))
            .timeout(Duration::from_secs(1))
            .attempts(attempts)
    }

    fn udp(t: Option<Transmit>) -> (SocketAddr, Vec<u8>) {
        match t {
            Some(Transmit::Udp { server, message }) => (server, message),
            other => panic!("expected a UDP transmit, got {other:?}"),
        }
    }

    const NAME: &str = "_mongodb._tcp.Test1.Example.com.";

    #[test]
    fn an_answer_from_the_server_asked_ends_the_lookup() {
        let t0 = Instant::now();
        let mut l = Lookup::new(&config(&["10.0.0.1:53"], 2), NAME, RecordType::Srv).unwrap();
        let (server, q) = udp(l.poll_transmit(t0, &mut rng()));
        assert_eq!(server, "10.0.0.1:53".parse().unwrap());
        assert!(
            l.poll_transmit(t0, &mut rng()).is_none(),
            "one query at a time"
        );
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        let answer = AnswerBuilder::new(&q, 0)
            .srv(60, 27017, "a.example.com")
            .srv(30, 27018, "b.example.com")
            .build();
        // The same bytes from another address are ignored.
        l.handle_udp(t0, "10.0.0.9:53".parse().unwrap(), &answer);
        assert!(l.poll_result().is_none());
        l.handle_udp(t0, server, &answer);
        let a = l.poll_result().expect("done").expect("an answer");
        let srv = a.srv().unwrap();
        assert_eq!(srv.len(), 2);
        assert_eq!(
            (srv[1].target.as_str(), srv[1].port, srv[1].ttl),
            ("b.example.com", 27018, 30)
        );
        assert!(l.is_done());
        assert!(l.poll_result().is_none());
    }

    #[test]
    fn tries_rotate_over_servers_then_time_out() {
        let t0 = Instant::now();
        let mut l = Lookup::new(
            &config(&["10.0.0.1:53", "10.0.0.2:53"], 2),
            NAME,
            RecordType::Txt,
        )
        .unwrap();
        let mut now = t0;
        let mut order = Vec::new();
        while let Some(t) = l.poll_transmit(now, &mut rng()) {
            let (server, q) = udp(Some(t));
            order.push(server.ip().to_string());
            // A wrong id is ignored, and so is an answer after the deadline's handling.
            let mut wrong = AnswerBuilder::new(&q, 0).build();
            wrong[0] ^= 0xff;
            l.handle_udp(now, server, &wrong);
            l.handle_timeout(now); // not due yet
            now = l.poll_timeout().unwrap();
            l.handle_timeout(now);
        }
        assert_eq!(order, ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]);
        match l.poll_result() {
            Some(Err(DnsError::Timeout { after, ignored, .. })) => {
                assert_eq!(after, Duration::from_secs(4));
                assert_eq!(ignored, 4);
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn truncated_answers_are_asked_again_over_tcp() {
        let t0 = Instant::now();
        let mut l = Lookup::new(&config(&["10.0.0.1:53"], 1), NAME, RecordType::Srv).unwrap();
        let (server, q) = udp(l.poll_transmit(t0, &mut rng()));
        let tc = AnswerBuilder::new(&q, 0).truncated().build();
        l.handle_udp(t0, server, &tc);
        assert!(!l.awaits_udp());
        let t1 = t0 + Duration::from_millis(10);
        let Some(Transmit::Tcp { server: s, message }) = l.poll_transmit(t1, &mut rng()) else {
            panic!("expected TCP");
        };
        assert_eq!(s, server);
        let len = u16::from_be_bytes([message[0], message[1]]) as usize;
        assert_eq!(len, message.len() - 2);
        assert_eq!(l.poll_timeout(), Some(t1 + Duration::from_secs(1)));
        let q = &message[2..];
        // A TCP answer with another id is a failure of this try (the last one: the lookup fails).
        let mut wrong = AnswerBuilder::new(q, 0).build();
        wrong[1] ^= 1;
        let mut l2 = Lookup::new(&config(&["10.0.0.1:53"], 1), NAME, RecordType::Srv).unwrap();
        let (_, q2) = udp(l2.poll_transmit(t0, &mut rng()));
        l2.handle_udp(t0, server, &AnswerBuilder::new(&q2, 0).truncated().build());
        l2.poll_transmit(t0, &mut rng());
        l2.handle_tcp(t0, &wrong);
        assert!(matches!(
            l2.poll_result(),
            Some(Err(DnsError::Malformed { .. }))
        ));

        let full = AnswerBuilder::new(q, 0).srv(5, 1, "a.example.com").build();
        l.handle_tcp(t1, &full);
        assert_eq!(l.poll_result().unwrap().unwrap().srv().unwrap().len(), 1);
    }

    #[test]
    fn server_failures_move_on_and_the_last_failure_is_reported() {
        let t0 = Instant::now();
        let mut l = Lookup::new(
            &config(&["10.0.0.1:53", "10.0.0.2:53"], 1),
            NAME,
            RecordType::Srv,
        )
        .unwrap();
        let (s1, q1) = udp(l.poll_transmit(t0, &mut rng()));
        l.handle_udp(
            t0,
            s1,
            &AnswerBuilder::new(&q1, rcode::SERVER_FAILURE).build(),
        );
        let (s2, q2) = udp(l.poll_transmit(t0, &mut rng()));
        assert_ne!(s1, s2);
        l.handle_udp(t0, s2, &AnswerBuilder::new(&q2, rcode::REFUSED).build());
        assert_eq!(
            l.poll_result(),
            Some(Err(DnsError::ServerFailure {
                name: "_mongodb._tcp.test1.example.com".into(),
                rcode: rcode::REFUSED
            }))
        );
    }

    #[test]
    fn malformed_answers_and_socket_errors_fail_their_try() {
        let t0 = Instant::now();
        let mut l = Lookup::new(
            &config(&["10.0.0.1:53", "10.0.0.2:53"], 1),
            NAME,
            RecordType::Srv,
        )
        .unwrap();
        let (s1, q1) = udp(l.poll_transmit(t0, &mut rng()));
        let mut bad = AnswerBuilder::new(&q1, 0)
            .srv(1, 1, "a.example.com")
            .build();
        bad.truncate(bad.len() - 3);
        l.handle_udp(t0, s1, &bad);
        let (_s2, _) = udp(l.poll_transmit(t0, &mut rng()));
        l.handle_error(t0, "connection refused");
        assert_eq!(
            l.poll_result(),
            Some(Err(DnsError::Io {
                message: "connection refused".into()
            }))
        );
    }

    #[test]
    fn an_answer_to_another_question_is_ignored() {
        let t0 = Instant::now();
        let mut l = Lookup::new(&config(&["10.0.0.1:53"], 1), NAME, RecordType::Srv).unwrap();
        let (s, q) = udp(l.poll_transmit(t0, &mut rng()));
        let other = message::encode_query(
            message::message_id(&q).unwrap(),
            "evil.com",
            RecordType::Srv,
        )
        .unwrap();
        l.handle_udp(
            t0,
            s,
            &AnswerBuilder::new(&other, 0).srv(1, 1, "evil.com").build(),
        );
        assert!(l.poll_result().is_none());
        assert!(l.awaits_udp());
    }

    #[test]
    fn nxdomain_and_no_data_are_answers_without_records() {
        let t0 = Instant::now();
        for (code, nx) in [(rcode::NAME_ERROR, true), (rcode::NO_ERROR, false)] {
            let mut l = Lookup::new(&config(&["10.0.0.1:53"], 1), NAME, RecordType::Txt).unwrap();
            let (s, q) = udp(l.poll_transmit(t0, &mut rng()));
            l.handle_udp(t0, s, &AnswerBuilder::new(&q, code).build());
            let a = l.poll_result().unwrap().unwrap();
            assert_eq!(a.nxdomain, nx);
            assert_eq!(
                a.txt(),
                Err(DnsError::NotFound {
                    name: "_mongodb._tcp.test1.example.com".into(),
                    record_type: RecordType::Txt,
                    nxdomain: nx
                })
            );
        }
    }

    #[test]
    fn cname_chains_are_followed_within_the_answer() {
        let t0 = Instant::now();
        let mut l = Lookup::new(
            &config(&["10.0.0.1:53"], 1),
            "alias.example.com",
            RecordType::A,
        )
        .unwrap();
        let (s, q) = udp(l.poll_transmit(t0, &mut rng()));
        let mut cname = Vec::new();
        name::encode("real.example.com", &mut cname).unwrap();
        let mut bytes = AnswerBuilder::new(&q, 0).record(5, 60, &cname).build();
        // An A record owned by real.example.com (the CNAME's data, at its known offset).
        let real_at = bytes.len() - cname.len();
        bytes.extend_from_slice(&[0xc0 | (real_at >> 8) as u8, real_at as u8]);
        bytes.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3]);
        // And one for an unrelated name (the question's own name is an alias: not an owner).
        bytes.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 6, 6, 6, 6]);
        bytes[7] = 3;
        l.handle_udp(t0, s, &bytes);
        let a = l.poll_result().unwrap().unwrap();
        assert_eq!(
            a.ips().unwrap(),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn bad_names_and_no_servers_fail_at_once() {
        assert!(matches!(
            Lookup::new(&config(&["10.0.0.1:53"], 1), "a..b", RecordType::A),
            Err(DnsError::InvalidName { .. })
        ));
        assert_eq!(
            Lookup::new(&ResolverConfig::default(), "a.b", RecordType::A).unwrap_err(),
            DnsError::NoNameservers
        );
    }
}
