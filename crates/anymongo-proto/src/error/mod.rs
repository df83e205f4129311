//! The driver's one error type.
//!
//! Every fallible public function returns [`Result`]. An [`Error`] has a [`ErrorKind`] saying what
//! went wrong and the server's error labels. `Display` is meant for people and never contains
//! credentials.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use bson::Document;

mod classify;

pub use classify::{
    is_not_writable_primary, is_recovering, is_shutdown, is_state_change_error,
    NOT_WRITABLE_PRIMARY_CODES, NO_WRITES_PERFORMED, RECOVERING_CODES,
    RESUMABLE_CHANGE_STREAM_ERROR, RETRYABLE_ERROR, RETRYABLE_READ_CODES, RETRYABLE_WRITE_CODES,
    RETRYABLE_WRITE_ERROR, SHUTDOWN_CODES, SYSTEM_OVERLOADED_ERROR, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
};

/// `Result<T, anymongo_proto::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from the driver or from the server.
#[derive(Clone, Debug)]
pub struct Error {
    kind: Box<ErrorKind>,
    labels: BTreeSet<String>,
}

/// What went wrong.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument, option or connection string was invalid.
    InvalidArgument { message: String },
    /// An I/O error on a connection (refused, reset, closed mid-reply, ...).
    Io(Arc<std::io::Error>),
    /// The server sent bytes that are not a valid reply (bad header, bad checksum, bad BSON, ...).
    InvalidResponse { message: String },
    /// A command failed on the server (`ok: 0`).
    Command(CommandError),
    /// A single write failed (`writeErrors` of a one-document write).
    Write(WriteFailure),
    /// One or more writes of a bulk or multi-document write failed.
    BulkWrite(BulkWriteFailure),
    /// Authentication failed.
    Authentication { message: String },
    /// No suitable server was found within `serverSelectionTimeoutMS`.
    ServerSelection { message: String },
    /// A deadline passed (connect, check-out wait queue, operation).
    Timeout { message: String },
    /// The connection pool was cleared while the operation was waiting for or using a connection.
    ConnectionPoolCleared { message: String },
    /// A connection was requested from a connection pool that has been closed.
    ConnectionPoolClosed { message: String },
    /// The server's wire version is outside the range this driver supports.
    IncompatibleServer { message: String },
    /// A document could not be serialized to or deserialized from BSON.
    Bson { message: String },
    /// TLS could not be set up or the handshake failed.
    Tls { message: String },
    /// A `mongodb+srv` lookup failed or its records broke the seedlist rules (no SRV record, a
    /// host outside the parent domain, several TXT records, a name server that never answered).
    DnsResolve { message: String },
    /// The client was shut down.
    Shutdown,
    /// A bug in the driver: a state that should be impossible.
    Internal { message: String },
}

/// An error reply to a command.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandError {
    pub code: i32,
    pub code_name: String,
    pub message: String,
    /// The server's `topologyVersion`, when it sent one (used by SDAM).
    pub topology_version: Option<Document>,
}

/// A write error reported by the server for one document.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteError {
    /// The index of the write in its batch.
    pub index: usize,
    pub code: i32,
    pub code_name: Option<String>,
    pub message: String,
    pub details: Option<Document>,
}

/// A write concern error.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteConcernError {
    pub code: i32,
    pub code_name: String,
    pub message: String,
    pub details: Option<Document>,
    pub labels: Vec<String>,
}

/// Why a single-document write failed.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteFailure {
    WriteError(WriteError),
    WriteConcernError(WriteConcernError),
}

/// Why a multi-document write failed, with what did succeed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BulkWriteFailure {
    pub write_errors: Vec<WriteError>,
    pub write_concern_error: Option<WriteConcernError>,
    /// Partial results: `_id`s inserted, keyed by the index of the model.
    pub inserted_ids: std::collections::BTreeMap<usize, bson::Bson>,
    /// Partial results: documents matched by the updates that ran (upserts not counted).
    pub matched_count: u64,
    /// Partial results: documents modified by the updates that ran.
    pub modified_count: u64,
    /// Partial results: documents deleted by the deletes that ran.
    pub deleted_count: u64,
    /// Partial results: `_id`s of upserted documents, keyed by the index of the model.
    pub upserted_ids: std::collections::BTreeMap<usize, bson::Bson>,
}

impl Error {
    /// An error of `kind` with no labels.
    pub fn new(kind: ErrorKind) -> Self {
        Error {
            kind: Box::new(kind),
            labels: BTreeSet::new(),
        }
    }

    /// An [`ErrorKind::InvalidArgument`] error.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument {
            message: message.into(),
        })
    }

    /// An [`ErrorKind::InvalidResponse`] error.
    pub fn invalid_response(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidResponse {
            message: message.into(),
        })
    }

    /// An [`ErrorKind::InvalidArgument`] error whose message is `cause`'s `Display`.
    pub fn invalid_argument_from(cause: impl fmt::Display) -> Self {
        Self::invalid_argument(cause.to_string())
    }

    /// An [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal {
            message: message.into(),
        })
    }

    /// An [`ErrorKind::DnsResolve`] error.
    pub fn dns_resolve(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::DnsResolve {
            message: message.into(),
        })
    }

    /// An [`ErrorKind::Authentication`] error.
    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Authentication {
            message: message.into(),
        })
    }

    /// An [`ErrorKind::Timeout`] error.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout {
            message: message.into(),
        })
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The error labels (from the server, or added by the driver).
    pub fn labels(&self) -> &BTreeSet<String> {
        &self.labels
    }

    /// Whether the error carries `label`.
    pub fn contains_label(&self, label: &str) -> bool {
        self.labels.contains(label)
    }

    /// Adds a label.
    pub fn add_label(&mut self, label: impl Into<String>) {
        self.labels.insert(label.into());
    }

    /// Returns the error with `labels` added.
    pub fn with_labels<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.labels.extend(labels.into_iter().map(Into::into));
        self
    }

    /// The server error code, for command errors and single write failures.
    pub fn code(&self) -> Option<i32> {
        match &*self.kind {
            ErrorKind::Command(c) => Some(c.code),
            ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
            ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
            _ => None,
        }
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error::new(kind)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io(Arc::new(e)))
    }
}

impl From<bson::error::Error> for Error {
    fn from(e: bson::error::Error) -> Self {
        Error::new(ErrorKind::Bson {
            message: e.to_string(),
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            ErrorKind::InvalidArgument { message } => write!(f, "invalid argument: {message}")?,
            ErrorKind::Io(e) => write!(f, "I/O error: {e}")?,
            ErrorKind::InvalidResponse { message } => {
                write!(f, "invalid response from server: {message}")?
            }
            ErrorKind::Command(c) => write!(
                f,
                "command failed: {} (code {} {})",
                c.message, c.code, c.code_name
            )?,
            ErrorKind::Write(WriteFailure::WriteError(w)) => write!(
                f,
                "write error at index {}: {} (code {})",
                w.index, w.message, w.code
            )?,
            ErrorKind::Write(WriteFailure::WriteConcernError(w)) => write!(
                f,
                "write concern error: {} (code {} {})",
                w.message, w.code, w.code_name
            )?,
            ErrorKind::BulkWrite(b) => {
                write!(
                    f,
                    "bulk write failed: {} write error(s)",
                    b.write_errors.len()
                )?;
                if let Some(first) = b.write_errors.first() {
                    write!(
                        f,
                        ", first at index {}: {} (code {})",
                        first.index, first.message, first.code
                    )?;
                }
                if let Some(wc) = &b.write_concern_error {
                    write!(
                        f,
                        "; write concern error: {} (code {})",
                        wc.message, wc.code
                    )?;
                }
            }
            ErrorKind::Authentication { message } => write!(f, "authentication failed: {message}")?,
            ErrorKind::ServerSelection { message } => {
                write!(f, "server selection failed: {message}")?
            }
            ErrorKind::Timeout { message } => write!(f, "timed out: {message}")?,
            ErrorKind::ConnectionPoolCleared { message } => {
                write!(f, "connection pool cleared: {message}")?
            }
            ErrorKind::ConnectionPoolClosed { message } => {
                write!(f, "connection pool closed: {message}")?
            }
            ErrorKind::IncompatibleServer { message } => {
                write!(f, "incompatible server: {message}")?
            }
            ErrorKind::Bson { message } => write!(f, "BSON error: {message}")?,
            ErrorKind::Tls { message } => write!(f, "TLS error: {message}")?,
            ErrorKind::DnsResolve { message } => write!(f, "DNS resolution failed: {message}")?,
            ErrorKind::Shutdown => write!(f, "the client has been shut down")?,
            ErrorKind::Internal { message } => write!(f, "internal driver error: {message}")?,
        }
        if !self.labels.is_empty() {
            let labels: Vec<&str> = self.labels.iter().map(String::as_str).collect();
            write!(f, " [labels: {}]", labels.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            ErrorKind::Io(e) => Some(&**e),
            _ => None,
        }
    }
}
