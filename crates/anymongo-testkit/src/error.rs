//! Server-side command errors, rendered the way mongod renders them.

use bson::{doc, Document};

/// A command failure: `{ok: 0, code, codeName, errmsg}` on the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandError {
    /// The numeric server error code.
    pub code: i32,
    /// The server's name for `code`.
    pub code_name: String,
    /// Human-readable message.
    pub errmsg: String,
    /// `errorLabels`, when any.
    pub labels: Vec<String>,
    /// The error's own fields, sent beside `code` (a DuplicateKey's `keyPattern`, `keyValue`).
    pub extra: Option<Box<Document>>,
}

impl CommandError {
    /// An error with the given code, name and message.
    pub fn new(code: i32, code_name: &str, errmsg: impl Into<String>) -> Self {
        CommandError {
            code,
            code_name: code_name.to_string(),
            errmsg: errmsg.into(),
            labels: Vec::new(),
            extra: None,
        }
    }

    /// Adds one of the error's own fields (sent beside `code`).
    pub fn with_field(mut self, key: &str, value: impl Into<bson::Bson>) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key, value.into());
        self
    }

    /// The error's own fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&String, &bson::Bson)> {
        self.extra.iter().flat_map(|d| d.iter())
    }

    /// `BadValue` (2): the catch-all for unsupported operators and malformed arguments.
    pub fn bad_value(errmsg: impl Into<String>) -> Self {
        Self::new(2, "BadValue", errmsg)
    }

    /// `TypeMismatch` (14).
    pub fn type_mismatch(errmsg: impl Into<String>) -> Self {
        Self::new(14, "TypeMismatch", errmsg)
    }

    /// `Unauthorized` (13).
    pub fn unauthorized(command: &str) -> Self {
        Self::new(
            13,
            "Unauthorized",
            format!("command {command} requires authentication"),
        )
    }

    /// `AuthenticationFailed` (18) with mongod's fixed message.
    pub fn auth_failed() -> Self {
        Self::new(18, "AuthenticationFailed", "Authentication failed.")
    }

    /// `NotWritablePrimary` (10107).
    pub fn not_writable_primary() -> Self {
        Self::new(10107, "NotWritablePrimary", "not primary")
    }

    /// `CommandNotFound` (59).
    pub fn command_not_found(name: &str) -> Self {
        Self::new(59, "CommandNotFound", format!("no such command: '{name}'"))
    }

    /// The reply document.
    pub fn to_document(&self) -> Document {
        let mut d = doc! {
            "ok": 0.0,
            "errmsg": self.errmsg.clone(),
            "code": self.code,
            "codeName": self.code_name.clone(),
        };
        for (k, v) in self.fields() {
            d.insert(k.clone(), v.clone());
        }
        if !self.labels.is_empty() {
            d.insert("errorLabels", self.labels.clone());
        }
        d
    }
}

/// The conventional name of a few server error codes (used when a fail point gives only a code).
pub fn code_name(code: i32) -> &'static str {
    match code {
        1 => "InternalError",
        2 => "BadValue",
        6 => "HostUnreachable",
        7 => "HostNotFound",
        11 => "UserNotFound",
        13 => "Unauthorized",
        14 => "TypeMismatch",
        18 => "AuthenticationFailed",
        26 => "NamespaceNotFound",
        43 => "CursorNotFound",
        48 => "NamespaceExists",
        50 => "MaxTimeMSExpired",
        59 => "CommandNotFound",
        64 => "WriteConcernFailed",
        89 => "NetworkTimeout",
        91 => "ShutdownInProgress",
        100 => "UnsatisfiableWriteConcern",
        112 => "WriteConflict",
        189 => "PrimarySteppedDown",
        262 => "ExceededTimeLimit",
        9001 => "SocketException",
        10107 => "NotWritablePrimary",
        11000 => "DuplicateKey",
        11600 => "InterruptedAtShutdown",
        11602 => "InterruptedDueToReplStateChange",
        13388 => "StaleConfig",
        13435 => "NotPrimaryNoSecondaryOk",
        13436 => "NotPrimaryOrSecondary",
        _ => "UnknownError",
    }
}
