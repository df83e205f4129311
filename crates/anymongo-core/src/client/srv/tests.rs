//! Seeding and SRV polling on the virtual clock, with a scripted resolver: when rescans happen
//! (the records' lowest TTL, the floor, heartbeatFrequencyMS after a failure), what they change
//! (hosts added and removed, srvMaxHosts, nothing on a failure or an empty answer), and when
//! polling does not happen (load-balanced mode) or stops (the client is dropped).

use std::sync::Mutex as StdMutex;
use std::time::Instant;

use super::*;
use crate::dns::{DnsError, RecordType, SrvRecord, TxtRecord, MIN_RESCAN_INTERVAL};
use crate::rt::BoxFuture;
use crate::testing::VirtualRuntime;
use crate::Client;

/// A resolver whose SRV answer the test changes, recording when it was asked.
#[derive(Default)]
struct Records {
    srv: StdMutex<Option<Result<Vec<SrvRecord>, DnsError>>>,
    txt: StdMutex<Vec<TxtRecord>>,
    asked: StdMutex<Vec<(Instant, String)>>,
}

struct Scripted {
    rt: VirtualRuntime,
    records: Arc<Records>,
    /// How long each lookup takes (virtual).
    latency: Duration,
}

impl Resolver for Scripted {
    fn lookup_srv(&self, name: &str) -> BoxFuture<'static, Result<Vec<SrvRecord>, DnsError>> {
        self.records
            .asked
            .lock()
            .unwrap()
            .push((self.rt.now(), format!("SRV {name}")));
        let records = self.records.clone();
        let rt = self.rt.clone();
        let latency = self.latency;
        Box::pin(async move {
            rt.sleep(latency).await;
            let answer = records.srv.lock().unwrap().clone();
            answer.unwrap_or(Err(DnsError::Timeout {
                name: "srv".into(),
                after: latency,
                ignored: 0,
            }))
        })
    }

    fn lookup_txt(&self, _name: &str) -> BoxFuture<'static, Result<Vec<TxtRecord>, DnsError>> {
        let txt = self.records.txt.lock().unwrap().clone();
        Box::pin(async move { Ok(txt) })
    }
}

fn mongos(port: u16, ttl: u32) -> SrvRecord {
    SrvRecord {
        target: "localhost.test.build.10gen.cc".into(),
        port,
        priority: 0,
        weight: 0,
        ttl,
    }
}

struct Fixture {
    rt: VirtualRuntime,
    records: Arc<Records>,
    client: Client,
    start: Instant,
}

impl Fixture {
    fn new(query: &str, initial: Vec<SrvRecord>, floor: Duration) -> Fixture {
        let rt = VirtualRuntime::new();
        let records = Arc::new(Records::default());
        *records.srv.lock().unwrap() = Some(Ok(initial));
        let resolver = Arc::new(Scripted {
            rt: rt.clone(),
            records: records.clone(),
            latency: Duration::from_millis(100),
        });
        let options = ClientOptions::parse_without_srv_resolution(&format!(
            "mongodb+srv://test1.test.build.10gen.cc/?tls=false&heartbeatFrequencyMS=10000\
             &serverSelectionTimeoutMS=2000{query}"
        ))
        .unwrap();
        let start = rt.now();
        let client = Client::builder(options, Arc::new(rt.clone()))
            .resolver(resolver)
            .min_srv_rescan_interval(floor)
            .build()
            .unwrap();
        Fixture {
            rt,
            records,
            client,
            start,
        }
    }

    /// Runs every task until virtual time `at` (from the start).
    fn run_until(&self, at: Duration) {
        let rt = self.rt.clone();
        let deadline = self.start + at;
        self.rt
            .block_on(async move { rt.sleep_until(deadline).await })
            .expect("the clock reaches the deadline");
    }

    fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .client
            .topology_description()
            .servers
            .keys()
            .filter_map(ServerAddress::port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// When each SRV lookup began, from the start.
    fn lookups(&self) -> Vec<Duration> {
        self.records
            .asked
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| *t - self.start)
            .collect()
    }

    fn set(&self, answer: Option<Result<Vec<SrvRecord>, DnsError>>) {
        *self.records.srv.lock().unwrap() = answer;
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn the_client_seeds_itself_then_rescans_at_the_lowest_ttl() {
    let f = Fixture::new(
        "",
        vec![mongos(27017, 300), mongos(27018, 120)],
        MIN_RESCAN_INTERVAL,
    );
    assert!(f.ports().is_empty(), "nothing before the lookup");
    f.run_until(secs(1.0));
    assert_eq!(f.ports(), [27017, 27018]);
    // The first rescan: the initial lookup's lowest TTL (120 s) after it ended (at 0.1 s).
    f.set(Some(Ok(vec![mongos(27017, 30), mongos(27019, 30)])));
    f.run_until(secs(120.0));
    assert_eq!(f.lookups(), [secs(0.0)]);
    f.run_until(secs(120.3));
    assert_eq!(f.lookups(), [secs(0.0), secs(120.1)]);
    // A replacement: 27018 removed, 27019 added, 27017 left alone.
    assert_eq!(f.ports(), [27017, 27019]);
    // A TTL under the floor: the next rescan 60 s after the previous ended.
    f.run_until(secs(181.0));
    assert_eq!(f.lookups()[2], secs(180.2));
}

#[test]
fn failed_and_empty_rescans_change_nothing_and_retry_at_heartbeat_frequency() {
    let f = Fixture::new(
        "",
        vec![mongos(27017, 60), mongos(27018, 60)],
        MIN_RESCAN_INTERVAL,
    );
    f.run_until(secs(1.0));
    assert_eq!(f.ports(), [27017, 27018]);
    // A timeout (no answer at all).
    f.set(None);
    f.run_until(secs(61.0));
    assert_eq!(f.lookups(), [secs(0.0), secs(60.1)]);
    assert_eq!(f.ports(), [27017, 27018]);
    // NXDOMAIN.
    f.set(Some(Err(DnsError::NotFound {
        name: "x".into(),
        record_type: RecordType::Srv,
        nxdomain: true,
    })));
    f.run_until(secs(71.0));
    assert_eq!(
        f.lookups()[2],
        secs(70.2),
        "heartbeatFrequencyMS after the failure"
    );
    assert_eq!(f.ports(), [27017, 27018]);
    // No SRV records, then only records outside the parent domain.
    f.set(Some(Ok(vec![])));
    f.run_until(secs(81.0));
    let mut evil = mongos(27020, 60);
    evil.target = "localhost.evil.build.10gen.cc".into();
    f.set(Some(Ok(vec![evil.clone()])));
    f.run_until(secs(91.0));
    assert_eq!(f.lookups().len(), 5);
    assert_eq!(f.ports(), [27017, 27018], "the topology is never emptied");
    // A valid answer again (with the evil record dropped): back to the TTL.
    f.set(Some(Ok(vec![mongos(27019, 600), evil])));
    f.run_until(secs(101.0));
    assert_eq!(f.ports(), [27019]);
    f.run_until(secs(600.0));
    assert_eq!(f.lookups().len(), 6);
    f.run_until(secs(701.0));
    assert_eq!(f.lookups().len(), 7, "600 s after the last rescan ended");
}

#[test]
fn srv_max_hosts_bounds_the_hosts_polling_adds() {
    let f = Fixture::new(
        "&srvMaxHosts=2",
        vec![mongos(27017, 60), mongos(27018, 60), mongos(27019, 60)],
        Duration::from_secs(1),
    );
    f.run_until(secs(0.5));
    assert_eq!(f.ports().len(), 2, "two of three seeds");
    let kept = f.ports();
    // One of the kept hosts goes away; two new ones come: one is picked.
    f.set(Some(Ok(vec![
        mongos(kept[0], 60),
        mongos(27020, 60),
        mongos(27021, 60),
    ])));
    f.run_until(secs(60.5) + secs(0.2));
    let ports = f.ports();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(ports.contains(&kept[0]));
    assert!(ports.iter().any(|p| [27020, 27021].contains(p)));
}

#[test]
fn load_balanced_clients_do_not_poll() {
    let rt_records = vec![mongos(27017, 1)];
    let f = Fixture::new("&loadBalanced=true", rt_records, Duration::from_secs(1));
    f.run_until(secs(30.0));
    assert_eq!(f.lookups(), [secs(0.0)], "only the initial lookup");
    assert_eq!(f.ports(), [27017]);
}

#[test]
fn polling_stops_when_the_client_is_dropped() {
    let f = Fixture::new("", vec![mongos(27017, 1)], Duration::from_secs(1));
    f.run_until(secs(3.5));
    let before = f.lookups().len();
    assert!(before >= 3, "{before}");
    let Fixture {
        rt,
        records,
        client,
        start,
    } = f;
    drop(client);
    let deadline = start + secs(60.0);
    let rt2 = rt.clone();
    rt.block_on(async move { rt2.sleep_until(deadline).await });
    assert_eq!(records.asked.lock().unwrap().len(), before);
}

#[test]
fn a_failed_seeding_fails_operations_then_recovers() {
    let f = Fixture::new("", vec![], MIN_RESCAN_INTERVAL);
    f.set(Some(Ok(vec![])));
    let client = f.client.clone();
    let err =
        f.rt.block_on(async move { client.list_database_names().await })
            .unwrap()
            .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::DnsResolve { .. }), "{err}");
    // Records appear: the next try (heartbeatFrequencyMS later) seeds the topology.
    f.set(Some(Ok(vec![mongos(27017, 600)])));
    f.run_until(secs(10.5));
    assert_eq!(f.lookups(), [secs(0.0), secs(10.1)]);
    assert_eq!(f.ports(), [27017]);
}

#[test]
fn operations_wait_for_a_slow_lookup_up_to_server_selection_timeout() {
    let rt = VirtualRuntime::new();
    let records = Arc::new(Records::default());
    *records.srv.lock().unwrap() = Some(Ok(vec![mongos(27017, 600)]));
    let resolver = Arc::new(Scripted {
        rt: rt.clone(),
        records,
        latency: Duration::from_secs(5),
    });
    let options = ClientOptions::parse_without_srv_resolution(
        "mongodb+srv://test1.test.build.10gen.cc/?serverSelectionTimeoutMS=2000",
    )
    .unwrap();
    let client = Client::builder(options, Arc::new(rt.clone()))
        .resolver(resolver)
        .build()
        .unwrap();
    let start = rt.now();
    let c = client.clone();
    let err = rt
        .block_on(async move { c.list_database_names().await })
        .unwrap()
        .unwrap_err();
    assert_eq!(rt.now() - start, Duration::from_secs(2));
    assert!(
        matches!(err.kind(), ErrorKind::ServerSelection { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("_mongodb._tcp.test1.test.build.10gen.cc"),
        "{err}"
    );
    drop(client);
}
