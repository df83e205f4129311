//! DNS and Unix sockets on every runtime: the runtime's UDP and Unix-socket primitives, the
//! driver's DNS client against the testkit's stub DNS server (answers, TCP after truncation,
//! every fault a typed error within its timeout), `mongodb+srv` seedlist discovery and SRV
//! polling against testkit mongoses.
//!
//! Transcripts: the DNS client's observations are recorded as notes (what was asked over which
//! transport, which error kind came back); clients of several servers record checkpoints of the
//! topology rather than events, whose order between monitors is timing's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anymongo_core::bson::{doc, Document};
use anymongo_core::dns::{DnsError, DnsResolver, ParseConnectionString, Resolver};
use anymongo_core::options::ServerAddress;
use anymongo_core::rt::{DatagramExt, RuntimeExt};
use anymongo_core::sdam::TopologyType;
use anymongo_core::{Client, ClientOptions};
use anymongo_testkit::dns::{DnsFault, DnsServer, Transport};
use anymongo_testkit::FakeServer;

use crate::{Env, Outcome};

const SRV1: &str = "_mongodb._tcp.test1.test.build.10gen.cc";
const HOST: &str = "localhost.test.build.10gen.cc";

fn stub() -> DnsServer {
    DnsServer::start().expect("start the stub DNS server")
}

fn resolver(env: &Env, dns: &DnsServer, timeout: Duration) -> DnsResolver {
    DnsResolver::new(env.rt.clone(), dns.resolver_config(timeout))
}

fn transports(dns: &DnsServer) -> Vec<Transport> {
    dns.queries().iter().map(|q| q.transport).collect()
}

/// Polls `cond` every 25 ms for up to 10 s.
async fn eventually(env: &Env, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if cond() {
            return true;
        }
        env.rt.sleep(Duration::from_millis(25)).await;
    }
    cond()
}

/// The ports of the servers in the client's topology, sorted.
fn ports(client: &Client) -> Vec<u16> {
    let mut p: Vec<u16> = client
        .topology_description()
        .servers
        .keys()
        .filter_map(ServerAddress::port)
        .collect();
    p.sort_unstable();
    p
}

fn sorted(mut v: Vec<u16>) -> Vec<u16> {
    v.sort_unstable();
    v
}

/// The runtime's UDP sockets: a round trip with an echo server on a std thread, a receive that
/// times out on the runtime's clock, and the socket still usable after it.
pub async fn udp_datagram_roundtrip(env: Env) -> Outcome {
    let echo = UdpSocket::bind("127.0.0.1:0").expect("bind the echo socket");
    let echo_addr = echo.local_addr().expect("echo address");
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let (n, from) = echo.recv_from(&mut buf).expect("echo receives");
            buf[..n].reverse();
            echo.send_to(&buf[..n], from).expect("echo sends");
        }
    });
    let socket = env
        .rt
        .bind_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("bind_udp");
    let mut buf = [0u8; 64];
    // Nothing sent yet: the receive times out.
    let idle = env
        .rt
        .timeout(Duration::from_millis(50), socket.recv_from(&mut buf))
        .await;
    assert!(idle.is_err(), "a receive with nothing sent times out");
    for word in ["ping", "pong!"] {
        let sent = socket
            .send_to(word.as_bytes(), echo_addr)
            .await
            .expect("send_to");
        assert_eq!(sent, word.len());
        let (n, from) = env
            .rt
            .timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("an answer in time")
            .expect("recv_from");
        assert_eq!(from, echo_addr);
        let back: String = word.chars().rev().collect();
        assert_eq!(&buf[..n], back.as_bytes());
        env.transcript.note(format!(
            "udp: sent {word:?}, received {back:?} from the echo server"
        ));
    }
    thread.join().expect("echo thread");
    Outcome::Pass
}

/// A client over the runtime's Unix domain sockets to the testkit listening on one.
pub async fn unix_socket_client(env: Env) -> Outcome {
    #[cfg(unix)]
    {
        unix_socket_client_on_unix(env).await
    }
    #[cfg(not(unix))]
    {
        let _ = env;
        Outcome::Skip("Unix domain sockets exist on Unix only")
    }
}

#[cfg(unix)]
async fn unix_socket_client_on_unix(env: Env) -> Outcome {
    {
        let server = FakeServer::builder().start();
        let path = std::env::temp_dir().join(format!(
            "anymongo-{}{}unix.sock",
            std::process::id(),
            crate::runtime_token(env.harness)
        ));
        let _ = std::fs::remove_file(&path);
        let socket = server.listen_unix(&path).expect("listen on a Unix socket");
        // The runtime primitive: a missing socket is an error, not a hang.
        let missing = env
            .rt
            .connect_unix(&path.with_extension("missing.sock"))
            .await;
        assert!(missing.is_err(), "connecting to a missing socket fails");
        let client = env.client(&socket.uri()).expect("client");
        client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
            .expect("ping over the Unix socket");
        let coll = client.database("unixdb").collection::<Document>("c");
        coll.insert_one(doc! { "_id": 1, "via": "unix" })
            .await
            .expect("insert");
        let found = coll
            .find_one(doc! { "_id": 1 })
            .await
            .expect("find")
            .expect("the document");
        assert_eq!(found.get_str("via").ok(), Some("unix"));
        let td = client.topology_description();
        let address = ServerAddress::Unix {
            path: path.to_string_lossy().into_owned(),
        };
        assert_eq!(td.topology_type, TopologyType::Single);
        assert!(td.server(&address).is_some(), "{td:?}");
        assert!(server.connection_count() >= 1);
        client.shutdown().await;
        drop(socket);
        assert!(!path.exists(), "the socket file is removed");
        Outcome::Pass
    }
}

/// SRV, TXT and A lookups over UDP; NXDOMAIN; host names the stub does not know fall back to the
/// runtime's resolver.
pub async fn dns_lookups(env: Env) -> Outcome {
    let dns = stub();
    dns.add_srv(SRV1, 60, 27017, "localhost.test.build.10gen.cc.");
    dns.add_srv(SRV1, 30, 27018, "LOCALHOST.test.build.10gen.cc");
    dns.add_txt(
        "test11.test.build.10gen.cc",
        60,
        &["replicaS", "et=rep", "l0"],
    );
    dns.add_a(HOST, 60, Ipv4Addr::LOCALHOST);
    let r = resolver(&env, &dns, Duration::from_secs(2));

    let mut srv = r.lookup_srv(SRV1).await.expect("SRV records");
    srv.sort_by_key(|s| s.port);
    let got: Vec<(String, u16, u32)> = srv
        .iter()
        .map(|s| (s.target.clone(), s.port, s.ttl))
        .collect();
    assert_eq!(
        got,
        vec![(HOST.to_string(), 27017, 60), (HOST.to_string(), 27018, 30)]
    );
    let txt = r
        .lookup_txt("test11.test.build.10gen.cc")
        .await
        .expect("TXT records");
    assert_eq!(txt.len(), 1);
    assert_eq!(txt[0].strings.concat(), b"replicaSet=repl0");
    let hosts = r
        .lookup_host(HOST, 27017)
        .expect("a resolver with its own name servers resolves hosts")
        .await
        .expect("A record");
    assert_eq!(hosts, vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 27017))]);
    // The stub knows no "localhost": the runtime's resolver does.
    let local = r
        .lookup_host("localhost", 27017)
        .expect("resolves hosts")
        .await
        .expect("localhost through the runtime");
    assert!(!local.is_empty() && local.iter().all(|a| a.ip().is_loopback()));
    let missing = r
        .lookup_srv("_mongodb._tcp.test4.test.build.10gen.cc")
        .await;
    assert!(
        matches!(missing, Err(DnsError::NotFound { nxdomain: true, .. })),
        "{missing:?}"
    );
    assert!(transports(&dns).iter().all(|t| *t == Transport::Udp));
    env.transcript.note(format!(
        "dns: {} queries over UDP; SRV {:?}; TXT {:?}; A {:?}; test4: NXDOMAIN",
        dns.queries().len(),
        got,
        String::from_utf8_lossy(&txt[0].strings.concat()),
        hosts.iter().map(|a| a.ip()).collect::<Vec<IpAddr>>()
    ));
    Outcome::Pass
}

/// Answers too long for UDP (and forced truncation) are asked again over TCP.
pub async fn dns_truncated_answers_use_tcp(env: Env) -> Outcome {
    let dns = stub();
    for i in 0..30u16 {
        dns.add_srv(
            SRV1,
            60,
            27000 + i,
            &format!("mongos-{i:02}-with-a-longer-name.test.build.10gen.cc"),
        );
    }
    let r = resolver(&env, &dns, Duration::from_secs(2));
    let srv = r.lookup_srv(SRV1).await.expect("SRV records over TCP");
    assert_eq!(srv.len(), 30);
    assert_eq!(transports(&dns), vec![Transport::Udp, Transport::Tcp]);

    dns.add_txt("test5.test.build.10gen.cc", 60, &["authSource=thisDB"]);
    dns.set_fault(Some("test5.test.build.10gen.cc"), Some(DnsFault::Truncate));
    let txt = r
        .lookup_txt("test5.test.build.10gen.cc")
        .await
        .expect("TXT over TCP");
    assert_eq!(txt[0].strings.concat(), b"authSource=thisDB");
    assert_eq!(
        transports(&dns),
        vec![
            Transport::Udp,
            Transport::Tcp,
            Transport::Udp,
            Transport::Tcp
        ]
    );
    env.transcript
        .note("dns: 30 SRV records and a forced-truncated TXT came over TCP after UDP");
    Outcome::Pass
}

/// Every fault of the name server is a typed error within the configured timeout.
pub async fn dns_faults_are_typed_errors_in_time(env: Env) -> Outcome {
    let dns = stub();
    dns.add_srv(SRV1, 60, 27017, HOST);
    let timeout = Duration::from_millis(300);
    let r = resolver(&env, &dns, timeout);
    // Generous for a loaded machine; a hang would take the test's 60 s.
    let slack = Duration::from_secs(3);
    let cases = [
        (Some(DnsFault::Silent), "timeout"),
        (Some(DnsFault::WrongId), "timeout"),
        (Some(DnsFault::Delay(Duration::from_secs(2))), "timeout"),
        (Some(DnsFault::ServFail), "server failure 2"),
        (Some(DnsFault::Refused), "server failure 5"),
        (Some(DnsFault::CompressionLoop), "malformed"),
        (Some(DnsFault::OversizedRecord), "malformed"),
        (Some(DnsFault::CutShort), "malformed"),
        (Some(DnsFault::Delay(Duration::from_millis(20))), "ok"),
        (None, "ok"),
    ];
    for (fault, expected) in cases {
        dns.set_fault(None, fault.clone());
        let start = env.rt.now();
        let result = r.lookup_srv(SRV1).await;
        let took = env.rt.now() - start;
        let kind = match &result {
            Ok(records) if records.len() == 1 => "ok".to_string(),
            Ok(records) => format!("{} records", records.len()),
            Err(DnsError::Timeout { .. }) => "timeout".into(),
            Err(DnsError::ServerFailure { rcode, .. }) => format!("server failure {rcode}"),
            Err(DnsError::Malformed { .. }) => "malformed".into(),
            Err(e) => format!("other: {e}"),
        };
        assert_eq!(kind, expected, "{fault:?}: {result:?}");
        assert!(
            took <= timeout + slack,
            "{fault:?} took {took:?} (timeout {timeout:?})"
        );
        env.transcript.note(format!("dns fault {fault:?}: {kind}"));
    }
    // A name server nobody answers for.
    let nobody = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let r = DnsResolver::new(
        env.rt.clone(),
        anymongo_core::dns::ResolverConfig::with_nameservers([nobody])
            .timeout(timeout)
            .attempts(2),
    );
    let start = env.rt.now();
    let result = r.lookup_srv(SRV1).await;
    let took = env.rt.now() - start;
    assert!(
        matches!(result, Err(DnsError::Timeout { .. } | DnsError::Io { .. })),
        "{result:?}"
    );
    assert!(took <= 2 * timeout + slack, "{took:?}");
    env.transcript
        .note("dns: an unreachable name server fails within its tries");
    Outcome::Pass
}

/// Starts `n` testkit mongoses.
fn mongoses(n: usize) -> Vec<FakeServer> {
    (0..n)
        .map(|_| FakeServer::builder().hello_field("msg", "isdbgrid").start())
        .collect()
}

fn port(server: &FakeServer) -> u16 {
    server.addr().port()
}

/// `mongodb+srv` end to end: `ClientOptions::parse` resolves the seedlist through the stub (and
/// the hosts' names through it too); a client given unresolved options resolves them itself.
pub async fn srv_seedlist_discovery(env: Env) -> Outcome {
    let dns = stub();
    let m = mongoses(2);
    for s in &m {
        dns.add_srv(SRV1, 600, port(s), HOST);
    }
    dns.add_a(HOST, 600, Ipv4Addr::LOCALHOST);
    let config = dns.resolver_config(Duration::from_secs(2));
    let uri = "mongodb+srv://test1.test.build.10gen.cc/?tls=false&heartbeatFrequencyMS=500";
    let options = ParseConnectionString::new(uri, Ok(env.rt.clone()))
        .resolver_config(config.clone())
        .await
        .expect("parse with the SRV lookup");
    let seeds = sorted(
        options
            .hosts
            .iter()
            .filter_map(ServerAddress::port)
            .collect(),
    );
    assert_eq!(seeds, sorted(m.iter().map(port).collect()));
    assert!(options.hosts.iter().all(|h| h.host() == HOST));
    assert_eq!(
        options.srv.as_ref().and_then(|s| s.min_ttl),
        Some(Duration::from_secs(600))
    );
    let client = Client::with_options_and_runtime(options, env.rt.clone()).expect("client");
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping through the SRV seedlist");
    let sharded = eventually(&env, || {
        let td = client.topology_description();
        td.topology_type == TopologyType::Sharded && td.servers.len() == 2
    })
    .await;
    assert!(sharded, "{:?}", client.topology_description());
    env.transcript
        .note("srv: parsed 2 seeds, pinged, discovered a sharded cluster of 2 mongoses");
    client.shutdown().await;

    // Unresolved options: the client resolves them itself, on its runtime.
    let mut options = ClientOptions::parse_without_srv_resolution(uri).expect("parse");
    assert!(options.needs_srv_resolution());
    options.resolver_config = Some(config);
    let client = Client::with_options_and_runtime(options, env.rt.clone()).expect("client");
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping after the client's own SRV lookup");
    assert_eq!(ports(&client), sorted(m.iter().map(port).collect()));
    client.shutdown().await;

    // A lookup that finds nothing fails the operations with a DNS error.
    let failing = ClientOptions {
        resolver_config: Some(dns.resolver_config(Duration::from_millis(300))),
        ..ClientOptions::parse_without_srv_resolution(
            "mongodb+srv://test4.test.build.10gen.cc/?serverSelectionTimeoutMS=3000",
        )
        .expect("parse")
    };
    let client = Client::with_options_and_runtime(failing, env.rt.clone()).expect("client");
    let err = client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect_err("no SRV record for test4");
    assert!(
        matches!(err.kind(), anymongo_core::ErrorKind::DnsResolve { .. }),
        "{err}"
    );
    env.transcript.note(
        "srv: a client seeds itself; a lookup that finds nothing fails operations with DnsResolve",
    );
    client.shutdown().await;
    Outcome::Pass
}

/// SRV polling (the polling spec's prose tests 1-8): records added, removed, replaced; a
/// timeout, NXDOMAIN and an empty answer leave the topology as it is.
pub async fn srv_polling_tracks_the_records(env: Env) -> Outcome {
    let dns = stub();
    let m = mongoses(4);
    let p: Vec<u16> = m.iter().map(port).collect();
    dns.set_srv(SRV1, &[(0, p[0], HOST), (0, p[1], HOST)]);
    dns.add_a(HOST, 600, Ipv4Addr::LOCALHOST);
    let options = ParseConnectionString::new(
        "mongodb+srv://test1.test.build.10gen.cc/?tls=false&heartbeatFrequencyMS=500",
        Ok(env.rt.clone()),
    )
    .resolver_config(dns.resolver_config(Duration::from_millis(300)))
    .await
    .expect("parse");
    let client = Client::builder(options, env.rt.clone())
        .min_srv_rescan_interval(Duration::from_millis(200))
        .build()
        .expect("client");
    let expect = |env: &Env, client: &Client, want: Vec<u16>, what: &'static str| {
        let env = env.clone();
        let client = client.clone();
        async move {
            let want = sorted(want);
            let ok = eventually(&env, || ports(&client) == want).await;
            assert!(ok, "{what}: want {want:?}, have {:?}", ports(&client));
            env.transcript
                .note(format!("srv polling: {what}: {} mongoses", want.len()));
        }
    };
    expect(&env, &client, vec![p[0], p[1]], "initial").await;
    dns.set_srv(SRV1, &[(0, p[0], HOST), (0, p[1], HOST), (0, p[2], HOST)]);
    expect(&env, &client, vec![p[0], p[1], p[2]], "1. a record added").await;
    dns.set_srv(SRV1, &[(0, p[0], HOST), (0, p[2], HOST)]);
    expect(&env, &client, vec![p[0], p[2]], "2. a record removed").await;
    dns.set_srv(SRV1, &[(0, p[0], HOST), (0, p[3], HOST)]);
    expect(&env, &client, vec![p[0], p[3]], "3. a record replaced").await;
    dns.set_srv(SRV1, &[(0, p[1], HOST)]);
    expect(&env, &client, vec![p[1]], "4. both replaced by one").await;
    dns.set_srv(SRV1, &[(0, p[2], HOST), (0, p[3], HOST)]);
    expect(&env, &client, vec![p[2], p[3]], "5. both replaced by two").await;

    // 6-8: a timeout, NXDOMAIN, no SRV record: rescans go on (every heartbeatFrequencyMS),
    // the topology stays.
    let srv_queries = |dns: &DnsServer| dns.queries().iter().filter(|q| q.qtype == 33).count();
    for (what, apply) in [
        ("6. lookup timeout", 0),
        ("7. lookup failure (NXDOMAIN)", 1),
        ("8. no SRV record", 2),
    ] {
        match apply {
            0 => dns.set_fault(Some(SRV1), Some(DnsFault::Silent)),
            1 => {
                dns.set_fault(Some(SRV1), None);
                dns.remove(SRV1, None);
            }
            _ => dns.add_txt(SRV1, 60, &["no SRV record here"]),
        }
        let before = srv_queries(&dns);
        let rescanned = eventually(&env, || srv_queries(&dns) >= before + 2).await;
        assert!(rescanned, "{what}: polling goes on");
        assert_eq!(ports(&client), sorted(vec![p[2], p[3]]), "{what}");
        env.transcript
            .note(format!("srv polling: {what}: unchanged after two rescans"));
    }
    client.shutdown().await;
    Outcome::Pass
}

/// Each adapter's `ClientOptions::parse(uri).resolver_config(..).await` (its `ClientOptionsExt`,
/// on the runtime it is called from) and `Client::with_options` (its `ClientExt`).
pub async fn adapter_parse_resolves_srv(env: Env) -> Outcome {
    let dns = stub();
    let m = mongoses(1);
    dns.add_srv(
        "_mongodb._tcp.test3.test.build.10gen.cc",
        600,
        port(&m[0]),
        HOST,
    );
    dns.add_txt("test3.test.build.10gen.cc", 600, &["authSource=thisDB"]);
    dns.add_a(HOST, 600, Ipv4Addr::LOCALHOST);
    let config = dns.resolver_config(Duration::from_secs(2));
    let uri = "mongodb+srv://test3.test.build.10gen.cc/?tls=false";
    let (options, client) = match env.harness.runtime_name {
        "tokio" => {
            use anymongo_tokio::{ClientExt, ClientOptionsExt};
            let o = ClientOptions::parse(uri).resolver_config(config).await;
            let o = o.expect("parse");
            (o.clone(), Client::with_options(o))
        }
        "async-std" => {
            use anymongo_async_std::{ClientExt, ClientOptionsExt};
            let o = ClientOptions::parse(uri).resolver_config(config).await;
            let o = o.expect("parse");
            (o.clone(), Client::with_options(o))
        }
        "smol" => {
            use anymongo_smol::{ClientExt, ClientOptionsExt};
            let o = ClientOptions::parse(uri).resolver_config(config).await;
            let o = o.expect("parse");
            (o.clone(), Client::with_options(o))
        }
        other => panic!("no adapter for runtime {other}"),
    };
    assert_eq!(
        options.hosts,
        vec![ServerAddress::tcp(HOST, port(&m[0]))],
        "the seedlist"
    );
    assert_eq!(options.auth_source.as_deref(), Some("thisDB"));
    let client = client.expect("client");
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping");
    env.transcript
        .note("the adapter's ClientOptions::parse resolved 1 seed and authSource from TXT; pinged");
    client.shutdown().await;
    Outcome::Pass
}
