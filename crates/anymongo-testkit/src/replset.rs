//! Replica-set simulation: N fake servers on N ports whose hello replies describe one set.
//! Members share one store (replication is instantaneous); writes on a secondary fail with
//! NotWritablePrimary (10107).

use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, Weak};

use std::sync::atomic::{AtomicU32, Ordering};

use bson::{doc, oid::ObjectId, DateTime, Document, Timestamp};

use crate::server::{lock, FakeServer, FakeServerBuilder, Shared};
use crate::store::Store;

/// A cluster time: now in seconds, with an increment that grows on every call.
pub(crate) fn cluster_time() -> Timestamp {
    static INCREMENT: AtomicU32 = AtomicU32::new(1);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Timestamp {
        time: u32::try_from(secs).unwrap_or(u32::MAX),
        increment: INCREMENT.fetch_add(1, Ordering::Relaxed),
    }
}

/// The set's shared view.
pub(crate) struct RsState {
    pub(crate) name: String,
    pub(crate) hosts: Vec<String>,
    pub(crate) primary: Option<usize>,
    set_version: i32,
    /// The election term; `electionId` is `7fffffff` followed by it.
    term: u32,
    tags: Vec<Document>,
    /// Which members are up (listening): those count toward a write concern.
    up: Vec<bool>,
    /// Each member's server state, to wake its awaitable hellos when the set changes.
    members: Vec<Weak<Shared>>,
}

impl std::fmt::Debug for RsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsState")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("primary", &self.primary)
            .finish_non_exhaustive()
    }
}

impl RsState {
    /// A set whose member 0 is primary.
    pub(crate) fn new(name: &str, hosts: Vec<String>) -> Self {
        RsState {
            name: name.to_string(),
            tags: vec![Document::new(); hosts.len()],
            up: vec![true; hosts.len()],
            members: Vec::new(),
            hosts,
            primary: Some(0),
            set_version: 1,
            term: 1,
        }
    }

    /// Records member `idx`'s server state.
    pub(crate) fn register(&mut self, idx: usize, shared: Weak<Shared>) {
        if self.members.len() <= idx {
            self.members.resize_with(idx + 1, Weak::new);
        }
        if let Some(m) = self.members.get_mut(idx) {
            *m = shared;
        }
    }

    /// Bumps every member's `topologyVersion` (a state change their clients should see).
    pub(crate) fn changed(&self) {
        for m in self.members.iter().filter_map(Weak::upgrade) {
            m.bump_topology();
        }
    }

    /// mongod's `replSetStepDown` on member `idx`: it steps down (NotWritablePrimary, 10107, "not
    /// primary so can't step down" when it is not primary) and the set elects the next member
    /// that is up, at once (a real election takes about electionTimeoutMillis).
    pub(crate) fn step_down_command(
        &mut self,
        idx: usize,
    ) -> Result<(), crate::error::CommandError> {
        if self.primary != Some(idx) {
            return Err(crate::error::CommandError::new(
                10107,
                "NotWritablePrimary",
                "not primary so can't step down",
            ));
        }
        let n = self.hosts.len();
        let next = (1..n)
            .map(|k| (idx + k) % n)
            .find(|m| self.up.get(*m).copied().unwrap_or(false));
        self.primary = next;
        if next.is_some() {
            self.term += 1;
        }
        self.changed();
        Ok(())
    }

    /// Marks member `idx` up or down.
    pub(crate) fn set_up(&mut self, idx: usize, up: bool) {
        if let Some(u) = self.up.get_mut(idx) {
            *u = up;
        }
    }

    /// How many members are up (all members bear data: a write reaches each that is up).
    pub(crate) fn members_up(&self) -> usize {
        self.up.iter().filter(|u| **u).count()
    }

    fn election_id(&self) -> ObjectId {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&0x7fff_ffff_u32.to_be_bytes());
        b[8..].copy_from_slice(&self.term.to_be_bytes());
        ObjectId::from_bytes(b)
    }

    /// The replica-set fields of member `idx`'s hello reply.
    pub(crate) fn hello_fields(&self, idx: usize) -> Document {
        let is_primary = self.primary == Some(idx);
        let mut d = doc! {
            "hosts": self.hosts.clone(),
            "setName": self.name.clone(),
            "setVersion": self.set_version,
            "secondary": !is_primary,
        };
        if let Some(p) = self.primary.and_then(|p| self.hosts.get(p)) {
            d.insert("primary", p.clone());
        }
        if let Some(me) = self.hosts.get(idx) {
            d.insert("me", me.clone());
        }
        if is_primary {
            d.insert("electionId", self.election_id());
        }
        if let Some(tags) = self.tags.get(idx).filter(|t| !t.is_empty()) {
            d.insert("tags", tags.clone());
        }
        let now = DateTime::now();
        d.insert(
            "lastWrite",
            doc! { "lastWriteDate": now, "majorityWriteDate": now },
        );
        d
    }
}

/// A running simulated replica set. Member 0 starts as primary.
#[derive(Debug)]
pub struct ReplicaSet {
    state: Arc<Mutex<RsState>>,
    members: Vec<FakeServer>,
}

impl ReplicaSet {
    /// Starts `n` members of set `set_name`, panicking if ports cannot be bound (tests only).
    pub fn start(n: usize, set_name: &str) -> ReplicaSet {
        match Self::try_start_with(n, set_name, |_, b| b) {
            Ok(rs) => rs,
            Err(e) => panic!("anymongo-testkit: cannot start the replica set: {e}"),
        }
    }

    /// Starts `n` members, member `i` built from `configure(i, FakeServer::builder())` (for
    /// users, TLS, compressors, wire version, hello fields, ...).
    pub fn try_start_with(
        n: usize,
        set_name: &str,
        configure: impl Fn(usize, FakeServerBuilder) -> FakeServerBuilder,
    ) -> io::Result<ReplicaSet> {
        Self::try_start_named(n, set_name, "127.0.0.1", configure)
    }

    /// Like [`ReplicaSet::try_start_with`], the members naming each other `host:<port>` in their
    /// hello replies (`hosts`, `me`, `primary`) instead of `127.0.0.1:<port>`: e.g. `localhost`,
    /// or any name the client resolves to 127.0.0.1.
    pub fn try_start_named(
        n: usize,
        set_name: &str,
        host: &str,
        configure: impl Fn(usize, FakeServerBuilder) -> FakeServerBuilder,
    ) -> io::Result<ReplicaSet> {
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a replica set needs at least one member",
            ));
        }
        let listeners = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<io::Result<Vec<_>>>()?;
        let hosts = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| format!("{host}:{}", a.port())))
            .collect::<io::Result<Vec<_>>>()?;
        let state = Arc::new(Mutex::new(RsState::new(set_name, hosts)));
        let store = Arc::new(Mutex::new(Store::default()));
        let mut members = Vec::with_capacity(n);
        for (i, l) in listeners.into_iter().enumerate() {
            let mut b = configure(i, FakeServer::builder());
            b.rs = Some((state.clone(), i));
            b.store = Some(store.clone());
            b.listener = Some(l);
            members.push(b.try_start()?);
        }
        Ok(ReplicaSet { state, members })
    }

    /// The members, by index.
    pub fn members(&self) -> &[FakeServer] {
        &self.members
    }

    /// Member `i`.
    pub fn member(&self, i: usize) -> Option<&FakeServer> {
        self.members.get(i)
    }

    /// The set name.
    pub fn name(&self) -> String {
        lock(&self.state).name.clone()
    }

    /// `host:port` of every member, by index.
    pub fn hosts(&self) -> Vec<String> {
        lock(&self.state).hosts.clone()
    }

    /// The primary's index, if there is one.
    pub fn primary(&self) -> Option<usize> {
        lock(&self.state).primary
    }

    /// The current `electionId`.
    pub fn election_id(&self) -> ObjectId {
        lock(&self.state).election_id()
    }

    /// `mongodb://h1,h2,.../?replicaSet=<name>` (with TLS parameters when serving TLS).
    pub fn uri(&self) -> String {
        let st = lock(&self.state);
        let mut uri = format!("mongodb://{}/?replicaSet={}", st.hosts.join(","), st.name);
        if let Some(tls) = self.members.first().and_then(|m| m.tls_identity()) {
            uri.push_str(&format!("&tls=true&tlsCAFile={}", tls.ca_path.display()));
        }
        uri
    }

    fn changed(&self) {
        for m in &self.members {
            m.shared.bump_topology();
        }
    }

    /// The primary steps down: no member is primary until [`ReplicaSet::elect`].
    pub fn step_down(&self) {
        lock(&self.state).primary = None;
        self.changed();
    }

    /// Makes `member` primary with a new election term. Out-of-range indexes are ignored.
    pub fn elect(&self, member: usize) {
        {
            let mut st = lock(&self.state);
            if member >= st.hosts.len() {
                return;
            }
            st.primary = Some(member);
            st.term += 1;
        }
        self.changed();
    }

    /// Sets member `member`'s `tags` (a reconfig: bumps `setVersion`).
    pub fn set_tags(&self, member: usize, tags: Document) {
        {
            let mut st = lock(&self.state);
            match st.tags.get_mut(member) {
                Some(t) => *t = tags,
                None => return,
            }
            st.set_version += 1;
        }
        self.changed();
    }

    /// Bumps `setVersion` (a reconfig).
    pub fn reconfig(&self) {
        lock(&self.state).set_version += 1;
        self.changed();
    }

    /// Stops `member` listening and closes its connections (the set's view is unchanged).
    pub fn kill(&self, member: usize) {
        if let Some(m) = self.members.get(member) {
            m.kill();
        }
    }

    /// Starts `member` listening again on its port, as a restarted process.
    pub fn revive(&self, member: usize) -> io::Result<()> {
        match self.members.get(member) {
            Some(m) => m.revive(),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no such member",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_fields_follow_the_state() {
        let mut st = RsState::new("rs", vec!["a:1".into(), "b:2".into()]);
        let p = st.hello_fields(0);
        assert_eq!(p.get_str("primary").unwrap(), "a:1");
        assert_eq!(p.get_str("me").unwrap(), "a:1");
        assert!(!p.get_bool("secondary").unwrap());
        let e1 = p.get_object_id("electionId").unwrap();
        let s = st.hello_fields(1);
        assert!(s.get_bool("secondary").unwrap());
        assert!(s.get("electionId").is_none());
        st.primary = None;
        assert!(st.hello_fields(0).get("primary").is_none());
        st.primary = Some(1);
        st.term += 1;
        let e2 = st.hello_fields(1).get_object_id("electionId").unwrap();
        assert!(e2.bytes() > e1.bytes());
        st.tags[1] = doc! { "dc": "x" };
        assert_eq!(
            st.hello_fields(1).get_document("tags").unwrap(),
            &doc! { "dc": "x" }
        );
        assert!(st.hello_fields(0).get("tags").is_none());
    }
}
