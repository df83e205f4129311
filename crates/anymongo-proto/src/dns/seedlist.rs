//! The rules of Initial DNS Seedlist Discovery and of SRV polling
//! (`source/initial-dns-seedlist-discovery` and `source/polling-srv-records-for-mongos-discovery`
//! in mongodb/specifications), on records already looked up.
//!
//! - [`verify_target`]: a host returned by SRV must share the SRV host name's `{domainname}`
//!   (the host name less its first label when it has three or more labels, else the whole host
//!   name) and have at least one more label than that domain.
//! - [`initial_seedlist`]: the seedlist from SRV records (any unverified host is an error; a
//!   random `srvMaxHosts` subset, Fisher-Yates); [`txt_options`]: at most one TXT record, its
//!   strings concatenated; [`apply`]: both applied to the options of a `mongodb+srv` URI, then
//!   the cross-option rules checked again (the spec validates after the lookups).
//! - [`polled_hosts`]: the hosts a rescan found (unverified ones dropped, not an error) and
//!   [`rescan_interval`]: when to rescan next.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::seq::SliceRandom;

use super::{name, SrvRecord, TxtRecord};
use crate::error::{Error, Result};
use crate::options::{ClientOptions, ServerAddress, SrvInfo};

/// The polling spec's floor on the rescan interval.
pub const MIN_RESCAN_INTERVAL: Duration = Duration::from_secs(60);

/// Checks that `target` (normalized: lowercase, no final dot) may be used for the SRV host
/// `srv_host`; the error says why not.
pub fn verify_target(srv_host: &str, target: &str) -> std::result::Result<(), String> {
    let srv_host = name::normalize(srv_host);
    let srv_parts: Vec<&str> = srv_host.split('.').collect();
    let domain = if srv_parts.len() >= 3 {
        &srv_parts[1..]
    } else {
        &srv_parts[..]
    };
    let parts: Vec<&str> = target.split('.').collect();
    // At least one more label than the domain, and the domain's labels at the end.
    let ok = parts.len() > domain.len() && parts[1..].ends_with(domain);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the SRV record for '{srv_host}' returned the host '{target}', which is not in its \
             parent domain '{}'",
            domain.join(".")
        ))
    }
}

/// The hosts of `records`, normalized and without duplicates, in order.
fn hosts_of(records: &[SrvRecord]) -> Vec<(String, u16)> {
    let mut seen = BTreeSet::new();
    records
        .iter()
        .map(|r| (name::normalize(&r.target), r.port))
        .filter(|h| seen.insert(h.clone()))
        .collect()
}

/// The lowest TTL of `records`.
pub fn min_ttl(records: &[SrvRecord]) -> Option<Duration> {
    records
        .iter()
        .map(|r| Duration::from_secs(u64::from(r.ttl)))
        .min()
}

/// The initial seedlist from the SRV records of `srv`'s query: every host must pass
/// [`verify_target`] (else an error, and no host is used); with `srvMaxHosts` positive and
/// smaller than the number of hosts, that many chosen at random (Fisher-Yates).
pub fn initial_seedlist(
    srv: &SrvInfo,
    records: &[SrvRecord],
    rng: &mut impl rand::Rng,
) -> Result<Vec<ServerAddress>> {
    let hosts = hosts_of(records);
    if hosts.is_empty() {
        return Err(Error::dns_resolve(format!(
            "no SRV records for '{}'",
            srv.srv_query_name()
        )));
    }
    for (host, _) in &hosts {
        verify_target(&srv.hostname, host).map_err(Error::dns_resolve)?;
    }
    let mut hosts: Vec<ServerAddress> = hosts
        .into_iter()
        .map(|(h, p)| ServerAddress::tcp(h, p))
        .collect();
    let max = srv.max_hosts as usize;
    if max > 0 && max < hosts.len() {
        hosts.shuffle(rng);
        hosts.truncate(max);
    }
    Ok(hosts)
}

/// The options string of the TXT records of the SRV host: `None` without a record, the
/// record's strings concatenated with one, an error with more than one or with bytes that are
/// not UTF-8.
pub fn txt_options(records: &[TxtRecord]) -> Result<Option<String>> {
    match records {
        [] => Ok(None),
        [one] => {
            let bytes: Vec<u8> = one.strings.concat();
            String::from_utf8(bytes).map(Some).map_err(|_| {
                Error::invalid_argument("the TXT record of the SRV host is not valid UTF-8")
            })
        }
        more => Err(Error::dns_resolve(format!(
            "the SRV host has {} TXT records; at most one is allowed",
            more.len()
        ))),
    }
}

/// Applies the lookups of a `mongodb+srv` URI to its options: the seedlist replaces `hosts`,
/// the TXT record's options fill the options the URI did not set (only `authSource`,
/// `replicaSet` and `loadBalanced` are allowed), `srv.min_ttl` records the SRV records' lowest
/// TTL, and the cross-option rules are checked on the result. Returns the TXT record's warnings
/// (invalid values, ignored like a connection string's).
pub fn apply(
    options: &mut ClientOptions,
    srv_records: &[SrvRecord],
    txt_records: &[TxtRecord],
    rng: &mut impl rand::Rng,
) -> Result<Vec<String>> {
    let Some(srv) = options.srv.clone() else {
        return Err(Error::invalid_argument(
            "SRV records applied to options of a mongodb:// connection string",
        ));
    };
    let hosts = initial_seedlist(&srv, srv_records, rng)?;
    let txt = txt_options(txt_records)?;
    options.hosts = hosts;
    if let Some(s) = options.srv.as_mut() {
        s.min_ttl = min_ttl(srv_records);
    }
    match txt {
        Some(txt) => crate::uri::apply_txt_record(options, &txt),
        None => options.validate().map(|()| Vec::new()),
    }
}

/// What a rescan found: the verified hosts (an empty list means "change nothing"), the hosts
/// refused by [`verify_target`] (to log), and the lowest TTL of the verified records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rescan {
    pub hosts: Vec<ServerAddress>,
    pub rejected: Vec<String>,
    pub min_ttl: Option<Duration>,
}

/// The hosts of a rescan's SRV records: the unverified ones dropped (the polling spec: never an
/// error), duplicates removed.
pub fn polled_hosts(srv: &SrvInfo, records: &[SrvRecord]) -> Rescan {
    let mut rejected = Vec::new();
    let mut verified = Vec::new();
    for r in records {
        let host = name::normalize(&r.target);
        match verify_target(&srv.hostname, &host) {
            Ok(()) => verified.push(r.clone()),
            Err(_) => rejected.push(format!("{host}:{}", r.port)),
        }
    }
    Rescan {
        hosts: hosts_of(&verified)
            .into_iter()
            .map(|(h, p)| ServerAddress::tcp(h, p))
            .collect(),
        rejected,
        min_ttl: min_ttl(&verified),
    }
}

/// How long after a rescan (or the initial lookup) ended the next rescan starts: the lowest TTL
/// of the verified SRV records it found, but not less than `floor` (the spec's 60 s,
/// [`MIN_RESCAN_INTERVAL`]; lower only in tests); `heartbeat_frequency` when it found no
/// verified host, failed, or no TTL is known.
pub fn rescan_interval(
    found: Option<Option<Duration>>,
    heartbeat_frequency: Duration,
    floor: Duration,
) -> Duration {
    match found {
        Some(Some(ttl)) => ttl.max(floor),
        Some(None) => floor,
        None => heartbeat_frequency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn srv(target: &str, port: u16, ttl: u32) -> SrvRecord {
        SrvRecord {
            target: target.into(),
            port,
            priority: 0,
            weight: 0,
            ttl,
        }
    }

    fn info(host: &str, max: u32) -> SrvInfo {
        SrvInfo {
            hostname: host.into(),
            service_name: "mongodb".into(),
            max_hosts: max,
            min_ttl: None,
        }
    }

    #[test]
    fn parent_domain_rules_of_the_spec_and_its_prose_tests() {
        let ok = |s: &str, t: &str| verify_target(s, t).is_ok();
        // Three or more labels: the domain is the host name less its first label.
        assert!(ok(
            "test1.test.build.10gen.cc",
            "localhost.test.build.10gen.cc"
        ));
        assert!(ok(
            "test18.test.build.10gen.cc",
            "localhost.sub.test.build.10gen.cc"
        ));
        assert!(ok("test.build.10gen.cc", "test.build.10gen.cc"));
        assert!(ok("build.10gen.cc", "build.10gen.cc"));
        assert!(!ok(
            "test12.test.build.10gen.cc",
            "localhost.build.10gen.cc"
        ));
        assert!(!ok("test13.test.build.10gen.cc", "test.build.10gen.cc"));
        assert!(!ok(
            "test14.test.build.10gen.cc",
            "localhost.not-test.build.10gen.cc"
        ));
        assert!(!ok(
            "test17.test.build.10gen.cc",
            "localhost.test.build.10gen.not-cc"
        ));
        // Fewer than three labels: the domain is the whole host name, plus one more level.
        assert!(ok("localhost", "test_1.localhost"));
        assert!(ok("mongo.local", "test_1.mongo.local"));
        assert!(!ok("localhost", "localhost.mongodb"));
        assert!(!ok("mongo.local", "test_1.evil.local"));
        assert!(!ok("blogs.mongodb.com", "blogs.evil.com"));
        assert!(!ok("localhost", "localhost"));
        assert!(!ok("mongo.local", "mongo.local"));
        assert!(!ok("localhost", "test_1.cluster_1localhost"));
        assert!(!ok("mongo.local", "test_1.my_hostmongo.local"));
        assert!(!ok("blogs.mongodb.com", "cluster.testmongodb.com"));
        // The root target ("service not available") is never in the domain.
        assert!(!ok("a.b.c", ""));
    }

    #[test]
    fn srv_max_hosts_picks_a_random_subset() {
        let records = [
            srv("a.example.com", 1, 60),
            srv("b.example.com", 2, 30),
            srv("c.example.com.", 3, 90),
            srv("A.example.com", 1, 60),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let all = initial_seedlist(&info("x.example.com", 0), &records, &mut rng).unwrap();
        assert_eq!(all.len(), 3, "duplicates removed");
        assert_eq!(all[2], ServerAddress::tcp("c.example.com", 3));
        let mut seen = BTreeSet::new();
        for seed in 0..40 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let two = initial_seedlist(&info("x.example.com", 2), &records, &mut rng).unwrap();
            assert_eq!(two.len(), 2);
            assert!(two.iter().all(|h| all.contains(h)));
            seen.extend(two);
        }
        assert_eq!(seen.len(), 3, "every host gets picked sometimes");
        assert_eq!(
            initial_seedlist(&info("x.example.com", 5), &records, &mut rng)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(min_ttl(&records), Some(Duration::from_secs(30)));
    }

    #[test]
    fn initial_discovery_errors() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let e = initial_seedlist(&info("x.example.com", 0), &[], &mut rng).unwrap_err();
        assert!(
            matches!(e.kind(), crate::ErrorKind::DnsResolve { .. }),
            "{e}"
        );
        let records = [srv("a.example.com", 1, 1), srv("a.evil.com", 1, 1)];
        let e = initial_seedlist(&info("x.example.com", 0), &records, &mut rng).unwrap_err();
        assert!(e.to_string().contains("a.evil.com"), "{e}");

        let one = |s: &[&str]| TxtRecord {
            strings: s.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ttl: 1,
        };
        assert_eq!(txt_options(&[]).unwrap(), None);
        assert_eq!(
            txt_options(&[one(&["replicaS", "et=rep", "l0"])]).unwrap(),
            Some("replicaSet=repl0".into())
        );
        assert!(txt_options(&[one(&["a=b"]), one(&["c=d"])]).is_err());
        let bad = TxtRecord {
            strings: vec![vec![0xff]],
            ttl: 1,
        };
        assert!(txt_options(&[bad]).is_err());
    }

    #[test]
    fn apply_fills_hosts_txt_options_and_checks_the_rules_after() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let parsed = crate::uri::parse("mongodb+srv://test5.test.build.10gen.cc/?srvMaxHosts=1")
            .unwrap()
            .options;
        assert!(parsed.hosts.is_empty(), "unresolved until the lookups");
        let records = [srv("localhost.test.build.10gen.cc", 27017, 600)];
        let txt = [TxtRecord {
            strings: vec![b"replicaSet=repl0&authSource=thisDB".to_vec()],
            ttl: 1,
        }];
        // srvMaxHosts with a replicaSet from the TXT record: an error (checked after).
        assert!(apply(&mut parsed.clone(), &records, &txt, &mut rng).is_err());
        let mut o = crate::uri::parse("mongodb+srv://test5.test.build.10gen.cc/")
            .unwrap()
            .options;
        let warnings = apply(&mut o, &records, &txt, &mut rng).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            o.hosts,
            vec![ServerAddress::tcp("localhost.test.build.10gen.cc", 27017)]
        );
        assert_eq!(o.repl_set_name.as_deref(), Some("repl0"));
        assert_eq!(o.auth_source.as_deref(), Some("thisDB"));
        assert!(o.tls_enabled());
        assert_eq!(o.srv.unwrap().min_ttl, Some(Duration::from_secs(600)));
        // loadBalanced with several hosts: an error.
        let mut o = crate::uri::parse("mongodb+srv://test1.test.build.10gen.cc/?loadBalanced=true")
            .unwrap()
            .options;
        let two = [
            srv("localhost.test.build.10gen.cc", 27017, 1),
            srv("localhost.test.build.10gen.cc", 27018, 1),
        ];
        assert!(apply(&mut o, &two, &[], &mut rng).is_err());
    }

    #[test]
    fn rescans_drop_unverified_hosts_and_pick_their_interval() {
        let records = [
            srv("a.example.com", 1, 120),
            srv("b.evil.com", 2, 5),
            srv("c.example.com", 3, 90),
        ];
        let r = polled_hosts(&info("x.example.com", 0), &records);
        assert_eq!(
            r.hosts,
            vec![
                ServerAddress::tcp("a.example.com", 1),
                ServerAddress::tcp("c.example.com", 3)
            ]
        );
        assert_eq!(r.rejected, vec!["b.evil.com:2".to_string()]);
        assert_eq!(r.min_ttl, Some(Duration::from_secs(90)));

        let hb = Duration::from_secs(10);
        let floor = MIN_RESCAN_INTERVAL;
        assert_eq!(
            rescan_interval(Some(Some(Duration::from_secs(90))), hb, floor),
            Duration::from_secs(90)
        );
        assert_eq!(
            rescan_interval(Some(Some(Duration::from_secs(5))), hb, floor),
            floor
        );
        assert_eq!(rescan_interval(Some(None), hb, floor), floor);
        assert_eq!(rescan_interval(None, hb, floor), hb);
    }
}
