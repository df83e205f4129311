//! Fault injection scoped like MongoDB fail points, and the `configureFailPoint` command mapping.

use std::time::Duration;

use bson::{Bson, Document};

use crate::error::{code_name, CommandError};

/// How many times a fail point fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// The next `k` matching commands, then it turns itself off.
    N(u32),
    /// Every matching command until cleared.
    AlwaysOn,
    /// Let `k` matching commands through, then fire on every later one.
    Skip(u32),
}

/// What a fail point does to a matching command.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Nothing besides the fail point's `block` (the command then runs normally).
    None,
    /// Close the socket instead of replying.
    CloseBeforeReply,
    /// Write the first half of the reply's bytes, then close the socket.
    CloseAfterHalf,
    /// Reply normally after this delay.
    Delay(Duration),
    /// Reply with bytes that are no valid message (an unknown opcode and junk).
    Garbage,
    /// Reply with a header whose length exceeds `maxMessageSizeBytes` (and nothing else).
    OversizedHeader,
    /// Reply `{ok: 0, code, codeName, errmsg, errorLabels}` without running the command.
    /// `labels: None` lets the server add `RetryableWriteError` to retryable writes, as mongod
    /// 4.4+ does; `Some(..)` (even empty) is sent as given.
    Error {
        code: i32,
        code_name: String,
        errmsg: String,
        labels: Option<Vec<String>>,
    },
    /// Run the command, then add `writeConcernError: {code, codeName, errmsg}` to its reply.
    WriteConcernError {
        code: i32,
        code_name: String,
        errmsg: String,
        labels: Option<Vec<String>>,
    },
}

impl FaultAction {
    /// An `Error` with the code's conventional name and a generic message.
    pub fn error(code: i32) -> Self {
        FaultAction::Error {
            code,
            code_name: code_name(code).to_string(),
            errmsg: format!("Failing command via 'failCommand' failpoint ({code})"),
            labels: None,
        }
    }

    /// A `WriteConcernError` with the code's conventional name.
    pub fn write_concern_error(code: i32) -> Self {
        FaultAction::WriteConcernError {
            code,
            code_name: code_name(code).to_string(),
            errmsg: format!("write concern error ({code}) via failpoint"),
            labels: None,
        }
    }

    /// Sets explicit `errorLabels` on an `Error` / `WriteConcernError` action.
    pub fn with_labels(mut self, new: &[&str]) -> Self {
        if let FaultAction::Error { labels, .. } | FaultAction::WriteConcernError { labels, .. } =
            &mut self
        {
            *labels = Some(new.iter().map(|s| s.to_string()).collect());
        }
        self
    }
}

/// A fail point: which commands, how often, and what happens.
#[derive(Clone, Debug, PartialEq)]
pub struct FailPoint {
    /// How many times it fires.
    pub times: Times,
    /// Command names it applies to (`hello` and `isMaster` included when listed).
    pub commands: Vec<String>,
    /// What it does.
    pub action: FaultAction,
    /// Block the connection this long before acting (`blockConnection` / `blockTimeMS`).
    pub block: Option<Duration>,
    /// Only commands from connections whose handshake named this `appName`.
    pub app_name: Option<String>,
}

impl FailPoint {
    /// A fail point firing `times` on `commands`.
    pub fn new<I, S>(times: Times, commands: I, action: FaultAction) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        FailPoint {
            times,
            commands: commands.into_iter().map(Into::into).collect(),
            action,
            block: None,
            app_name: None,
        }
    }

    /// Parses a `configureFailPoint: "failCommand"` command. `Ok(None)` means mode `"off"`.
    pub fn from_configure_command(cmd: &Document) -> Result<Option<FailPoint>, CommandError> {
        match cmd.get("configureFailPoint") {
            Some(Bson::String(s)) if s == "failCommand" => {}
            // mongod: setGlobalFailPoint of a name it does not know (here: any but failCommand).
            Some(Bson::String(s)) => {
                return Err(CommandError::new(
                    266,
                    "FailPointSetFailed",
                    format!("{s} not found"),
                ))
            }
            _ => return Err(CommandError::bad_value("configureFailPoint needs a name")),
        }
        let times = match cmd.get("mode") {
            Some(Bson::String(m)) if m == "off" => return Ok(None),
            Some(Bson::String(m)) if m == "alwaysOn" => Times::AlwaysOn,
            Some(Bson::Document(d)) => match (d.get("times"), d.get("skip")) {
                (Some(t), None) => Times::N(count(t)?),
                (None, Some(s)) => Times::Skip(count(s)?),
                _ => {
                    return Err(CommandError::bad_value(
                        "mode must be {times: n} or {skip: n}",
                    ))
                }
            },
            _ => return Err(CommandError::bad_value("missing or unsupported mode")),
        };
        let data = match cmd.get("data") {
            Some(Bson::Document(d)) => d.clone(),
            _ => Document::new(),
        };
        let mut commands = Vec::new();
        if let Some(Bson::Array(a)) = data.get("failCommands") {
            for c in a {
                match c {
                    Bson::String(s) => commands.push(s.clone()),
                    _ => return Err(CommandError::bad_value("failCommands must be strings")),
                }
            }
        } else {
            return Err(CommandError::bad_value("data.failCommands is required"));
        }
        let labels = match data.get("errorLabels") {
            Some(Bson::Array(a)) => Some(
                a.iter()
                    .filter_map(|l| l.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => None,
        };
        let action = if data.get_bool("closeConnection").unwrap_or(false) {
            FaultAction::CloseBeforeReply
        } else if let Some(code) = data.get("errorCode") {
            let code = count(code)? as i32;
            FaultAction::Error {
                code,
                code_name: code_name(code).to_string(),
                errmsg: "Failing command via 'failCommand' failpoint".to_string(),
                labels,
            }
        } else if let Some(Bson::Document(wce)) = data.get("writeConcernError") {
            let code = wce.get("code").map(count).transpose()?.unwrap_or(64) as i32;
            FaultAction::WriteConcernError {
                code,
                code_name: wce
                    .get_str("codeName")
                    .map(str::to_string)
                    .unwrap_or_else(|_| code_name(code).to_string()),
                errmsg: wce
                    .get_str("errmsg")
                    .map(str::to_string)
                    .unwrap_or_else(|_| "write concern error via failpoint".to_string()),
                labels,
            }
        } else {
            FaultAction::None
        };
        let block = if data.get_bool("blockConnection").unwrap_or(false) {
            let ms = data.get("blockTimeMS").map(count).transpose()?.unwrap_or(0);
            Some(Duration::from_millis(u64::from(ms)))
        } else {
            None
        };
        Ok(Some(FailPoint {
            times,
            commands,
            action,
            block,
            app_name: data.get_str("appName").ok().map(str::to_string),
        }))
    }
}

fn count(v: &Bson) -> Result<u32, CommandError> {
    match v {
        Bson::Int32(i) if *i >= 0 => Ok(*i as u32),
        Bson::Int64(i) if *i >= 0 && *i <= i64::from(u32::MAX) => Ok(*i as u32),
        Bson::Double(f) if *f >= 0.0 && *f <= f64::from(u32::MAX) => Ok(*f as u32),
        _ => Err(CommandError::bad_value("expected a non-negative number")),
    }
}

/// A fail point installed on a server, with its remaining count.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFailPoint {
    pub(crate) fp: FailPoint,
    /// Installed through `configureFailPoint` (replaced by the next such command).
    pub(crate) from_command: bool,
    remaining: u32,
}

impl ActiveFailPoint {
    pub(crate) fn new(fp: FailPoint, from_command: bool) -> Self {
        let remaining = match fp.times {
            // mongod's `{times: 0}` still fires once (FailPoint's nTimes mode disables itself
            // only after a firing brings its count to 0 or below).
            Times::N(0) if from_command => 1,
            Times::N(k) | Times::Skip(k) => k,
            Times::AlwaysOn => 0,
        };
        ActiveFailPoint {
            fp,
            from_command,
            remaining,
        }
    }
}

/// Finds the first fail point matching the command, consumes one firing, and returns it with
/// whether it was installed by `configureFailPoint` (mongod counts those firings: the `count` of
/// its next `configureFailPoint` reply). Exhausted `Times::N` points are removed.
pub(crate) fn trigger(
    points: &mut Vec<ActiveFailPoint>,
    command: &str,
    app_name: Option<&str>,
) -> Option<(FailPoint, bool)> {
    let idx = points.iter().position(|p| {
        p.fp.commands.iter().any(|c| c == command)
            && p.fp
                .app_name
                .as_deref()
                .is_none_or(|want| Some(want) == app_name)
    })?;
    let p = points.get_mut(idx)?;
    let from_command = p.from_command;
    match p.fp.times {
        Times::AlwaysOn => Some((p.fp.clone(), from_command)),
        Times::Skip(_) => {
            if p.remaining > 0 {
                p.remaining -= 1;
                None
            } else {
                Some((p.fp.clone(), from_command))
            }
        }
        Times::N(_) => {
            if p.remaining == 0 {
                points.remove(idx);
                return None;
            }
            p.remaining -= 1;
            let fp = p.fp.clone();
            if p.remaining == 0 {
                points.remove(idx);
            }
            Some((fp, from_command))
        }
    }
}

/// Codes after which mongod 4.4+ labels a retryable write `RetryableWriteError`.
pub(crate) fn is_retryable_write_code(code: i32) -> bool {
    matches!(
        code,
        6 | 7 | 89 | 91 | 189 | 262 | 9001 | 10107 | 11600 | 11602 | 13435 | 13436
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn configure_command_maps_to_fail_points() {
        let fp = FailPoint::from_configure_command(&doc! {
            "configureFailPoint": "failCommand", "mode": { "times": 2 },
            "data": { "failCommands": ["insert", "find"], "errorCode": 91, "appName": "a" }
        })
        .unwrap()
        .unwrap();
        assert_eq!(fp.times, Times::N(2));
        assert_eq!(fp.commands, vec!["insert", "find"]);
        assert!(
            matches!(fp.action, FaultAction::Error { code: 91, ref code_name, labels: None, .. } if code_name == "ShutdownInProgress")
        );
        assert_eq!(fp.app_name.as_deref(), Some("a"));

        let fp = FailPoint::from_configure_command(&doc! {
            "configureFailPoint": "failCommand", "mode": "alwaysOn",
            "data": { "failCommands": ["ping"], "blockConnection": true, "blockTimeMS": 30, "closeConnection": true }
        })
        .unwrap()
        .unwrap();
        assert_eq!(fp.action, FaultAction::CloseBeforeReply);
        assert_eq!(fp.block, Some(Duration::from_millis(30)));

        let fp = FailPoint::from_configure_command(&doc! {
            "configureFailPoint": "failCommand", "mode": { "skip": 1 },
            "data": { "failCommands": ["insert"], "writeConcernError": { "code": 100, "errmsg": "x" }, "errorLabels": [] }
        })
        .unwrap()
        .unwrap();
        assert_eq!(fp.times, Times::Skip(1));
        assert!(
            matches!(fp.action, FaultAction::WriteConcernError { code: 100, labels: Some(ref l), .. } if l.is_empty())
        );

        assert!(FailPoint::from_configure_command(
            &doc! { "configureFailPoint": "failCommand", "mode": "off" }
        )
        .unwrap()
        .is_none());
        assert_eq!(
            FailPoint::from_configure_command(
                &doc! { "configureFailPoint": "other", "mode": "off" }
            )
            .unwrap_err()
            .code,
            266
        );
        assert_eq!(FailPoint::from_configure_command(&doc! { "configureFailPoint": "failCommand", "mode": { "times": -1 }, "data": { "failCommands": [] } }).unwrap_err().code, 2);
    }

    #[test]
    fn trigger_counts_down() {
        let mut pts = vec![ActiveFailPoint::new(
            FailPoint::new(Times::N(2), ["find"], FaultAction::Garbage),
            false,
        )];
        assert!(trigger(&mut pts, "insert", None).is_none());
        assert!(trigger(&mut pts, "find", None).is_some());
        assert!(trigger(&mut pts, "find", None).is_some());
        assert!(pts.is_empty());
        assert!(trigger(&mut pts, "find", None).is_none());

        let mut pts = vec![ActiveFailPoint::new(
            FailPoint::new(Times::Skip(1), ["find"], FaultAction::Garbage),
            false,
        )];
        assert!(trigger(&mut pts, "find", None).is_none());
        assert!(trigger(&mut pts, "find", None).is_some());
        assert!(trigger(&mut pts, "find", None).is_some());

        let mut fp = FailPoint::new(Times::AlwaysOn, ["find"], FaultAction::Garbage);
        fp.app_name = Some("app".into());
        let mut pts = vec![ActiveFailPoint::new(fp, false)];
        assert!(trigger(&mut pts, "find", Some("other")).is_none());
        assert!(trigger(&mut pts, "find", Some("app")).is_some());
    }
}
