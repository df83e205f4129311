//! The DNS client on the virtual clock, against name servers of the virtual network: answers,
//! tries and timeouts in virtual time, ignored forgeries, server failures, host names.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use std::future::IntoFuture;

use super::*;
use crate::options::ClientOptions;
use crate::proto::dns::message::rcode;
use crate::testing::VirtualRuntime;

/// A name server answering each query with `answer(query)` (or not at all) after `delay`.
fn serve(
    rt: &VirtualRuntime,
    addr: &str,
    delay: Duration,
    answer: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> Arc<AtomicUsize> {
    let queries = Arc::new(AtomicUsize::new(0));
    let seen = queries.clone();
    rt.serve_udp(
        addr.parse().unwrap(),
        Arc::new(move |q: &[u8]| {
            seen.fetch_add(1, Ordering::SeqCst);
            answer(q).map(|a| (delay, a)).into_iter().collect()
        }),
    );
    queries
}

/// An answer to `query` with `rcode` and records built by `f` (owner: the question's name,
/// compressed as a pointer to it).
fn answer(query: &[u8], code: u8, records: &[(u16, u32, Vec<u8>)]) -> Vec<u8> {
    let mut a = query.to_vec();
    a[2] |= 0x80;
    a[3] = 0x80 | code;
    a[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    for (t, ttl, rdata) in records {
        a.extend_from_slice(&[0xc0, 12]);
        a.extend_from_slice(&t.to_be_bytes());
        a.extend_from_slice(&[0, 1]);
        a.extend_from_slice(&ttl.to_be_bytes());
        a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        a.extend_from_slice(rdata);
    }
    a
}

fn srv_rdata(port: u16, target: &str) -> Vec<u8> {
    let mut r = vec![0, 0, 0, 0];
    r.extend_from_slice(&port.to_be_bytes());
    for label in target.split('.') {
        r.push(label.len() as u8);
        r.extend_from_slice(label.as_bytes());
    }
    r.push(0);
    r
}

fn resolver(rt: &VirtualRuntime, servers: &[&str]) -> DnsResolver {
    let servers: Vec<SocketAddr> = servers.iter().map(|s| s.parse().unwrap()).collect();
    DnsResolver::new(
        Arc::new(rt.clone()),
        ResolverConfig::with_nameservers(servers)
            .timeout(Duration::from_secs(2))
            .attempts(2),
    )
}

#[test]
fn srv_and_txt_answers_arrive_in_virtual_time() {
    let rt = VirtualRuntime::new();
    serve(&rt, "10.0.0.1:53", Duration::from_millis(30), |q| {
        let qtype = u16::from_be_bytes([q[q.len() - 4], q[q.len() - 3]]);
        Some(match qtype {
            33 => answer(
                q,
                0,
                &[
                    (33, 300, srv_rdata(27017, "a.example.com")),
                    (33, 60, srv_rdata(27018, "b.example.com")),
                ],
            ),
            _ => answer(q, 0, &[(16, 60, b"\x10replicaSet=repl0".to_vec())]),
        })
    });
    let r = resolver(&rt, &["10.0.0.1:53"]);
    let t0 = rt.now();
    let (srv, txt) = rt
        .block_on(async {
            futures::join!(
                r.lookup_srv("_mongodb._tcp.c.example.com"),
                r.lookup_txt("c.example.com")
            )
        })
        .unwrap();
    assert_eq!(rt.now() - t0, Duration::from_millis(30));
    let srv = srv.unwrap();
    assert_eq!(srv.len(), 2);
    assert_eq!(
        (srv[1].target.as_str(), srv[1].port, srv[1].ttl),
        ("b.example.com", 27018, 60)
    );
    assert_eq!(txt.unwrap()[0].strings, vec![b"replicaSet=repl0".to_vec()]);
}

#[test]
fn a_silent_server_times_out_after_every_try() {
    let rt = VirtualRuntime::new();
    let q1 = serve(&rt, "10.0.0.1:53", Duration::ZERO, |_| None);
    let q2 = serve(&rt, "10.0.0.2:53", Duration::ZERO, |_| None);
    let r = resolver(&rt, &["10.0.0.1:53", "10.0.0.2:53"]);
    let t0 = rt.now();
    let out = rt
        .block_on(r.lookup_srv("_mongodb._tcp.c.example.com"))
        .unwrap();
    // Two attempts over two servers, two seconds each.
    assert_eq!(rt.now() - t0, Duration::from_secs(8));
    assert!(matches!(out, Err(DnsError::Timeout { .. })), "{out:?}");
    assert_eq!(
        (q1.load(Ordering::SeqCst), q2.load(Ordering::SeqCst)),
        (2, 2)
    );
}

#[test]
fn forgeries_are_ignored_and_failures_move_on() {
    let rt = VirtualRuntime::new();
    // The first server answers with a wrong id at once, then SERVFAIL.
    serve(&rt, "10.0.0.1:53", Duration::from_millis(5), |q| {
        Some(answer(q, rcode::SERVER_FAILURE, &[]))
    });
    rt.serve_udp(
        "10.0.0.2:53".parse().unwrap(),
        Arc::new(|q: &[u8]| {
            let mut forged = answer(q, 0, &[(33, 1, srv_rdata(1, "evil.example.com"))]);
            forged[0] ^= 0x55;
            let good = answer(q, 0, &[(33, 1, srv_rdata(27017, "good.example.com"))]);
            vec![
                (Duration::from_millis(1), forged),
                (Duration::from_millis(9), good),
            ]
        }),
    );
    let r = resolver(&rt, &["10.0.0.1:53", "10.0.0.2:53"]);
    let t0 = rt.now();
    let srv = rt
        .block_on(r.lookup_srv("_mongodb._tcp.c.example.com"))
        .unwrap()
        .unwrap();
    assert_eq!(srv.len(), 1);
    assert_eq!(srv[0].target, "good.example.com");
    assert_eq!(rt.now() - t0, Duration::from_millis(14));
}

#[test]
fn malformed_answers_are_typed_errors_within_the_timeout() {
    let rt = VirtualRuntime::new();
    // A compression loop in the SRV target.
    serve(&rt, "10.0.0.1:53", Duration::ZERO, |q| {
        let mut a = answer(q, 0, &[(33, 1, vec![0, 0, 0, 0, 0, 1, 0xc0, 0])]);
        let at = a.len() - 2;
        a[at] = 0xc0 | (at >> 8) as u8;
        a[at + 1] = at as u8;
        Some(a)
    });
    let r = DnsResolver::new(
        Arc::new(rt.clone()),
        ResolverConfig::with_nameservers(["10.0.0.1:53".parse().unwrap()])
            .timeout(Duration::from_secs(2))
            .attempts(1),
    );
    let t0 = rt.now();
    let out = rt
        .block_on(r.lookup_srv("_mongodb._tcp.c.example.com"))
        .unwrap();
    assert!(matches!(out, Err(DnsError::Malformed { .. })), "{out:?}");
    assert!(rt.now() - t0 < Duration::from_secs(2));
}

#[test]
fn a_truncated_answer_goes_to_tcp_which_this_runtime_lacks() {
    let rt = VirtualRuntime::new();
    let queries = serve(&rt, "10.0.0.1:53", Duration::ZERO, |q| {
        let mut a = answer(q, 0, &[]);
        a[2] |= 0x02;
        Some(a)
    });
    let r = resolver(&rt, &["10.0.0.1:53"]);
    let out = rt
        .block_on(r.lookup_srv("_mongodb._tcp.c.example.com"))
        .unwrap();
    match out {
        Err(DnsError::Io { message }) => assert!(message.contains("TCP"), "{message}"),
        other => panic!("expected the TCP failure, got {other:?}"),
    }
    assert_eq!(
        queries.load(Ordering::SeqCst),
        2,
        "one UDP query per attempt"
    );
}

#[test]
fn host_names_resolve_through_configured_servers_only() {
    let rt = VirtualRuntime::new();
    serve(&rt, "10.0.0.1:53", Duration::ZERO, |q| {
        let qtype = u16::from_be_bytes([q[q.len() - 4], q[q.len() - 3]]);
        Some(match qtype {
            1 => answer(q, 0, &[(1, 60, vec![127, 0, 0, 1])]),
            _ => answer(q, 0, &[]),
        })
    });
    let r = resolver(&rt, &["10.0.0.1:53"]);
    let addrs = rt
        .block_on(
            r.lookup_host("db.example.com", 27017)
                .expect("resolves hosts"),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        addrs,
        vec!["127.0.0.1:27017".parse::<SocketAddr>().unwrap()]
    );
    // IP literals and the system configuration leave host names to the runtime.
    assert!(r.lookup_host("10.1.1.1", 1).is_none());
    let system = DnsResolver::new(Arc::new(rt.clone()), ResolverConfig::system());
    assert!(system.lookup_host("db.example.com", 1).is_none());
}

#[test]
fn the_system_configuration_comes_from_resolv_conf() {
    let dir = std::env::temp_dir().join(format!("anymongo-resolv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resolv.conf");
    std::fs::write(&path, "nameserver 10.9.9.9\noptions timeout:1 attempts:1\n").unwrap();
    let rt = VirtualRuntime::new();
    let queries = serve(&rt, "10.9.9.9:53", Duration::ZERO, |_| None);
    let r =
        DnsResolver::new(Arc::new(rt.clone()), ResolverConfig::system()).with_resolv_conf(&path);
    let config = r.effective_config().unwrap();
    assert_eq!(config.nameservers, vec!["10.9.9.9:53".parse().unwrap()]);
    let t0 = rt.now();
    let out = rt.block_on(r.lookup_txt("c.example.com")).unwrap();
    assert!(matches!(out, Err(DnsError::Timeout { .. })));
    assert_eq!(rt.now() - t0, Duration::from_secs(1));
    assert_eq!(queries.load(Ordering::SeqCst), 1);
    let missing = DnsResolver::new(Arc::new(rt.clone()), ResolverConfig::system())
        .with_resolv_conf(dir.join("nope"));
    assert!(matches!(
        missing.effective_config(),
        Err(DnsError::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scripted resolver: fixed answers, and a record of the questions.
struct Scripted {
    srv: Result<Vec<SrvRecord>, DnsError>,
    txt: Result<Vec<TxtRecord>, DnsError>,
    asked: Mutex<Vec<String>>,
}

impl Resolver for Scripted {
    fn lookup_srv(&self, name: &str) -> BoxFuture<'static, Result<Vec<SrvRecord>, DnsError>> {
        self.asked.lock().unwrap().push(format!("SRV {name}"));
        let r = self.srv.clone();
        Box::pin(async move { r })
    }
    fn lookup_txt(&self, name: &str) -> BoxFuture<'static, Result<Vec<TxtRecord>, DnsError>> {
        self.asked.lock().unwrap().push(format!("TXT {name}"));
        let r = self.txt.clone();
        Box::pin(async move { r })
    }
}

fn srv(target: &str, port: u16) -> SrvRecord {
    SrvRecord {
        target: target.into(),
        port,
        priority: 0,
        weight: 0,
        ttl: 90,
    }
}

#[test]
fn resolve_srv_applies_the_records_and_reports_each_failure() {
    let rt = VirtualRuntime::new();
    let parse = |uri: &str| ClientOptions::parse_without_srv_resolution(uri).unwrap();
    let ok = Scripted {
        srv: Ok(vec![
            srv("h1.example.com", 27017),
            srv("h2.example.com", 27018),
        ]),
        txt: Err(DnsError::NotFound {
            name: "c.example.com".into(),
            record_type: RecordType::Txt,
            nxdomain: true,
        }),
        asked: Mutex::new(Vec::new()),
    };
    let mut o = parse("mongodb+srv://C.example.com/?srvServiceName=svc");
    rt.block_on(resolve_srv(&mut o, &ok)).unwrap().unwrap();
    assert_eq!(o.hosts.len(), 2);
    assert_eq!(
        *ok.asked.lock().unwrap(),
        vec!["SRV _svc._tcp.c.example.com", "TXT c.example.com"]
    );
    assert_eq!(
        o.srv.as_ref().unwrap().min_ttl,
        Some(Duration::from_secs(90))
    );
    // Already resolved: nothing asked.
    rt.block_on(resolve_srv(&mut o, &ok)).unwrap().unwrap();
    assert_eq!(ok.asked.lock().unwrap().len(), 2);

    let failing = |srv_result, txt_result| Scripted {
        srv: srv_result,
        txt: txt_result,
        asked: Mutex::new(Vec::new()),
    };
    let cases = [
        failing(Ok(vec![]), Ok(vec![])),
        failing(
            Err(DnsError::Timeout {
                name: "x".into(),
                after: Duration::from_secs(1),
                ignored: 0,
            }),
            Ok(vec![]),
        ),
        failing(Ok(vec![srv("h.evil.com", 1)]), Ok(vec![])),
        failing(
            Ok(vec![srv("h.example.com", 1)]),
            Err(DnsError::ServerFailure {
                name: "c.example.com".into(),
                rcode: 2,
            }),
        ),
    ];
    for case in &cases {
        let mut o = parse("mongodb+srv://c.example.com/");
        let e = rt.block_on(resolve_srv(&mut o, case)).unwrap().unwrap_err();
        assert!(
            matches!(e.kind(), crate::ErrorKind::DnsResolve { .. }),
            "{e}"
        );
        assert!(o.hosts.is_empty(), "a failed resolution changes no host");
    }
    let forbidden = failing(
        Ok(vec![srv("h.example.com", 1)]),
        Ok(vec![TxtRecord {
            strings: vec![b"socketTimeoutMS=500".to_vec()],
            ttl: 1,
        }]),
    );
    let mut o = parse("mongodb+srv://c.example.com/");
    let e = rt
        .block_on(resolve_srv(&mut o, &forbidden))
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(e.kind(), crate::ErrorKind::InvalidArgument { .. }),
        "{e}"
    );
}

#[test]
fn parse_needs_a_runtime_only_for_srv() {
    let rt = VirtualRuntime::new();
    let no_runtime = || Err(crate::Error::invalid_argument("no runtime here"));
    let o = rt
        .block_on(ParseConnectionString::new("mongodb://h:1/", no_runtime()).into_future())
        .unwrap()
        .unwrap();
    assert_eq!(o.hosts.len(), 1);
    let e = rt
        .block_on(
            ParseConnectionString::new("mongodb+srv://c.example.com/", no_runtime()).into_future(),
        )
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("no runtime here"), "{e}");
    // A resolver config is kept in the options.
    let config = ResolverConfig::with_nameservers(["10.0.0.1:53".parse().unwrap()]);
    let o = rt
        .block_on(
            ParseConnectionString::new("mongodb://h:1/", no_runtime())
                .resolver_config(config.clone())
                .into_future(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(o.resolver_config, Some(config));
}
