//! PLAIN (RFC 4616), used by MongoDB for LDAP: one `saslStart` with `\0user\0password`.

use std::fmt;

use bson::{doc, Document};

use super::{binary, check_ok, sasl_done, AuthStep};
use crate::error::{Error, Result};

/// The default source of PLAIN credentials.
pub const DEFAULT_SOURCE: &str = "$external";

/// A PLAIN conversation. `Debug` never shows the password.
#[derive(Clone)]
pub struct PlainClient {
    username: String,
    password: String,
    source: String,
    sent: bool,
    done: bool,
}

impl fmt::Debug for PlainClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainClient")
            .field("username", &self.username)
            .field("source", &self.source)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl PlainClient {
    /// A PLAIN conversation for `username`/`password` against `source` (`None`: `$external`).
    pub fn new(username: &str, password: &str, source: Option<&str>) -> Result<Self> {
        if username.is_empty() {
            return Err(Error::authentication("PLAIN requires a non-empty username"));
        }
        Ok(PlainClient {
            username: username.to_string(),
            password: password.to_string(),
            source: source.unwrap_or(DEFAULT_SOURCE).to_string(),
            sent: false,
            done: false,
        })
    }

    /// The database the command goes to.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the server accepted the credentials.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The `saslStart` command.
    pub fn client_first(&mut self) -> Document {
        self.sent = true;
        let mut payload = Vec::with_capacity(self.username.len() + self.password.len() + 2);
        payload.push(0);
        payload.extend_from_slice(self.username.as_bytes());
        payload.push(0);
        payload.extend_from_slice(self.password.as_bytes());
        doc! {
            "saslStart": 1,
            "mechanism": "PLAIN",
            "payload": binary(payload),
            "autoAuthorize": 1,
        }
    }

    /// Handles the reply to `saslStart`: the server must say `done: true`.
    pub fn handle_reply(&mut self, reply: &Document) -> Result<AuthStep> {
        if !self.sent || self.done {
            return Err(Error::internal("PLAIN reply handled out of order"));
        }
        check_ok(reply, "PLAIN", false)?;
        if sasl_done(reply, "PLAIN")? {
            self.done = true;
            Ok(AuthStep::Done)
        } else {
            Err(Error::authentication(
                "PLAIN: the server did not finish the conversation after saslStart",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::Bson;

    #[test]
    fn spec_conversation() {
        let mut c = PlainClient::new("user", "pencil", None).expect("client");
        assert_eq!(c.source(), "$external");
        let cmd = c.client_first();
        assert_eq!(cmd.get_str("mechanism").ok(), Some("PLAIN"));
        match cmd.get("payload") {
            Some(Bson::Binary(b)) => {
                use base64::Engine as _;
                assert_eq!(
                    base64::engine::general_purpose::STANDARD.encode(&b.bytes),
                    "AHVzZXIAcGVuY2ls"
                );
            }
            other => panic!("payload {other:?}"),
        }
        let step = c
            .handle_reply(
                &doc! {"conversationId": 1, "payload": binary(vec![]), "done": true, "ok": 1},
            )
            .expect("done");
        assert_eq!(step, AuthStep::Done);
        assert!(c.is_done());
    }

    #[test]
    fn explicit_source_and_failures() {
        let mut c = PlainClient::new("user", "pw", Some("ldapdb")).expect("client");
        assert_eq!(c.source(), "ldapdb");
        assert!(c.handle_reply(&doc! {"ok": 1, "done": true}).is_err());
        c.client_first();
        let err = c
            .handle_reply(&doc! {"ok": 0, "errmsg": "Authentication failed.", "code": 18})
            .expect_err("fails");
        assert!(err.to_string().contains("Authentication failed."));
        let mut c = PlainClient::new("user", "pw", None).expect("client");
        c.client_first();
        assert!(c.handle_reply(&doc! {"ok": 1, "done": false}).is_err());
        assert!(PlainClient::new("", "pw", None).is_err());
        assert!(!format!("{c:?}").contains("pw\""));
    }
}
