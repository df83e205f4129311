//! Write concern, as mongod checks it. A standalone refuses, before writing, a `w` it cannot
//! satisfy (BadValue: "cannot use 'w' > 1 when a host is not replicated"). A replica-set member
//! writes, then waits for the members the concern names, against the set's configuration
//! (`writeConcernError`): more members than the set has is UnsatisfiableWriteConcern (100), an
//! unknown mode UnknownReplWriteConcern (79), and a concern the members that are up cannot meet
//! within `wtimeout` WriteConcernFailed (64, `errInfo.wtimeout`). Without `wtimeout` it waits as
//! long as mongod would: until enough members are up (or the server is killed).
//!
//! Members share one store, so a member that is up has every write at once; a member that is
//! down (killed) has none. mongod's implicit default write concern is not simulated: a write
//! without `writeConcern` waits for nobody.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};

use crate::commands::{is_write, ConnState};
use crate::error::CommandError;
use crate::server::{lock, Shared};
use crate::store::as_f64;

/// The `w` of a write concern.
#[derive(Debug, Clone, PartialEq)]
enum W {
    Nodes(i64),
    Majority,
    Tag(String),
}

/// A write concern a write must wait for, on a replica-set member.
#[derive(Debug, Clone)]
pub(crate) struct WriteConcern {
    w: W,
    wtimeout: Option<Duration>,
    /// The concern as given, for `errInfo.writeConcern`.
    given: Document,
}

fn failed_to_parse(msg: impl Into<String>) -> CommandError {
    CommandError::new(9, "FailedToParse", msg)
}

impl WriteConcern {
    /// The write concern of command `name`: `Ok(None)` when there is nothing to wait for, an
    /// error when it is malformed or (on a standalone) unsatisfiable.
    pub(crate) fn of(
        shared: &Shared,
        name: &str,
        cmd: &Document,
    ) -> Result<Option<WriteConcern>, CommandError> {
        let given = match cmd.get("writeConcern") {
            None | Some(Bson::Null) => return Ok(None),
            Some(Bson::Document(d)) => d,
            Some(_) => {
                return Err(CommandError::type_mismatch(
                    "BSON field 'writeConcern' is the wrong type, expected type 'object'",
                ))
            }
        };
        if !is_write(name) {
            return Ok(None);
        }
        let w = match given.get("w") {
            None => W::Nodes(1),
            Some(Bson::String(s)) if s == "majority" => W::Majority,
            Some(Bson::String(s)) => W::Tag(s.clone()),
            Some(v @ (Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => {
                let n = as_f64(v).unwrap_or(-1.0);
                if !(0.0..=50.0).contains(&n) {
                    return Err(failed_to_parse(format!(
                        "w has to be a non-negative number and not greater than 50; found: {v}"
                    )));
                }
                W::Nodes(n as i64)
            }
            Some(other) => {
                return Err(failed_to_parse(format!(
                    "w has to be a number or a string; found: {other}"
                )))
            }
        };
        let wtimeout = match given.get("wtimeout").and_then(as_f64) {
            Some(ms) if ms > 0.0 => Some(Duration::from_millis(ms.min(86_400_000.0) as u64)),
            _ => None,
        };
        if shared.rs.is_none() {
            // mongod's validateWriteConcern on a node that does not replicate.
            return match &w {
                W::Nodes(n) if *n > 1 => Err(CommandError::bad_value(
                    "cannot use 'w' > 1 when a host is not replicated",
                )),
                W::Tag(t) => Err(CommandError::bad_value(format!(
                    "cannot use non-majority 'w' mode {t} when a host is not a member of a \
                     replica set"
                ))),
                _ => Ok(None),
            };
        }
        if w == W::Nodes(0) || w == W::Nodes(1) {
            return Ok(None);
        }
        Ok(Some(WriteConcern {
            w,
            wtimeout,
            given: given.clone(),
        }))
    }

    fn err_info_concern(&self) -> Document {
        let mut d = self.given.clone();
        if !d.contains_key("wtimeout") {
            d.insert("wtimeout", 0);
        }
        d.insert("provenance", "clientSupplied");
        d
    }

    /// Waits for the concern after a write; the `writeConcernError` when it is not met.
    pub(crate) fn wait(&self, shared: &Shared, st: &ConnState) -> Option<Document> {
        let Some((rs, _)) = &shared.rs else {
            return None;
        };
        let members = lock(rs).hosts.len();
        let needed = match &self.w {
            W::Nodes(n) => usize::try_from(*n).unwrap_or(usize::MAX),
            W::Majority => members / 2 + 1,
            W::Tag(t) => {
                return Some(doc! {
                    "code": 79,
                    "codeName": "UnknownReplWriteConcern",
                    "errmsg": format!("No write concern mode named '{t}' found in replica set configuration"),
                    "errInfo": { "writeConcern": self.err_info_concern() },
                })
            }
        };
        if needed > members {
            return Some(doc! {
                "code": 100,
                "codeName": "UnsatisfiableWriteConcern",
                "errmsg": "Not enough data-bearing nodes",
                "errInfo": { "writeConcern": self.err_info_concern() },
            });
        }
        let deadline = self.wtimeout.map(|t| Instant::now() + t);
        loop {
            if lock(rs).members_up() >= needed {
                return None;
            }
            if shared.epoch.load(Ordering::SeqCst) != st.epoch {
                // Killed while waiting: the connection closes without a reply that matters.
                return None;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Some(doc! {
                    "code": 64,
                    "codeName": "WriteConcernFailed",
                    "errmsg": "waiting for replication timed out",
                    "errInfo": { "wtimeout": true, "writeConcern": self.err_info_concern() },
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
