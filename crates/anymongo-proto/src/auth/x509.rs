//! MONGODB-X509: one `authenticate` command; the TLS client certificate is the credential.

use bson::{doc, Document};

use super::{check_ok, AuthStep};
use crate::error::{Error, Result};

/// The only source of X.509 credentials.
pub const SOURCE: &str = "$external";

/// A MONGODB-X509 conversation.
#[derive(Clone, Debug)]
pub struct X509Client {
    username: Option<String>,
    sent: bool,
    done: bool,
}

impl X509Client {
    /// A conversation; `username` (the certificate's RFC 2253 subject) is sent only if given.
    pub fn new(username: Option<&str>) -> Self {
        X509Client {
            username: username.map(str::to_string),
            sent: false,
            done: false,
        }
    }

    /// The database the command goes to (`$external`).
    pub fn source(&self) -> &str {
        SOURCE
    }

    /// Whether the server accepted the certificate.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The `authenticate` command.
    pub fn command(&mut self) -> Document {
        self.sent = true;
        let mut cmd = doc! {"authenticate": 1, "mechanism": "MONGODB-X509"};
        if let Some(user) = &self.username {
            cmd.insert("user", user.clone());
        }
        cmd
    }

    /// The `speculativeAuthenticate` document for `hello`: the command plus `db: "$external"`.
    pub fn speculative_authenticate(&mut self) -> Document {
        let mut cmd = self.command();
        cmd.insert("db", SOURCE);
        cmd
    }

    /// Handles the reply to `authenticate`.
    pub fn handle_reply(&mut self, reply: &Document) -> Result<AuthStep> {
        if !self.sent || self.done {
            return Err(Error::internal("MONGODB-X509 reply handled out of order"));
        }
        check_ok(reply, "MONGODB-X509", false)?;
        self.done = true;
        Ok(AuthStep::Done)
    }

    /// Handles a hello's `speculativeAuthenticate` reply (`{dbname, user}`, no `ok`): its presence
    /// means the server authenticated the connection.
    pub fn handle_speculative_reply(&mut self, reply: &Document) -> Result<AuthStep> {
        if !self.sent || self.done {
            return Err(Error::internal(
                "MONGODB-X509 speculative reply handled out of order",
            ));
        }
        check_ok(reply, "MONGODB-X509", true)?;
        self.done = true;
        Ok(AuthStep::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_with_and_without_user() {
        let mut anon = X509Client::new(None);
        assert_eq!(
            anon.command(),
            doc! {"authenticate": 1, "mechanism": "MONGODB-X509"}
        );
        let subject = "C=IS,ST=Reykjavik,L=Reykjavik,O=MongoDB,OU=Drivers,CN=client";
        let mut named = X509Client::new(Some(subject));
        assert_eq!(
            named.speculative_authenticate(),
            doc! {"authenticate": 1, "mechanism": "MONGODB-X509", "user": subject, "db": "$external"}
        );
        assert_eq!(named.source(), "$external");
    }

    #[test]
    fn replies() {
        let mut c = X509Client::new(None);
        assert!(c.handle_reply(&doc! {"ok": 1}).is_err(), "not sent yet");
        c.command();
        let err = c
            .handle_reply(
                &doc! {"ok": 0, "errmsg": "No verified subject name available", "code": 18},
            )
            .expect_err("fails");
        assert!(err.to_string().contains("No verified subject"));
        let mut c = X509Client::new(None);
        c.command();
        assert_eq!(
            c.handle_reply(&doc! {"dbname": "$external", "user": "CN=client", "ok": 1})
                .expect("ok"),
            AuthStep::Done
        );
        assert!(c.is_done());
        let mut s = X509Client::new(None);
        s.speculative_authenticate();
        assert_eq!(
            s.handle_speculative_reply(&doc! {"dbname": "$external", "user": "CN=client"})
                .expect("ok"),
            AuthStep::Done
        );
    }
}
