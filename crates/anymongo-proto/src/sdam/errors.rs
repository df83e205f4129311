//! The part of an error SDAM looks at ([`CommandErrorInfo`]); the codes and their meaning are
//! [`crate::error`]'s, re-exported here.

use bson::{Bson, Document};

use super::description::{bson_as_i64, TopologyVersion};

pub use crate::error::{
    is_not_writable_primary, is_recovering, is_shutdown, is_state_change_error,
    NOT_WRITABLE_PRIMARY_CODES, RECOVERING_CODES, SHUTDOWN_CODES,
};

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
