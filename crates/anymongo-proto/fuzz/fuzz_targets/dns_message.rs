//! Fuzz target: the DNS answer decoder and the lookup machine on arbitrary bytes.
//!
//! How to run (needs nightly; not part of CI):
//!
//! ```sh
//! cargo install cargo-fuzz
//! cd crates/anymongo-proto
//! cargo +nightly fuzz run dns_message
//! ```
//!
//! Input: the bytes of a DNS message, as a name server might send them.
//!
//! Invariants checked: `Response::decode` never panics and terminates (compression pointers
//! cannot loop, lengths cannot overrun); every name it returns is at most 253 characters; a
//! lookup fed the bytes as the answer to its own query (with the query's id patched in, so that
//! the decoding goes past the id check) never panics and ends with an answer or a typed error,
//! and ends for good (no further transmit) once it has a result.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anymongo_proto::dns::{Lookup, RecordType, ResolverConfig, Response, Transmit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Response::decode(data) {
        for (name, _, _) in &r.questions {
            assert!(name.len() <= 253);
        }
        for a in &r.answers {
            assert!(a.name.len() <= 253);
        }
    }

    let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let config = ResolverConfig::with_nameservers([server])
        .timeout(Duration::from_secs(1))
        .attempts(1);
    for record_type in [RecordType::Srv, RecordType::Txt, RecordType::A] {
        let mut lookup =
            Lookup::new(&config, "_mongodb._tcp.c.example.com", record_type).expect("valid");
        let now = Instant::now();
        let mut rng = rand::rng();
        let Some(Transmit::Udp { message, .. }) = lookup.poll_transmit(now, &mut rng) else {
            panic!("the first try is UDP");
        };
        let mut answer = data.to_vec();
        if answer.len() >= 2 {
            answer[..2].copy_from_slice(&message[..2]);
        }
        lookup.handle_udp(now, server, &answer);
        if let Some(Transmit::Tcp { message, .. }) = lookup.poll_transmit(now, &mut rng) {
            let mut answer = data.to_vec();
            if answer.len() >= 2 {
                answer[..2].copy_from_slice(&message[2..4]);
            }
            lookup.handle_tcp(now, &answer);
        }
        lookup.handle_timeout(now + Duration::from_secs(5));
        let result = lookup.poll_result();
        assert!(result.is_some(), "one try, answered or timed out: the lookup is over");
        assert!(lookup.poll_transmit(now, &mut rng).is_none());
        if let Some(Ok(answer)) = result {
            let _ = (answer.srv(), answer.txt(), answer.ips());
        }
    }
});
