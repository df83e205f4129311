//! What an error means for the driver's decisions, in one place: the error labels, the server
//! codes each specification names, and the questions the executor, discovery (SDAM) and the
//! pool ask of an [`Error`] (is it a network error, a state change error, may a read be retried
//! after it).

use super::{Error, ErrorKind, WriteFailure};

/// Added by the server (4.4+) or the driver to an error after which a write may be retried
/// (retryable writes spec).
pub const RETRYABLE_WRITE_ERROR: &str = "RetryableWriteError";
/// The operation may be retried as part of retrying its whole transaction (transactions spec).
pub const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";
/// Whether a commit took effect is unknown; the commit may be retried (transactions spec).
pub const UNKNOWN_TRANSACTION_COMMIT_RESULT: &str = "UnknownTransactionCommitResult";
/// The server did not apply the write that failed (retryable writes spec: report the error of
/// the first attempt instead).
pub const NO_WRITES_PERFORMED: &str = "NoWritesPerformed";
/// The server, or the driver on its behalf, reports overload (client backpressure spec).
pub const SYSTEM_OVERLOADED_ERROR: &str = "SystemOverloadedError";
/// The operation may be retried under the client backpressure rules.
pub const RETRYABLE_ERROR: &str = "RetryableError";
/// A change stream may resume after this error (change streams spec).
pub const RESUMABLE_CHANGE_STREAM_ERROR: &str = "ResumableChangeStreamError";

/// "Node is recovering": InterruptedAtShutdown, InterruptedDueToReplStateChange,
/// NotPrimaryOrSecondary, PrimarySteppedDown, ShutdownInProgress (SDAM spec).
pub const RECOVERING_CODES: [i32; 5] = [11600, 11602, 13436, 189, 91];
/// "Not writable primary": NotWritablePrimary, NotPrimaryNoSecondaryOk, LegacyNotPrimary (SDAM
/// spec).
pub const NOT_WRITABLE_PRIMARY_CODES: [i32; 3] = [10107, 13435, 10058];
/// "Node is shutting down": InterruptedAtShutdown, ShutdownInProgress (SDAM spec).
pub const SHUTDOWN_CODES: [i32; 2] = [11600, 91];
/// Codes after which a read may be retried (retryable reads spec): InterruptedAtShutdown,
/// InterruptedDueToReplStateChange, NotWritablePrimary, NotPrimaryNoSecondaryOk,
/// NotPrimaryOrSecondary, PrimarySteppedDown, ShutdownInProgress, HostNotFound, HostUnreachable,
/// NetworkTimeout, SocketException, ExceededTimeLimit, ReadConcernMajorityNotAvailableYet.
pub const RETRYABLE_READ_CODES: [i32; 13] = [
    11600, 11602, 10107, 13435, 13436, 189, 91, 7, 6, 89, 9001, 262, 134,
];
/// Codes after which a write may be retried when the server is older than 4.4 and does not
/// label its errors itself (retryable writes spec): the read codes but
/// ReadConcernMajorityNotAvailableYet.
pub const RETRYABLE_WRITE_CODES: [i32; 12] = [
    11600, 11602, 10107, 13435, 13436, 189, 91, 7, 6, 89, 9001, 262,
];

/// NamespaceNotFound: what dropping a missing collection or counting one answers.
pub const NAMESPACE_NOT_FOUND: i32 = 26;

/// Whether `code` (or, only without a code, `message`) says "node is recovering".
pub fn is_recovering(code: Option<i32>, message: &str) -> bool {
    match code {
        Some(c) => RECOVERING_CODES.contains(&c),
        None => {
            message.contains("not master or secondary") || message.contains("node is recovering")
        }
    }
}

/// Whether `code` (or, only without a code, `message`) says "not writable primary".
pub fn is_not_writable_primary(code: Option<i32>, message: &str) -> bool {
    match code {
        Some(c) => NOT_WRITABLE_PRIMARY_CODES.contains(&c),
        None => !is_recovering(None, message) && message.contains("not master"),
    }
}

/// Whether `code` says "node is shutting down".
pub fn is_shutdown(code: Option<i32>) -> bool {
    code.is_some_and(|c| SHUTDOWN_CODES.contains(&c))
}

/// Whether `code`/`message` is a state change error ("not writable primary" or "node is
/// recovering").
pub fn is_state_change_error(code: Option<i32>, message: &str) -> bool {
    is_recovering(code, message) || is_not_writable_primary(code, message)
}

impl Error {
    /// Whether this is a network error: an I/O error on a connection (refused, reset, closed
    /// mid-reply, timed out), as opposed to a protocol, TLS, command or authentication error.
    pub fn is_network_error(&self) -> bool {
        matches!(self.kind(), ErrorKind::Io(_))
    }

    /// Whether the pool was cleared under the operation (CMAP's `PoolClearedError`).
    pub fn is_pool_cleared(&self) -> bool {
        matches!(self.kind(), ErrorKind::ConnectionPoolCleared { .. })
    }

    /// The command error's code and message, or a write concern error's (what SDAM looks at).
    fn server_code_and_message(&self) -> Option<(i32, &str)> {
        match self.kind() {
            ErrorKind::Command(c) => Some((c.code, c.message.as_str())),
            ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
                Some((w.code, w.message.as_str()))
            }
            _ => None,
        }
    }

    /// Whether this is a state change error ("not writable primary" or "node is recovering").
    pub fn is_state_change_error(&self) -> bool {
        self.server_code_and_message()
            .is_some_and(|(code, message)| is_state_change_error(Some(code), message))
    }

    /// Whether this is a "not writable primary" error.
    pub fn is_not_writable_primary(&self) -> bool {
        self.server_code_and_message()
            .is_some_and(|(code, message)| is_not_writable_primary(Some(code), message))
    }

    /// Whether this is a "node is recovering" error.
    pub fn is_recovering(&self) -> bool {
        self.server_code_and_message()
            .is_some_and(|(code, message)| is_recovering(Some(code), message))
    }

    /// Whether this is a "node is shutting down" error.
    pub fn is_shutting_down(&self) -> bool {
        self.server_code_and_message()
            .is_some_and(|(code, _)| is_shutdown(Some(code)))
    }

    /// Whether a read may be retried after this error (retryable reads spec): a network error,
    /// a cleared pool, or a command error with one of [`RETRYABLE_READ_CODES`].
    pub fn is_read_retryable(&self) -> bool {
        match self.kind() {
            ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => true,
            ErrorKind::Command(c) => RETRYABLE_READ_CODES.contains(&c.code),
            _ => false,
        }
    }

    /// Whether this is NamespaceNotFound (26): the collection, view or index does not exist.
    pub fn is_namespace_not_found(&self) -> bool {
        self.code() == Some(NAMESPACE_NOT_FOUND)
    }

    /// Whether the server reports overload and the operation may be retried under the client
    /// backpressure rules (both [`SYSTEM_OVERLOADED_ERROR`] and [`RETRYABLE_ERROR`]).
    pub fn is_overload_retryable(&self) -> bool {
        self.contains_label(SYSTEM_OVERLOADED_ERROR) && self.contains_label(RETRYABLE_ERROR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{CommandError, WriteConcernError};

    fn command(code: i32, message: &str) -> Error {
        Error::new(ErrorKind::Command(CommandError {
            code,
            code_name: String::new(),
            message: message.into(),
            topology_version: None,
        }))
    }

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
        assert!(!command(1, "not master").is_state_change_error());
    }

    #[test]
    fn errors_answer_for_themselves() {
        let io = Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(io.is_network_error() && io.is_read_retryable());
        assert!(!io.is_state_change_error());

        let not_primary = command(10107, "not primary");
        assert!(not_primary.is_not_writable_primary() && not_primary.is_state_change_error());
        assert!(not_primary.is_read_retryable() && !not_primary.is_network_error());
        assert!(!not_primary.is_recovering() && !not_primary.is_shutting_down());

        let shutdown = command(91, "shutting down");
        assert!(shutdown.is_recovering() && shutdown.is_shutting_down());

        // A write concern error is looked at by SDAM too, but a read is not retried on it.
        let wce = Error::new(ErrorKind::Write(WriteFailure::WriteConcernError(
            WriteConcernError {
                code: 11602,
                code_name: "InterruptedDueToReplStateChange".into(),
                message: "x".into(),
                details: None,
                labels: Vec::new(),
            },
        )));
        assert!(wce.is_state_change_error() && !wce.is_read_retryable());

        // Codes that are retryable for reads only (ReadConcernMajorityNotAvailableYet), and for
        // neither.
        assert!(command(134, "read concern majority not available").is_read_retryable());
        assert!(!RETRYABLE_WRITE_CODES.contains(&134));
        assert!(!command(2, "bad value").is_read_retryable());
        assert!(!Error::invalid_argument("x").is_read_retryable());

        let pool = Error::new(ErrorKind::ConnectionPoolCleared {
            message: "cleared".into(),
        });
        assert!(pool.is_pool_cleared() && pool.is_read_retryable());
        let overloaded = io.with_labels([SYSTEM_OVERLOADED_ERROR, RETRYABLE_ERROR]);
        assert!(overloaded.is_overload_retryable());
        assert!(!command(1, "x")
            .with_labels([SYSTEM_OVERLOADED_ERROR])
            .is_overload_retryable());
    }
}
