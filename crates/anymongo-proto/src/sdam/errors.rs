//! Classifying errors for SDAM: "not writable primary", "node is recovering", shutdown.

use bson::{Bson, Document};

use super::description::{bson_as_i64, TopologyVersion};

/// "Node is recovering" codes: InterruptedAtShutdown, InterruptedDueToReplStateChange,
/// NotPrimaryOrSecondary, PrimarySteppedDown, ShutdownInProgress.
pub const RECOVERING_CODES: [i32; 5] = [11600, 11602, 13436, 189, 91];
/// "Not writable primary" codes: NotWritablePrimary, NotPrimaryNoSecondaryOk, LegacyNotPrimary.
pub const NOT_WRITABLE_PRIMARY_CODES: [i32; 3] = [10107, 13435, 10058];
/// "Node is shutting down" codes: InterruptedAtShutdown, ShutdownInProgress.
pub const SHUTDOWN_CODES: [i32; 2] = [11600, 91];

/// Whether the error is a "node is recovering" error. The code decides when there is one; only
/// without a code is the message searched.
pub fn is_recovering(code: Option<i32>, message: &str) -> bool {
    match code {
        Some(c) => RECOVERING_CODES.contains(&c),
        None => {
            message.contains("not master or secondary") || message.contains("node is recovering")
        }
    }
}

/// Whether the error is a "not writable primary" error (code first, message only without a code).
pub fn is_not_writable_primary(code: Option<i32>, message: &str) -> bool {
    match code {
        Some(c) => NOT_WRITABLE_PRIMARY_CODES.contains(&c),
        None => !is_recovering(None, message) && message.contains("not master"),
    }
}

/// Whether the error is a "node is shutting down" error.
pub fn is_shutdown(code: Option<i32>) -> bool {
    code.is_some_and(|c| SHUTDOWN_CODES.contains(&c))
}

/// Whether the error is a state change error ("not writable primary" or "node is recovering").
pub fn is_state_change_error(code: Option<i32>, message: &str) -> bool {
    is_recovering(code, message) || is_not_writable_primary(code, message)
}

/// The SDAM-relevant part of a command error: its code, message and topologyVersion.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandErrorInfo {
    pub code: Option<i32>,
    pub message: String,
    pub topology_version: Option<TopologyVersion>,
}

impl CommandErrorInfo {
    /// Extracts the error SDAM must look at from a command response: the top-level error of an
    /// `ok: 0` reply, else a `writeConcernError`. `writeErrors` are never considered. `None` when
    /// the reply carries neither.
    pub fn from_response(response: &Document) -> Option<Self> {
        let topology_version = response
            .get_document("topologyVersion")
            .ok()
            .and_then(TopologyVersion::from_document);
        let ok = match response.get("ok") {
            Some(b) => bson_as_i64(b).map(|v| v != 0).unwrap_or_else(|| {
                matches!(b, Bson::Boolean(true)) || matches!(b, Bson::Double(d) if *d != 0.0)
            }),
            None => false,
        };
        let from = |doc: &Document, tv: Option<TopologyVersion>| CommandErrorInfo {
            code: doc
                .get("code")
                .and_then(bson_as_i64)
                .and_then(|c| i32::try_from(c).ok()),
            message: doc
                .get_str("errmsg")
                .or_else(|_| doc.get_str("$err"))
                .unwrap_or("")
                .to_string(),
            topology_version: tv,
        };
        if !ok {
            return Some(from(response, topology_version));
        }
        let wce = response.get_document("writeConcernError").ok()?;
        Some(from(wce, topology_version))
    }

    /// Whether this is a state change error.
    pub fn is_state_change(&self) -> bool {
        is_state_change_error(self.code, &self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn code_wins_over_message() {
        // A code that is not a state change code, with a message that would match.
        assert!(!is_state_change_error(Some(1), "not master"));
        assert!(is_state_change_error(None, "not master"));
        assert!(is_recovering(None, "node is recovering"));
        assert!(!is_not_writable_primary(None, "not master or secondary"));
        assert!(is_recovering(None, "not master or secondary"));
        assert!(is_shutdown(Some(91)));
        assert!(!is_shutdown(Some(189)));
    }

    #[test]
    fn response_extraction() {
        let r = doc! {"ok": 0, "errmsg": "x", "code": 10107};
        assert_eq!(
            CommandErrorInfo::from_response(&r).and_then(|e| e.code),
            Some(10107)
        );
        let r = doc! {"ok": 1, "writeConcernError": {"code": 91, "errmsg": "shutdown"}};
        let e = CommandErrorInfo::from_response(&r);
        assert_eq!(e.as_ref().and_then(|e| e.code), Some(91));
        let r =
            doc! {"ok": 1, "writeErrors": [{"code": 10107, "errmsg": "not master", "index": 0}]};
        assert!(CommandErrorInfo::from_response(&r).is_none());
        let r = doc! {"ok": 1.0};
        assert!(CommandErrorInfo::from_response(&r).is_none());
    }
}
