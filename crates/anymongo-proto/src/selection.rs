//! Server selection, sans-IO: a [`TopologyDescription`], the operation's [`Criteria`], the
//! deprioritized servers, an RNG and the servers' in-use counts in; a server address out.
//!
//! [`select`] never waits: `Ok(None)` means "no suitable server now", and the caller requests
//! immediate checks ([`Topology::request_immediate_checks`](crate::sdam::Topology)) and waits for
//! the next description change or the server selection timeout.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::options::{ReadPreference, ReadPreferenceMode, ServerAddress, TagSet};
use crate::sdam::{ServerDescription, ServerType, TopologyDescription, TopologyType};

/// `idleWritePeriodMS`: how often an idle primary writes a no-op (10 s).
pub const IDLE_WRITE_PERIOD: Duration = Duration::from_secs(10);
/// `smallestMaxStalenessSeconds` (90 s).
pub const SMALLEST_MAX_STALENESS: Duration = Duration::from_secs(90);

/// What the operation needs from a server.
#[derive(Clone)]
pub enum Criteria {
    /// A read with this read preference.
    Read(ReadPreference),
    /// A write (or any operation that must go to a writable server).
    Write,
    /// Any available data-bearing server for which the predicate holds (application-provided
    /// selector, or a pinned server).
    Predicate(Arc<dyn Fn(&ServerDescription) -> bool + Send + Sync>),
}

impl fmt::Debug for Criteria {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Criteria::Read(rp) => f.debug_tuple("Read").field(rp).finish(),
            Criteria::Write => f.write_str("Write"),
            Criteria::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// Why selection cannot succeed however long the caller waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectionError {
    /// The read preference is invalid (for this topology).
    InvalidReadPreference(String),
    /// A server's wire version range does not overlap the driver's.
    Incompatible(String),
}

impl fmt::Display for SelectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectionError::InvalidReadPreference(m) => write!(f, "invalid read preference: {m}"),
            SelectionError::Incompatible(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SelectionError {}

impl From<SelectionError> for Error {
    fn from(e: SelectionError) -> Self {
        match e {
            SelectionError::InvalidReadPreference(_) => Error::invalid_argument(e.to_string()),
            SelectionError::Incompatible(message) => {
                Error::new(ErrorKind::IncompatibleServer { message })
            }
        }
    }
}

/// Checks a read preference against the rules that do not depend on servers: no tags nor
/// maxStalenessSeconds with mode primary and, in a replica set, maxStalenessSeconds at least
/// 90 s and at least `heartbeatFrequencyMS` + 10 s.
pub fn validate_read_preference(
    rp: &ReadPreference,
    topology_type: TopologyType,
    heartbeat_frequency: Duration,
) -> Result<(), SelectionError> {
    if rp.mode == ReadPreferenceMode::Primary {
        if rp.tag_sets.iter().any(|t| !t.is_empty()) {
            return Err(SelectionError::InvalidReadPreference(
                "tag sets are not allowed with mode primary".into(),
            ));
        }
        if rp.max_staleness.is_some() {
            return Err(SelectionError::InvalidReadPreference(
                "maxStalenessSeconds is not allowed with mode primary".into(),
            ));
        }
    }
    if let (Some(ms), true) = (rp.max_staleness, topology_type.is_replica_set()) {
        let floor = SMALLEST_MAX_STALENESS.max(heartbeat_frequency + IDLE_WRITE_PERIOD);
        if ms < floor {
            return Err(SelectionError::InvalidReadPreference(format!(
                "maxStalenessSeconds must be at least {} seconds (got {})",
                floor.as_secs_f64().ceil(),
                ms.as_secs_f64()
            )));
        }
    }
    Ok(())
}

/// A secondary's estimated staleness (the max staleness spec's formulas); `None` when it cannot
/// be estimated (no lastWriteDate, or no primary data in a ReplicaSetWithPrimary).
pub fn staleness(
    description: &TopologyDescription,
    server: &ServerDescription,
    heartbeat_frequency: Duration,
) -> Option<Duration> {
    if server.server_type != ServerType::RsSecondary {
        return Some(Duration::ZERO);
    }
    let hb = heartbeat_frequency.as_millis() as i128;
    let s_lwd = i128::from(server.last_write_date?.timestamp_millis());
    let ms = match description.primary() {
        Some(p) if description.topology_type == TopologyType::ReplicaSetWithPrimary => {
            let p_lwd = i128::from(p.last_write_date?.timestamp_millis());
            let lut_diff = signed_millis(server.last_update_time?, p.last_update_time?);
            lut_diff - (s_lwd - p_lwd) + hb
        }
        _ => {
            let max_lwd = description
                .servers
                .values()
                .filter(|s| s.server_type == ServerType::RsSecondary)
                .filter_map(|s| s.last_write_date)
                .map(|d| i128::from(d.timestamp_millis()))
                .max()?;
            max_lwd - s_lwd + hb
        }
    };
    Some(Duration::from_millis(
        ms.clamp(0, i128::from(u64::MAX)) as u64
    ))
}

fn signed_millis(a: Instant, b: Instant) -> i128 {
    if a >= b {
        (a - b).as_millis() as i128
    } else {
        -((b - a).as_millis() as i128)
    }
}

fn matches_tags(server: &ServerDescription, tags: &TagSet) -> bool {
    tags.iter()
        .all(|(k, v)| server.tags.get(k).is_some_and(|sv| sv == v))
}

struct Ctx<'a> {
    td: &'a TopologyDescription,
    heartbeat_frequency: Duration,
}

impl<'a> Ctx<'a> {
    /// Secondaries (and the primary for nearest) after staleness and tag filtering.
    fn eligible(
        &self,
        candidates: &[&'a ServerDescription],
        rp: &ReadPreference,
        include_primary: bool,
    ) -> Vec<&'a ServerDescription> {
        let mut servers: Vec<&'a ServerDescription> = candidates
            .iter()
            .copied()
            .filter(|s| {
                s.server_type == ServerType::RsSecondary
                    || (include_primary && s.server_type == ServerType::RsPrimary)
            })
            .collect();
        if let Some(max) = rp.max_staleness {
            servers.retain(|s| {
                staleness(self.td, s, self.heartbeat_frequency).is_some_and(|st| st <= max)
            });
        }
        if rp.tag_sets.is_empty() {
            return servers;
        }
        for tags in &rp.tag_sets {
            let matching: Vec<&ServerDescription> = servers
                .iter()
                .copied()
                .filter(|s| matches_tags(s, tags))
                .collect();
            if !matching.is_empty() {
                return matching;
            }
        }
        Vec::new()
    }

    fn suitable(
        &self,
        candidates: &[&'a ServerDescription],
        criteria: &Criteria,
    ) -> Vec<&'a ServerDescription> {
        let of_type = |pred: &dyn Fn(ServerType) -> bool| -> Vec<&'a ServerDescription> {
            candidates
                .iter()
                .copied()
                .filter(|s| pred(s.server_type))
                .collect()
        };
        match self.td.topology_type {
            TopologyType::Unknown
            | TopologyType::Single
            | TopologyType::LoadBalanced
            | TopologyType::Sharded => candidates
                .iter()
                .copied()
                .filter(|s| suitable_alone(self.td.topology_type, s, criteria) == Some(true))
                .collect(),
            TopologyType::ReplicaSetNoPrimary | TopologyType::ReplicaSetWithPrimary => {
                let primary = of_type(&|t| t == ServerType::RsPrimary);
                match criteria {
                    Criteria::Write => primary,
                    Criteria::Predicate(p) => {
                        of_type(&|t| matches!(t, ServerType::RsPrimary | ServerType::RsSecondary))
                            .into_iter()
                            .filter(|s| p(s))
                            .collect()
                    }
                    Criteria::Read(rp) => match rp.mode {
                        ReadPreferenceMode::Primary => primary,
                        ReadPreferenceMode::PrimaryPreferred => {
                            if primary.is_empty() {
                                self.eligible(candidates, rp, false)
                            } else {
                                primary
                            }
                        }
                        ReadPreferenceMode::Secondary => self.eligible(candidates, rp, false),
                        ReadPreferenceMode::SecondaryPreferred => {
                            let secondaries = self.eligible(candidates, rp, false);
                            if secondaries.is_empty() {
                                primary
                            } else {
                                secondaries
                            }
                        }
                        ReadPreferenceMode::Nearest => self.eligible(candidates, rp, true),
                    },
                }
            }
        }
    }
}

/// Whether `server` is suitable for `criteria` on its own, in a topology of a type where that does
/// not depend on the other servers (Unknown, Single, LoadBalanced, Sharded); `None` for the
/// replica set types.
fn suitable_alone(
    topology_type: TopologyType,
    server: &ServerDescription,
    criteria: &Criteria,
) -> Option<bool> {
    let predicate = || match criteria {
        Criteria::Predicate(p) => p(server),
        _ => true,
    };
    match topology_type {
        TopologyType::Unknown => Some(false),
        TopologyType::Single => Some(server.server_type.is_available() && predicate()),
        TopologyType::LoadBalanced => Some(server.server_type == ServerType::LoadBalancer),
        TopologyType::Sharded => Some(server.server_type == ServerType::Mongos && predicate()),
        TopologyType::ReplicaSetNoPrimary | TopologyType::ReplicaSetWithPrimary => None,
    }
}

/// The checks [`suitable_servers`] makes before looking at any server.
fn check_selectable(
    description: &TopologyDescription,
    criteria: &Criteria,
    heartbeat_frequency: Duration,
) -> Result<(), SelectionError> {
    if !description.compatible {
        return Err(SelectionError::Incompatible(
            description
                .compatibility_error
                .clone()
                .unwrap_or_else(|| "incompatible server wire version".into()),
        ));
    }
    if let Criteria::Read(rp) = criteria {
        validate_read_preference(rp, description.topology_type, heartbeat_frequency)?;
    }
    Ok(())
}

/// The suitable servers for `criteria`: deprioritized servers are left out unless that leaves
/// none. Fails on an invalid read preference or an incompatible topology.
pub fn suitable_servers<'a>(
    description: &'a TopologyDescription,
    criteria: &Criteria,
    heartbeat_frequency: Duration,
    deprioritized: &[ServerAddress],
) -> Result<Vec<&'a ServerDescription>, SelectionError> {
    check_selectable(description, criteria, heartbeat_frequency)?;
    let ctx = Ctx {
        td: description,
        heartbeat_frequency,
    };
    let all: Vec<&ServerDescription> = description.servers.values().collect();
    if !deprioritized.is_empty() {
        let preferred: Vec<&ServerDescription> = all
            .iter()
            .copied()
            .filter(|s| !deprioritized.contains(&s.address))
            .collect();
        let found = ctx.suitable(&preferred, criteria);
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Ok(ctx.suitable(&all, criteria))
}

/// The servers among `suitable` whose average RTT is within `local_threshold` of the fastest.
/// A server without a measured RTT yet (its description came from a handshake) is kept.
pub fn in_latency_window<'a>(
    suitable: &[&'a ServerDescription],
    local_threshold: Duration,
) -> Vec<&'a ServerDescription> {
    let fastest = suitable.iter().filter_map(|s| s.round_trip_time).min();
    suitable
        .iter()
        .copied()
        .filter(|s| match (s.round_trip_time, fastest) {
            (Some(rtt), Some(fastest)) => rtt <= fastest.saturating_add(local_threshold),
            _ => true,
        })
        .collect()
}

/// Selects a server: the suitable servers in the latency window, then of two picked at random
/// the one with fewer operations in progress (`in_use`). `Ok(None)` means none is suitable now.
pub fn select(
    description: &TopologyDescription,
    criteria: &Criteria,
    local_threshold: Duration,
    heartbeat_frequency: Duration,
    deprioritized: &[ServerAddress],
    rng: &mut impl rand::Rng,
    in_use: impl Fn(&ServerAddress) -> usize,
) -> Result<Option<ServerAddress>, SelectionError> {
    // The common case of one server outside a replica set, without allocating: it is suitable
    // or not on its own (deprioritizing it changes nothing when it is the only one), and alone
    // it is always in the latency window.
    if let (1, Some(only)) = (
        description.servers.len(),
        description.servers.values().next(),
    ) {
        if let Some(suitable) = suitable_alone(description.topology_type, only, criteria) {
            check_selectable(description, criteria, heartbeat_frequency)?;
            return Ok(suitable.then(|| only.address.clone()));
        }
    }
    let suitable = suitable_servers(description, criteria, heartbeat_frequency, deprioritized)?;
    let window = in_latency_window(&suitable, local_threshold);
    Ok(choose(&window, rng, in_use).map(|s| s.address.clone()))
}

/// "Power of two choices": picks two distinct servers at random and returns the less busy
/// (either one on a tie); the only server when there is one.
pub fn choose<'a>(
    window: &[&'a ServerDescription],
    rng: &mut impl rand::Rng,
    in_use: impl Fn(&ServerAddress) -> usize,
) -> Option<&'a ServerDescription> {
    match window.len() {
        0 => None,
        1 => window.first().copied(),
        n => {
            let i = rng.random_range(0..n);
            let mut j = rng.random_range(0..n - 1);
            if j >= i {
                j += 1;
            }
            let (a, b) = (window.get(i)?, window.get(j)?);
            let (ca, cb) = (in_use(&a.address), in_use(&b.address));
            Some(match ca.cmp(&cb) {
                std::cmp::Ordering::Less => a,
                std::cmp::Ordering::Greater => b,
                std::cmp::Ordering::Equal => {
                    if rng.random_bool(0.5) {
                        a
                    } else {
                        b
                    }
                }
            })
        }
    }
}

impl crate::sdam::Topology {
    /// [`select`] over the current description, with the topology's `localThresholdMS` and
    /// `heartbeatFrequencyMS`.
    pub fn select_server(
        &self,
        criteria: &Criteria,
        deprioritized: &[ServerAddress],
        rng: &mut impl rand::Rng,
        in_use: impl Fn(&ServerAddress) -> usize,
    ) -> Result<Option<ServerAddress>, SelectionError> {
        let o = self.options();
        select(
            self.description(),
            criteria,
            o.local_threshold,
            o.heartbeat_frequency,
            deprioritized,
            rng,
            in_use,
        )
    }
}

/// Whether a read with `read_preference` (primary when `None`) could be served now (the SDAM
/// monitoring spec's `hasReadableServer`).
pub fn has_readable_server(
    description: &TopologyDescription,
    read_preference: Option<&ReadPreference>,
    heartbeat_frequency: Duration,
) -> bool {
    let rp = read_preference.cloned().unwrap_or_default();
    suitable_servers(description, &Criteria::Read(rp), heartbeat_frequency, &[])
        .is_ok_and(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn server(name: &str, t: ServerType, rtt_ms: u64) -> ServerDescription {
        let mut sd = ServerDescription::new(ServerAddress::tcp(name, 27017));
        sd.server_type = t;
        sd.round_trip_time = Some(Duration::from_millis(rtt_ms));
        sd.max_wire_version = Some(21);
        sd
    }

    fn topology(t: TopologyType, servers: Vec<ServerDescription>) -> TopologyDescription {
        let mut td = TopologyDescription {
            topology_type: t,
            ..Default::default()
        };
        for s in servers {
            td.servers.insert(s.address.clone(), s);
        }
        td
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(3)
    }

    const HB: Duration = Duration::from_secs(10);
    const LT: Duration = Duration::from_millis(15);

    #[test]
    fn invalid_read_preferences_are_errors() {
        let td = topology(
            TopologyType::ReplicaSetWithPrimary,
            vec![server("a", ServerType::RsPrimary, 1)],
        );
        let mut rp = ReadPreference::primary();
        rp.tag_sets
            .push(TagSet::from([("dc".to_string(), "ny".to_string())]));
        let r = select(&td, &Criteria::Read(rp), LT, HB, &[], &mut rng(), |_| 0);
        assert!(matches!(r, Err(SelectionError::InvalidReadPreference(_))));
        let mut rp = ReadPreference::with_mode(ReadPreferenceMode::Secondary);
        rp.max_staleness = Some(Duration::from_secs(15));
        assert!(select(
            &td,
            &Criteria::Read(rp.clone()),
            LT,
            HB,
            &[],
            &mut rng(),
            |_| 0
        )
        .is_err());
        // The floor is heartbeatFrequency + 10 s when that is above 90 s.
        rp.max_staleness = Some(Duration::from_secs(95));
        let hb = Duration::from_secs(90);
        assert!(select(&td, &Criteria::Read(rp), LT, hb, &[], &mut rng(), |_| 0).is_err());
        // Primary with an empty tag set is fine.
        let mut rp = ReadPreference::primary();
        rp.tag_sets.push(TagSet::new());
        let r = select(&td, &Criteria::Read(rp), LT, HB, &[], &mut rng(), |_| 0);
        assert_eq!(r, Ok(Some(ServerAddress::tcp("a", 27017))));
    }

    #[test]
    fn incompatible_topologies_fail() {
        let mut td = topology(
            TopologyType::Sharded,
            vec![server("a", ServerType::Mongos, 1)],
        );
        td.compatible = false;
        td.compatibility_error = Some("too old".into());
        let r = select(&td, &Criteria::Write, LT, HB, &[], &mut rng(), |_| 0);
        assert_eq!(r, Err(SelectionError::Incompatible("too old".into())));
        let e: Error = SelectionError::Incompatible("too old".into()).into();
        assert!(matches!(e.kind(), ErrorKind::IncompatibleServer { .. }));
    }

    #[test]
    fn nothing_suitable_is_none_not_an_error() {
        let td = topology(
            TopologyType::ReplicaSetNoPrimary,
            vec![server("a", ServerType::RsSecondary, 1)],
        );
        let r = select(&td, &Criteria::Write, LT, HB, &[], &mut rng(), |_| 0);
        assert_eq!(r, Ok(None));
        let td = topology(
            TopologyType::Unknown,
            vec![server("a", ServerType::Unknown, 1)],
        );
        let r = select(
            &td,
            &Criteria::Read(ReadPreference::primary()),
            LT,
            HB,
            &[],
            &mut rng(),
            |_| 0,
        );
        assert_eq!(r, Ok(None));
    }

    #[test]
    fn the_less_busy_of_two_always_wins() {
        let td = topology(
            TopologyType::Sharded,
            vec![
                server("a", ServerType::Mongos, 1),
                server("b", ServerType::Mongos, 2),
            ],
        );
        let busy_a = |a: &ServerAddress| if a.host() == "a" { 5 } else { 0 };
        let mut r = rng();
        for _ in 0..50 {
            let s = select(&td, &Criteria::Write, LT, HB, &[], &mut r, busy_a);
            assert_eq!(s, Ok(Some(ServerAddress::tcp("b", 27017))));
        }
    }

    #[test]
    fn latency_window_excludes_slow_servers() {
        let td = topology(
            TopologyType::Sharded,
            vec![
                server("a", ServerType::Mongos, 1),
                server("b", ServerType::Mongos, 17),
            ],
        );
        let mut r = rng();
        for _ in 0..50 {
            let s = select(&td, &Criteria::Write, LT, HB, &[], &mut r, |_| 0);
            assert_eq!(s, Ok(Some(ServerAddress::tcp("a", 27017))));
        }
    }

    #[test]
    fn unmeasured_servers_stay_in_the_window() {
        let mut c = server("c", ServerType::Mongos, 0);
        c.round_trip_time = None;
        let a = server("a", ServerType::Mongos, 1);
        let b = server("b", ServerType::Mongos, 40);
        let window = in_latency_window(&[&a, &b, &c], LT);
        let names: Vec<&str> = window.iter().map(|s| s.address.host()).collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn single_ignores_the_read_preference_and_predicates_filter() {
        let td = topology(
            TopologyType::Single,
            vec![server("a", ServerType::RsSecondary, 1)],
        );
        let r = select(&td, &Criteria::Write, LT, HB, &[], &mut rng(), |_| 0);
        assert_eq!(r, Ok(Some(ServerAddress::tcp("a", 27017))));
        let never = Criteria::Predicate(Arc::new(|_: &ServerDescription| false));
        assert_eq!(
            select(&td, &never, LT, HB, &[], &mut rng(), |_| 0),
            Ok(None)
        );
        assert!(format!("{never:?}").contains("Predicate"));
    }

    #[test]
    fn staleness_needs_last_write_dates() {
        let mut p = server("p", ServerType::RsPrimary, 1);
        let mut s = server("s", ServerType::RsSecondary, 1);
        let now = Instant::now();
        p.last_update_time = Some(now);
        s.last_update_time = Some(now);
        p.last_write_date = Some(bson::DateTime::from_millis(100_000));
        let td = topology(
            TopologyType::ReplicaSetWithPrimary,
            vec![p.clone(), s.clone()],
        );
        assert_eq!(staleness(&td, &s, HB), None);
        s.last_write_date = Some(bson::DateTime::from_millis(40_000));
        let td = topology(TopologyType::ReplicaSetWithPrimary, vec![p, s.clone()]);
        assert_eq!(staleness(&td, &s, HB), Some(Duration::from_secs(70)));
    }

    #[test]
    fn topology_select_server_uses_its_options() {
        use crate::sdam::{Topology, TopologyOptions};
        let now = Instant::now();
        let opts = TopologyOptions {
            hosts: vec![ServerAddress::tcp("a", 27017)],
            direct_connection: Some(true),
            ..Default::default()
        };
        let mut t = Topology::new(opts, now).expect("valid options");
        let a = ServerAddress::tcp("a", 27017);
        assert_eq!(
            t.select_server(&Criteria::Write, &[], &mut rng(), |_| 0),
            Ok(None)
        );
        let reply = bson::doc! {"ok": 1, "isWritablePrimary": true, "maxWireVersion": 21};
        t.handle_hello(&a, Ok(&reply), Some(Duration::from_millis(1)), now);
        assert_eq!(
            t.select_server(&Criteria::Write, &[], &mut rng(), |_| 0),
            Ok(Some(a))
        );
    }

    #[test]
    fn readable_and_writable() {
        let td = topology(
            TopologyType::ReplicaSetNoPrimary,
            vec![server("a", ServerType::RsSecondary, 1)],
        );
        assert!(!has_readable_server(&td, None, HB));
        let rp = ReadPreference::with_mode(ReadPreferenceMode::Secondary);
        assert!(has_readable_server(&td, Some(&rp), HB));
        assert!(!td.has_writable_server());
    }
}
