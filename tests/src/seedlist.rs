//! The Initial DNS Seedlist Discovery spec tests (`$ANYMONGO_SPECS/initial-dns-seedlist-
//! discovery/tests/{replica-set,load-balanced,sharded}`), run on any runtime.
//!
//! The spec's README lists the DNS records the tests need (`test*.test.build.10gen.cc`); the
//! testkit's stub DNS server serves exactly those ([`README_SRV`], [`README_TXT`],
//! [`README_A`]), and the driver is pointed at it with a resolver configuration. The deployments
//! are the testkit's: a three-member replica set `repl0` whose members call themselves
//! `localhost:<port>`, two mongoses, and a load balancer, all serving TLS (and, like mongod with
//! `allowTLS`, plain text too, for the test that turns TLS off) with a certificate for
//! `localhost`, `localhost.test.build.10gen.cc` and `localhost.sub.test.build.10gen.cc`. They
//! listen on ephemeral ports, not on the README's 27017-27019 and 8000: the records' ports and
//! the tests' expected `seeds` and `hosts` are mapped to them (the README asks to adapt the
//! records to the environment), per folder (the replica set's ports for `replica-set`, the
//! mongoses' for `sharded` and `load-balanced`, the load balancer's for 8000).
//!
//! Each test: `ClientOptions::parse(uri).resolver_config(stub)` (the lookups and validation;
//! `error: true` must fail here), then `seeds`/`numSeeds` against the resolved hosts, `options`
//! and `parsed_options` against the options, a client (the CA of the testkit added, as options in
//! code), a `ping` unless `ping: false`, and `hosts`/`numHosts` against the topology
//! description, waited for.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anymongo_core::bson::{doc, oid::ObjectId};
use anymongo_core::dns::ParseConnectionString;
use anymongo_core::options::ClientOptions;
use anymongo_core::rt::{RuntimeExt, RuntimeHandle};
use anymongo_core::Client;
use anymongo_testkit::dns::DnsServer;
use anymongo_testkit::{FakeServer, ReplicaSet, TlsIdentity};
use serde_json::Value;

use crate::unified::{Flow, Report};

/// The SRV records of the README (and one it leaves out): `(owner, port, target)`, TTL 86400.
pub const README_SRV: &[(&str, u16, &str)] = &[
    (
        "_mongodb._tcp.test1.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test1.test.build.10gen.cc.",
        27018,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test2.test.build.10gen.cc.",
        27018,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test2.test.build.10gen.cc.",
        27019,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test3.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test5.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test6.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test7.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test8.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test10.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test11.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test12.test.build.10gen.cc.",
        27017,
        "localhost.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test13.test.build.10gen.cc.",
        27017,
        "test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test14.test.build.10gen.cc.",
        27017,
        "localhost.not-test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test15.test.build.10gen.cc.",
        27017,
        "localhost.test.not-build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test16.test.build.10gen.cc.",
        27017,
        "localhost.test.build.not-10gen.cc.",
    ),
    (
        "_mongodb._tcp.test17.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.not-cc.",
    ),
    (
        "_mongodb._tcp.test18.test.build.10gen.cc.",
        27017,
        "localhost.sub.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test19.test.build.10gen.cc.",
        27017,
        "localhost.evil.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test19.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test20.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test21.test.build.10gen.cc.",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_customname._tcp.test22.test.build.10gen.cc",
        27017,
        "localhost.test.build.10gen.cc.",
    ),
    // Not in the README's table, but in the live DNS the tests were written against:
    // `replica-set/srv-service-name` expects this seed, and the SRV polling README's prose test
    // 13 replaces "both records" of test22.
    (
        "_customname._tcp.test22.test.build.10gen.cc",
        27018,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test23.test.build.10gen.cc.",
        8000,
        "localhost.test.build.10gen.cc.",
    ),
    (
        "_mongodb._tcp.test24.test.build.10gen.cc.",
        8000,
        "localhost.test.build.10gen.cc.",
    ),
    ("_mongodb._tcp.build.10gen.cc.", 27017, "build.10gen.cc."),
    (
        "_mongodb._tcp.test.build.10gen.cc.",
        27017,
        "test.build.10gen.cc.",
    ),
];

/// The TXT records of the README: `(owner, strings)`, TTL 86400.
pub const README_TXT: &[(&str, &[&str])] = &[
    (
        "test5.test.build.10gen.cc.",
        &["replicaSet=repl0&authSource=thisDB"],
    ),
    ("test6.test.build.10gen.cc.", &["replicaSet=repl0"]),
    ("test6.test.build.10gen.cc.", &["authSource=otherDB"]),
    ("test7.test.build.10gen.cc.", &["ssl=false"]),
    ("test8.test.build.10gen.cc.", &["authSource"]),
    ("test10.test.build.10gen.cc.", &["socketTimeoutMS=500"]),
    ("test11.test.build.10gen.cc.", &["replicaS", "et=rep", "l0"]),
    ("test20.test.build.10gen.cc.", &["loadBalanced=true"]),
    ("test21.test.build.10gen.cc.", &["loadBalanced=false"]),
    ("test24.test.build.10gen.cc.", &["loadBalanced=true"]),
];

/// The A records of the README (both 127.0.0.1), TTL 86400.
pub const README_A: &[&str] = &[
    "localhost.test.build.10gen.cc.",
    "localhost.sub.test.build.10gen.cc.",
];

const TTL: u32 = 86400;

/// The spec's folders, in run order.
pub const FOLDERS: &[&str] = &["replica-set", "sharded", "load-balanced"];

/// The testkit deployments and the stub DNS server the tests run against.
pub struct Deployments {
    pub rs: ReplicaSet,
    pub mongoses: Vec<FakeServer>,
    pub load_balancer: FakeServer,
    pub tls: TlsIdentity,
    pub dns: DnsServer,
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployments")
            .field("rs", &self.rs.hosts())
            .field("dns", &self.dns.addr())
            .finish_non_exhaustive()
    }
}

impl Deployments {
    /// Starts the replica set, the mongoses, the load balancer and the stub DNS server.
    pub fn start() -> std::io::Result<Deployments> {
        let tls = TlsIdentity::generate_for(&[
            "localhost",
            "localhost.test.build.10gen.cc",
            "localhost.sub.test.build.10gen.cc",
            "127.0.0.1",
        ])?
        .allowing_plaintext();
        let rs = ReplicaSet::try_start_named(3, "repl0", "localhost", |_, b| b.tls(tls.clone()))?;
        let mongoses = (0..2)
            .map(|_| {
                FakeServer::builder()
                    .hello_field("msg", "isdbgrid")
                    .tls(tls.clone())
                    .try_start()
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let load_balancer = FakeServer::builder()
            .hello_field("msg", "isdbgrid")
            .hello_field("serviceId", ObjectId::new())
            .tls(tls.clone())
            .try_start()?;
        Ok(Deployments {
            rs,
            mongoses,
            load_balancer,
            tls,
            dns: DnsServer::start()?,
        })
    }

    fn servers(&self) -> impl Iterator<Item = &FakeServer> {
        self.rs
            .members()
            .iter()
            .chain(&self.mongoses)
            .chain([&self.load_balancer])
    }

    /// Connections open to the deployments now.
    pub fn open_connections(&self) -> usize {
        self.servers().map(FakeServer::open_connections).sum()
    }

    /// How many connections the deployments served in plain text so far.
    pub fn plaintext_connections(&self) -> u64 {
        self.servers()
            .map(FakeServer::plaintext_connection_count)
            .sum()
    }

    /// The README's ports mapped to this folder's deployment.
    pub fn ports(&self, folder: &str) -> BTreeMap<u16, u16> {
        let rs: Vec<u16> = self.rs.members().iter().map(|m| m.addr().port()).collect();
        let m: Vec<u16> = self.mongoses.iter().map(|m| m.addr().port()).collect();
        let lb = self.load_balancer.addr().port();
        let (a, b) = if folder == "replica-set" {
            (rs[0], rs[1])
        } else {
            (m[0], m[1])
        };
        BTreeMap::from([(27017, a), (27018, b), (27019, rs[2]), (8000, lb)])
    }

    /// Loads the README's records into the stub, with this folder's ports.
    pub fn load_records(&self, folder: &str) {
        let ports = self.ports(folder);
        self.dns.clear();
        for (owner, port, target) in README_SRV {
            self.dns.add_srv(owner, TTL, ports[port], target);
        }
        for (owner, strings) in README_TXT {
            self.dns.add_txt(owner, TTL, strings);
        }
        for owner in README_A {
            self.dns.add_a(owner, TTL, Ipv4Addr::LOCALHOST);
        }
    }
}

/// `host:port` with the README's port mapped.
fn map_host(s: &str, ports: &BTreeMap<u16, u16>) -> String {
    match s.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>().ok().and_then(|p| ports.get(&p)) {
            Some(mapped) => format!("{host}:{mapped}"),
            None => s.to_string(),
        },
        None => s.to_string(),
    }
}

fn strings(v: &Value, ports: &BTreeMap<u16, u16>) -> Option<Vec<String>> {
    let mut out: Vec<String> = v
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .map(|s| map_host(s, ports))
        .collect();
    out.sort();
    Some(out)
}

fn fail(m: impl Into<String>) -> Flow {
    Flow::Fail(m.into())
}

/// Checks `options` of a test against the parsed options.
fn check_options(expected: &Value, o: &ClientOptions) -> Result<(), Flow> {
    let Some(expected) = expected.as_object() else {
        return Ok(());
    };
    for (key, want) in expected {
        let got: Value = match key.as_str() {
            "replicaSet" => o.repl_set_name.clone().into(),
            "authSource" => o
                .auth_source
                .clone()
                .or_else(|| o.credential.as_ref().and_then(|c| c.source.clone()))
                .into(),
            "ssl" | "tls" => o.tls_enabled().into(),
            "loadBalanced" => o.load_balanced.unwrap_or(false).into(),
            "directConnection" => o.direct_connection.unwrap_or(false).into(),
            "srvMaxHosts" => o.srv.as_ref().map_or(0, |s| s.max_hosts).into(),
            "srvServiceName" => o.srv.as_ref().map(|s| s.service_name.clone()).into(),
            other => return Err(fail(format!("the runner does not know option '{other}'"))),
        };
        if &got != want {
            return Err(fail(format!("option {key}: expected {want}, got {got}")));
        }
    }
    Ok(())
}

/// Checks `parsed_options` (user information and the database of the path).
fn check_parsed_options(expected: &Value, o: &ClientOptions) -> Result<(), Flow> {
    let Some(expected) = expected.as_object() else {
        return Ok(());
    };
    let credential = o.credential.as_ref();
    for (key, want) in expected {
        let got: Value = match key.as_str() {
            "user" => credential.and_then(|c| c.username.clone()).into(),
            "password" => credential.and_then(|c| c.password.clone()).into(),
            "db" | "auth_database" | "defaultDatabase" => o.default_database.clone().into(),
            other => {
                return Err(fail(format!(
                    "the runner does not know parsed option '{other}'"
                )))
            }
        };
        if &got != want {
            return Err(fail(format!("{key}: expected {want}, got {got}")));
        }
    }
    Ok(())
}

/// Runs one test file.
async fn run_case(
    test: &Value,
    deployments: &Deployments,
    runtime: &RuntimeHandle,
    ports: &BTreeMap<u16, u16>,
) -> Result<(), Flow> {
    let uri = test["uri"]
        .as_str()
        .ok_or_else(|| fail("a test without a uri"))?;
    let expect_error = test["error"].as_bool().unwrap_or(false);
    let parsed = ParseConnectionString::new(uri, Ok(runtime.clone()))
        .resolver_config(deployments.dns.resolver_config(Duration::from_secs(2)))
        .await;
    let mut options = match (parsed, expect_error) {
        (Err(_), true) => return Ok(()),
        (Ok(o), true) => {
            return Err(fail(format!(
                "expected an error ({}), got hosts {:?}",
                test["comment"].as_str().unwrap_or(""),
                o.hosts
            )))
        }
        (Err(e), false) => return Err(fail(format!("unexpected error: {e}"))),
        (Ok(o), false) => o,
    };
    let seeds: Vec<String> = {
        let mut s: Vec<String> = options.hosts.iter().map(|h| h.to_string()).collect();
        s.sort();
        s
    };
    if let Some(want) = strings(&test["seeds"], ports) {
        if test.get("numSeeds").is_none() && seeds != want {
            return Err(fail(format!("seeds: expected {want:?}, got {seeds:?}")));
        }
        if test.get("numSeeds").is_some() && !seeds.iter().all(|s| want.contains(s)) {
            return Err(fail(format!("seeds {seeds:?} are not among {want:?}")));
        }
    }
    if let Some(n) = test["numSeeds"].as_u64() {
        if seeds.len() as u64 != n {
            return Err(fail(format!("numSeeds: expected {n}, got {seeds:?}")));
        }
    }
    check_options(&test["options"], &options)?;
    check_parsed_options(&test["parsed_options"], &options)?;

    // Options in code: the testkit's CA, quicker heartbeats and selection.
    options.tls_options.ca_file = Some(deployments.tls.ca_path.to_string_lossy().into_owned());
    options.heartbeat_frequency = Some(Duration::from_millis(500));
    options.server_selection_timeout = Some(Duration::from_secs(10));
    let tls = options.tls_enabled();
    let plaintext_before = deployments.plaintext_connections();
    let client = Client::builder(options, runtime.clone())
        .build()
        .map_err(|e| fail(format!("creating the client: {e}")))?;
    let outcome = check_client(test, &client, runtime, ports).await;
    client.shutdown().await;
    // Every connection of this client closed before the next test counts connections.
    let start = Instant::now();
    while deployments.open_connections() > 0 && start.elapsed() < Duration::from_secs(5) {
        runtime.sleep(Duration::from_millis(10)).await;
    }
    outcome?;
    // The servers serve plain text too: check the client used TLS exactly when it should.
    let plaintext = deployments.plaintext_connections() - plaintext_before;
    match (tls, plaintext) {
        (true, 0) => Ok(()),
        (true, n) => Err(fail(format!(
            "TLS is on, yet {n} connection(s) were plain text"
        ))),
        (false, 0) => Err(fail("TLS is off, yet no connection was plain text")),
        (false, _) => Ok(()),
    }
}

async fn check_client(
    test: &Value,
    client: &Client,
    runtime: &RuntimeHandle,
    ports: &BTreeMap<u16, u16>,
) -> Result<(), Flow> {
    if test["ping"].as_bool() != Some(false) {
        client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| fail(format!("ping: {e}")))?;
    }
    let want_hosts = strings(&test["hosts"], ports);
    let want_count = test["numHosts"].as_u64();
    if want_hosts.is_none() && want_count.is_none() {
        return Ok(());
    }
    let hosts = || {
        let mut h: Vec<String> = client
            .topology_description()
            .servers
            .keys()
            .map(|a| a.to_string())
            .collect();
        h.sort();
        h
    };
    let matches = |h: &Vec<String>| {
        want_hosts.as_ref().is_none_or(|w| w == h) && want_count.is_none_or(|n| h.len() as u64 == n)
    };
    let start = Instant::now();
    while !matches(&hosts()) && start.elapsed() < Duration::from_secs(15) {
        runtime.sleep(Duration::from_millis(25)).await;
    }
    let got = hosts();
    if matches(&got) {
        Ok(())
    } else {
        Err(fail(format!(
            "hosts: expected {want_hosts:?} ({want_count:?} of them), got {got:?}"
        )))
    }
}

/// Runs every test of the three folders under `root` whose `folder/file` contains one of
/// `filters` (all if empty).
pub async fn run_suite(
    root: &Path,
    deployments: &Deployments,
    runtime: RuntimeHandle,
    filters: &[String],
) -> Report {
    let mut report = Report::default();
    for folder in FOLDERS {
        let dir = root.join(folder);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) => {
                report.record(
                    format!("{folder}/*"),
                    Err(fail(format!("cannot read {}: {e}", dir.display()))),
                );
                continue;
            }
        };
        files.sort();
        deployments.load_records(folder);
        let ports = deployments.ports(folder);
        for path in files {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            let name = format!("{folder}/{}", stem.unwrap_or_default());
            if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            let test: Value = match std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(v) => v,
                Err(e) => {
                    report.record(name, Err(fail(format!("reading the test: {e}"))));
                    continue;
                }
            };
            let outcome = run_case(&test, deployments, &runtime, &ports).await;
            report.record(name, outcome);
        }
    }
    report
}
