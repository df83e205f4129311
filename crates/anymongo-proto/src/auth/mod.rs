//! Authentication as sans-IO step machines: a server reply in, the next command out.
//!
//! The connection layer drives an [`Authenticator`]:
//!
//! 1. Build it from the [`Credential`] and the client's shared [`ScramCache`].
//! 2. Put [`Authenticator::sasl_supported_mechs`] (if any) in the handshake `hello` as
//!    `saslSupportedMechs`, and [`Authenticator::speculative`] (if any) as
//!    `speculativeAuthenticate`.
//! 3. After the `hello` reply, call [`Authenticator::start`] with [`HelloAuthInfo::from_hello_reply`].
//!    It resumes the speculative conversation or starts a new one with the negotiated mechanism.
//! 4. While the step is [`AuthStep::Send`], run the command on `db` (OP_MSG, `$db: db`) and feed
//!    the reply document (even an `ok: 0` one) to [`Authenticator::handle_reply`].
//!
//! Arbiters cannot authenticate: the connection layer skips authentication for them. Any error is
//! an [`crate::ErrorKind::Authentication`] (or `Internal` for API misuse), never a panic.
//!
//! Mechanisms: SCRAM-SHA-256 and SCRAM-SHA-1 ([`scram`]), PLAIN ([`plain`]) and MONGODB-X509
//! ([`x509`]). GSSAPI, MONGODB-AWS and MONGODB-OIDC are reported as unsupported.

pub mod plain;
pub mod saslprep;
pub mod scram;
pub mod x509;

use std::fmt;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document};

pub use plain::PlainClient;
pub use scram::{generate_nonce, ScramCache, ScramClient, ScramMechanism};
pub use x509::X509Client;

use crate::error::{Error, Result};
use crate::options::{AuthMechanism, Credential};

/// What the connection layer does next.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthStep {
    /// Run `command` against database `db` and feed the reply to `handle_reply`.
    Send { command: Document, db: String },
    /// Authentication succeeded.
    Done,
}

/// The authentication-related parts of a handshake `hello` reply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HelloAuthInfo {
    /// `saslSupportedMechs`, if the server sent it (unknown names are kept, never an error).
    pub sasl_supported_mechs: Option<Vec<String>>,
    /// `speculativeAuthenticate`, if the server answered a speculative first step.
    pub speculative_authenticate: Option<Document>,
}

impl HelloAuthInfo {
    /// Extracts the fields from a `hello` reply. Fields of the wrong type are ignored (the spec
    /// forbids validating `saslSupportedMechs`).
    pub fn from_hello_reply(reply: &Document) -> Self {
        let sasl_supported_mechs = match reply.get("saslSupportedMechs") {
            Some(Bson::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(|b| b.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => None,
        };
        let speculative_authenticate = match reply.get("speculativeAuthenticate") {
            Some(Bson::Document(d)) => Some(d.clone()),
            _ => None,
        };
        HelloAuthInfo {
            sasl_supported_mechs,
            speculative_authenticate,
        }
    }
}

/// The default mechanism for a credential without one: SCRAM-SHA-256 if the server lists it in
/// `saslSupportedMechs`, otherwise SCRAM-SHA-1 (also when the list is absent).
pub fn negotiate_mechanism(sasl_supported_mechs: Option<&[String]>) -> AuthMechanism {
    match sasl_supported_mechs {
        Some(mechs) if mechs.iter().any(|m| m == "SCRAM-SHA-256") => AuthMechanism::ScramSha256,
        _ => AuthMechanism::ScramSha1,
    }
}

/// The `saslSupportedMechs` value for the handshake (`"<source>.<username>"`, username as given,
/// not SASLprep'd), needed only when the credential has a username but no mechanism.
pub fn sasl_supported_mechs_field(credential: &Credential) -> Option<String> {
    if credential.mechanism.is_some() {
        return None;
    }
    let user = credential.username.as_deref()?;
    let source = credential.source.as_deref().unwrap_or(SCRAM_DEFAULT_SOURCE);
    Some(format!("{source}.{user}"))
}

/// The default source of SCRAM credentials.
pub const SCRAM_DEFAULT_SOURCE: &str = "admin";

/// A mechanism's machine.
#[derive(Clone, Debug)]
enum Machine {
    /// Nothing sent yet.
    Idle,
    Scram(ScramClient),
    Plain(PlainClient),
    X509(X509Client),
}

/// Authenticates one connection with one credential, over any mechanism.
///
/// `Debug` never shows the password.
#[derive(Clone)]
pub struct Authenticator {
    credential: Credential,
    cache: ScramCache,
    fixed_nonce: Option<String>,
    machine: Machine,
    speculative_sent: bool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("credential", &self.credential)
            .field("machine", &self.machine)
            .field("speculative_sent", &self.speculative_sent)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Checks `credential` and prepares to authenticate with it. `cache` is the client's shared
    /// SCRAM key cache.
    pub fn new(credential: &Credential, cache: &ScramCache) -> Result<Self> {
        validate(credential)?;
        Ok(Authenticator {
            credential: credential.clone(),
            cache: cache.clone(),
            fixed_nonce: None,
            machine: Machine::Idle,
            speculative_sent: false,
        })
    }

    /// Uses `nonce` as the SCRAM client nonce instead of a random one (deterministic tests only).
    #[cfg(test)]
    pub(crate) fn with_fixed_nonce(mut self, nonce: impl Into<String>) -> Self {
        self.fixed_nonce = Some(nonce.into());
        self
    }

    /// The `saslSupportedMechs` value to put in the handshake `hello`, if negotiation is needed.
    pub fn sasl_supported_mechs(&self) -> Option<String> {
        sasl_supported_mechs_field(&self.credential)
    }

    /// The mechanism of the conversation under way, once one has started.
    pub fn mechanism(&self) -> Option<AuthMechanism> {
        match &self.machine {
            Machine::Idle => None,
            Machine::Scram(c) => Some(c.mechanism().auth_mechanism()),
            Machine::Plain(_) => Some(AuthMechanism::Plain),
            Machine::X509(_) => Some(AuthMechanism::MongoDbX509),
        }
    }

    /// Whether authentication has succeeded.
    pub fn is_done(&self) -> bool {
        match &self.machine {
            Machine::Idle => false,
            Machine::Scram(c) => c.is_done(),
            Machine::Plain(c) => c.is_done(),
            Machine::X509(c) => c.is_done(),
        }
    }

    /// The `speculativeAuthenticate` document for the handshake `hello`, or `None` if the mechanism
    /// has no speculative form (PLAIN). A credential without a mechanism speculates with
    /// SCRAM-SHA-256, as the handshake spec requires. Call at most once, before [`Self::start`].
    pub fn speculative(&mut self) -> Result<Option<Document>> {
        if !matches!(self.machine, Machine::Idle) {
            return Err(Error::internal(
                "speculative authentication requested after the conversation started",
            ));
        }
        let doc = match self.credential.mechanism {
            None | Some(AuthMechanism::ScramSha256) => {
                let mut c = self.scram_client(ScramMechanism::Sha256)?;
                let d = c.speculative_authenticate();
                self.machine = Machine::Scram(c);
                d
            }
            Some(AuthMechanism::ScramSha1) => {
                let mut c = self.scram_client(ScramMechanism::Sha1)?;
                let d = c.speculative_authenticate();
                self.machine = Machine::Scram(c);
                d
            }
            Some(AuthMechanism::MongoDbX509) => {
                let mut c = X509Client::new(self.credential.username.as_deref());
                let d = c.speculative_authenticate();
                self.machine = Machine::X509(c);
                d
            }
            Some(_) => return Ok(None),
        };
        self.speculative_sent = true;
        Ok(Some(doc))
    }

    /// Continues after the handshake `hello`: resumes the speculative conversation if the server
    /// answered it, else starts a new conversation (negotiating the mechanism from
    /// `saslSupportedMechs` if the credential has none).
    pub fn start(&mut self, hello: &HelloAuthInfo) -> Result<AuthStep> {
        if self.speculative_sent {
            if let Some(reply) = &hello.speculative_authenticate {
                return self.resume_speculative(reply);
            }
        }
        let mechanism = self
            .credential
            .mechanism
            .unwrap_or_else(|| negotiate_mechanism(hello.sasl_supported_mechs.as_deref()));
        self.begin(mechanism)
    }

    /// Feeds a hello's `speculativeAuthenticate` reply to the conversation begun by
    /// [`Self::speculative`].
    pub fn resume_speculative(&mut self, reply: &Document) -> Result<AuthStep> {
        if !self.speculative_sent {
            return Err(Error::internal(
                "a speculative reply arrived but no speculative authentication was sent",
            ));
        }
        self.speculative_sent = false;
        match &mut self.machine {
            Machine::Scram(c) => c.handle_server_first(reply),
            Machine::X509(c) => c.handle_speculative_reply(reply),
            Machine::Plain(_) | Machine::Idle => Err(Error::internal(
                "a speculative reply arrived for a mechanism without speculation",
            )),
        }
    }

    /// Feeds the reply to the last [`AuthStep::Send`] command.
    pub fn handle_reply(&mut self, reply: &Document) -> Result<AuthStep> {
        match &mut self.machine {
            Machine::Idle => Err(Error::internal(
                "an authentication reply arrived before authentication started",
            )),
            Machine::Scram(c) => c.handle_reply(reply),
            Machine::Plain(c) => c.handle_reply(reply),
            Machine::X509(c) => c.handle_reply(reply),
        }
    }

    fn begin(&mut self, mechanism: AuthMechanism) -> Result<AuthStep> {
        self.speculative_sent = false;
        let (machine, step) = match mechanism {
            AuthMechanism::ScramSha1 | AuthMechanism::ScramSha256 => {
                let m = if mechanism == AuthMechanism::ScramSha1 {
                    ScramMechanism::Sha1
                } else {
                    ScramMechanism::Sha256
                };
                let mut c = self.scram_client(m)?;
                let step = AuthStep::Send {
                    command: c.client_first(),
                    db: c.source().to_string(),
                };
                (Machine::Scram(c), step)
            }
            AuthMechanism::Plain => {
                let mut c = PlainClient::new(
                    self.credential.username.as_deref().unwrap_or_default(),
                    self.credential.password.as_deref().unwrap_or_default(),
                    self.credential.source.as_deref(),
                )?;
                let step = AuthStep::Send {
                    command: c.client_first(),
                    db: c.source().to_string(),
                };
                (Machine::Plain(c), step)
            }
            AuthMechanism::MongoDbX509 => {
                let mut c = X509Client::new(self.credential.username.as_deref());
                let step = AuthStep::Send {
                    command: c.command(),
                    db: c.source().to_string(),
                };
                (Machine::X509(c), step)
            }
            other => return Err(unsupported(other)),
        };
        self.machine = machine;
        Ok(step)
    }

    fn scram_client(&self, mechanism: ScramMechanism) -> Result<ScramClient> {
        let nonce = self.fixed_nonce.clone().unwrap_or_else(generate_nonce);
        ScramClient::new(
            self.credential.username.as_deref().unwrap_or_default(),
            self.credential.password.as_deref().unwrap_or_default(),
            mechanism,
            self.credential
                .source
                .as_deref()
                .unwrap_or(SCRAM_DEFAULT_SOURCE),
            self.cache.clone(),
            nonce,
        )
    }
}

fn unsupported(mechanism: AuthMechanism) -> Error {
    Error::authentication(format!(
        "the {} mechanism is not supported by this driver",
        mechanism.as_str()
    ))
}

/// Checks that `credential` has what its mechanism needs (auth spec, "MongoCredential Properties").
fn validate(credential: &Credential) -> Result<()> {
    let has_properties = credential
        .mechanism_properties
        .as_ref()
        .is_some_and(|p| !p.is_empty());
    let needs_user_and_password = |name: &str| -> Result<()> {
        if credential.username.as_deref().is_none_or(str::is_empty) {
            return Err(Error::authentication(format!(
                "{name} requires a non-empty username"
            )));
        }
        if credential.password.is_none() {
            return Err(Error::authentication(format!("{name} requires a password")));
        }
        if has_properties {
            return Err(Error::authentication(format!(
                "{name} does not accept mechanism properties"
            )));
        }
        Ok(())
    };
    match credential.mechanism {
        None => needs_user_and_password("authentication without a mechanism (SCRAM)"),
        Some(
            m @ (AuthMechanism::ScramSha1 | AuthMechanism::ScramSha256 | AuthMechanism::Plain),
        ) => needs_user_and_password(m.as_str()),
        Some(AuthMechanism::MongoDbX509) => {
            if credential.password.is_some() {
                return Err(Error::authentication(
                    "MONGODB-X509 does not accept a password",
                ));
            }
            if credential
                .source
                .as_deref()
                .is_some_and(|s| s != x509::SOURCE)
            {
                return Err(Error::authentication(
                    "MONGODB-X509 requires the source (authSource) to be $external",
                ));
            }
            if has_properties {
                return Err(Error::authentication(
                    "MONGODB-X509 does not accept mechanism properties",
                ));
            }
            Ok(())
        }
        Some(other) => Err(unsupported(other)),
    }
}

/// A generic-subtype binary (SASL payloads).
pub(crate) fn binary(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    })
}

fn truthy(b: &Bson) -> Option<bool> {
    match b {
        Bson::Boolean(v) => Some(*v),
        Bson::Int32(v) => Some(*v != 0),
        Bson::Int64(v) => Some(*v != 0),
        Bson::Double(v) => Some(*v != 0.0),
        _ => None,
    }
}

/// Checks a reply's `ok`. `ok: 0` becomes an authentication error carrying the server's message
/// and code; a missing `ok` is accepted only when `allow_missing` (speculative replies).
pub(crate) fn check_ok(reply: &Document, mech: &str, allow_missing: bool) -> Result<()> {
    match reply.get("ok") {
        None if allow_missing => Ok(()),
        None => Err(Error::authentication(format!(
            "{mech}: the server's reply has no 'ok' field"
        ))),
        Some(ok) => match truthy(ok) {
            Some(true) => Ok(()),
            Some(false) => {
                let msg = reply.get_str("errmsg").unwrap_or("no error message");
                let mut text = format!("{mech}: {}", msg.chars().take(500).collect::<String>());
                match reply.get("code").and_then(Bson::as_i32) {
                    Some(code) => {
                        let name = reply.get_str("codeName").unwrap_or("");
                        text.push_str(&format!(" (code {code} {name})"));
                        Err(Error::authentication(text.trim_end().to_string()))
                    }
                    None => Err(Error::authentication(text)),
                }
            }
            None => Err(Error::authentication(format!(
                "{mech}: the server's reply has a non-numeric 'ok' field"
            ))),
        },
    }
}

/// A SASL reply's `done` (absent means `false`).
pub(crate) fn sasl_done(reply: &Document, mech: &str) -> Result<bool> {
    match reply.get("done") {
        None => Ok(false),
        Some(b) => truthy(b).ok_or_else(|| {
            Error::authentication(format!(
                "{mech}: the server's 'done' field is not a boolean"
            ))
        }),
    }
}

/// A SASL reply's `conversationId` (an integer, echoed back as is).
pub(crate) fn conversation_id(reply: &Document, mech: &str) -> Result<Bson> {
    match reply.get("conversationId") {
        Some(id @ (Bson::Int32(_) | Bson::Int64(_))) => Ok(id.clone()),
        _ => Err(Error::authentication(format!(
            "{mech}: the server's reply has no integer 'conversationId'"
        ))),
    }
}

/// A SASL reply's `payload`: binary data, or a base64 string.
pub(crate) fn sasl_payload(reply: &Document, mech: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    match reply.get("payload") {
        Some(Bson::Binary(b)) => Ok(b.bytes.clone()),
        Some(Bson::String(s)) => {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| {
                    Error::authentication(format!(
                        "{mech}: the server's string payload is not valid base64"
                    ))
                })
        }
        _ => Err(Error::authentication(format!(
            "{mech}: the server's reply has no binary 'payload'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use base64::Engine as _;
    use bson::doc;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn cred(user: Option<&str>, pw: Option<&str>, mech: Option<AuthMechanism>) -> Credential {
        Credential {
            username: user.map(str::to_string),
            password: pw.map(str::to_string),
            mechanism: mech,
            ..Default::default()
        }
    }

    fn payload(cmd: &Document) -> String {
        match cmd.get("payload") {
            Some(Bson::Binary(b)) => String::from_utf8(b.bytes.clone()).expect("utf8"),
            other => panic!("payload {other:?}"),
        }
    }

    fn send(step: AuthStep) -> (Document, String) {
        match step {
            AuthStep::Send { command, db } => (command, db),
            AuthStep::Done => panic!("unexpected Done"),
        }
    }

    fn sasl_reply(payload: &str, done: bool) -> Document {
        doc! {"conversationId": 1, "payload": binary(payload.as_bytes().to_vec()), "done": done, "ok": 1}
    }

    #[test]
    fn negotiation_prefers_sha256() {
        let both = vec!["SCRAM-SHA-1".to_string(), "SCRAM-SHA-256".to_string()];
        assert_eq!(negotiate_mechanism(Some(&both)), AuthMechanism::ScramSha256);
        let sha1 = vec!["SCRAM-SHA-1".to_string()];
        assert_eq!(negotiate_mechanism(Some(&sha1)), AuthMechanism::ScramSha1);
        let odd = vec!["PLAIN".to_string(), "FUTURE-MECH".to_string()];
        assert_eq!(negotiate_mechanism(Some(&odd)), AuthMechanism::ScramSha1);
        assert_eq!(negotiate_mechanism(Some(&[])), AuthMechanism::ScramSha1);
        assert_eq!(negotiate_mechanism(None), AuthMechanism::ScramSha1);
    }

    #[test]
    fn sasl_supported_mechs_field_rules() {
        let c = cred(Some("bob"), Some("pw"), None);
        assert_eq!(sasl_supported_mechs_field(&c).as_deref(), Some("admin.bob"));
        let mut c = cred(Some("\u{2168}"), Some("pw"), None);
        c.source = Some("app".into());
        // The username is sent exactly as given, never SASLprep'd.
        assert_eq!(
            sasl_supported_mechs_field(&c).as_deref(),
            Some("app.\u{2168}")
        );
        let c = cred(Some("bob"), Some("pw"), Some(AuthMechanism::ScramSha256));
        assert_eq!(sasl_supported_mechs_field(&c), None);
        let c = cred(None, None, None);
        assert_eq!(sasl_supported_mechs_field(&c), None);
    }

    #[test]
    fn hello_info_is_lenient() {
        let info = HelloAuthInfo::from_hello_reply(&doc! {
            "ok": 1,
            "saslSupportedMechs": ["SCRAM-SHA-256", 5, "NEW-MECH"],
            "speculativeAuthenticate": {"conversationId": 1},
        });
        assert_eq!(
            info.sasl_supported_mechs,
            Some(vec!["SCRAM-SHA-256".to_string(), "NEW-MECH".to_string()])
        );
        assert_eq!(
            info.speculative_authenticate,
            Some(doc! {"conversationId": 1})
        );
        let info = HelloAuthInfo::from_hello_reply(
            &doc! {"saslSupportedMechs": "x", "speculativeAuthenticate": 1},
        );
        assert_eq!(info, HelloAuthInfo::default());
    }

    #[test]
    fn speculative_scram_sha256_full_flow() {
        let cache = ScramCache::new();
        let mut a = Authenticator::new(&cred(Some("user"), Some("pencil"), None), &cache)
            .expect("valid")
            .with_fixed_nonce("rOprNGfwEbeRWgbNEkqO");
        assert_eq!(a.sasl_supported_mechs().as_deref(), Some("admin.user"));
        let spec = a.speculative().expect("ok").expect("scram speculates");
        assert_eq!(spec.get_str("mechanism").ok(), Some("SCRAM-SHA-256"));
        assert_eq!(spec.get_str("db").ok(), Some("admin"));
        assert_eq!(
            spec.get_document("options").ok(),
            Some(&doc! {"skipEmptyExchange": true})
        );
        assert_eq!(payload(&spec), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");

        let hello = HelloAuthInfo::from_hello_reply(&doc! {
            "isWritablePrimary": true,
            "saslSupportedMechs": ["SCRAM-SHA-1", "SCRAM-SHA-256"],
            "speculativeAuthenticate": {
                "conversationId": 1,
                "payload": binary(SERVER_FIRST.as_bytes().to_vec()),
                "done": false,
            },
            "ok": 1,
        });
        let (cont, db) = send(a.start(&hello).expect("resumes"));
        assert_eq!(db, "admin");
        assert_eq!(payload(&cont), CLIENT_FINAL);
        assert_eq!(a.mechanism(), Some(AuthMechanism::ScramSha256));
        assert!(!a.is_done());
        assert_eq!(
            a.handle_reply(&sasl_reply(SERVER_FINAL, true))
                .expect("done"),
            AuthStep::Done
        );
        assert!(a.is_done());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn unanswered_speculation_falls_back_to_negotiated_sha1() {
        let mut a = Authenticator::new(
            &cred(Some("user"), Some("pencil"), None),
            &ScramCache::new(),
        )
        .expect("valid")
        .with_fixed_nonce("fyko+d2lbbFgONRv9qkxdawL");
        a.speculative().expect("ok");
        let hello = HelloAuthInfo {
            sasl_supported_mechs: Some(vec!["SCRAM-SHA-1".into()]),
            speculative_authenticate: None,
        };
        let (start, db) = send(a.start(&hello).expect("starts"));
        assert_eq!(db, "admin");
        assert_eq!(start.get_str("mechanism").ok(), Some("SCRAM-SHA-1"));
        assert!(start.get("db").is_none());
        let (cont, _) = send(
            a.handle_reply(&sasl_reply(
                "r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,\
                 s=rQ9ZY3MntBeuP3E1TDVC4w==,i=10000",
                false,
            ))
            .expect("first"),
        );
        assert!(payload(&cont).ends_with("p=MC2T8BvbmWRckDw8oWl5IVghwCY="));
        assert_eq!(
            a.handle_reply(&sasl_reply("v=UMWeI25JD1yNYZRMpZ4VHvhZ9e0=", true))
                .expect("done"),
            AuthStep::Done
        );
    }

    #[test]
    fn explicit_mechanism_is_honoured_and_source_used() {
        let mut c = cred(Some("user"), Some("pencil"), Some(AuthMechanism::ScramSha1));
        c.source = Some("appdb".into());
        let mut a = Authenticator::new(&c, &ScramCache::new()).expect("valid");
        assert_eq!(a.sasl_supported_mechs(), None);
        let hello = HelloAuthInfo {
            sasl_supported_mechs: Some(vec!["SCRAM-SHA-256".into()]),
            speculative_authenticate: None,
        };
        let (start, db) = send(a.start(&hello).expect("starts"));
        assert_eq!(db, "appdb");
        assert_eq!(start.get_str("mechanism").ok(), Some("SCRAM-SHA-1"));
        // A random nonce of 32 characters.
        assert_eq!(payload(&start).len(), "n,,n=user,r=".len() + 32);
    }

    #[test]
    fn wrong_password_reply_is_authentication_error_with_code() {
        let mut a = Authenticator::new(
            &cred(
                Some("user"),
                Some("wrong"),
                Some(AuthMechanism::ScramSha256),
            ),
            &ScramCache::new(),
        )
        .expect("valid")
        .with_fixed_nonce("rOprNGfwEbeRWgbNEkqO");
        a.start(&HelloAuthInfo::default()).expect("start");
        a.handle_reply(&sasl_reply(SERVER_FIRST, false))
            .expect("first");
        let err = a
            .handle_reply(&doc! {
                "ok": 0, "errmsg": "Authentication failed.", "code": 18,
                "codeName": "AuthenticationFailed",
            })
            .expect_err("fails");
        assert!(matches!(err.kind(), ErrorKind::Authentication { .. }));
        let text = err.to_string();
        assert!(text.contains("code 18 AuthenticationFailed"), "{text}");
        assert!(!text.contains("wrong"), "{text}");
        assert!(!a.is_done());
    }

    #[test]
    fn plain_flow() {
        let c = cred(Some("user"), Some("pencil"), Some(AuthMechanism::Plain));
        let mut a = Authenticator::new(&c, &ScramCache::new()).expect("valid");
        assert_eq!(a.speculative().expect("ok"), None);
        let (cmd, db) = send(a.start(&HelloAuthInfo::default()).expect("start"));
        assert_eq!(db, "$external");
        assert_eq!(B64.encode(payload(&cmd)), "AHVzZXIAcGVuY2ls");
        assert_eq!(
            a.handle_reply(&sasl_reply("", true)).expect("done"),
            AuthStep::Done
        );
        assert!(a.is_done());
    }

    #[test]
    fn x509_speculative_and_regular() {
        let c = cred(None, None, Some(AuthMechanism::MongoDbX509));
        let mut a = Authenticator::new(&c, &ScramCache::new()).expect("valid");
        let spec = a.speculative().expect("ok").expect("x509 speculates");
        assert_eq!(
            spec,
            doc! {"authenticate": 1, "mechanism": "MONGODB-X509", "db": "$external"}
        );
        let hello = HelloAuthInfo {
            sasl_supported_mechs: None,
            speculative_authenticate: Some(doc! {"dbname": "$external", "user": "CN=client"}),
        };
        assert_eq!(a.start(&hello).expect("done"), AuthStep::Done);
        assert!(a.is_done());

        let mut b = Authenticator::new(&c, &ScramCache::new()).expect("valid");
        b.speculative().expect("ok");
        let (cmd, db) = send(b.start(&HelloAuthInfo::default()).expect("start"));
        assert_eq!(db, "$external");
        assert_eq!(cmd, doc! {"authenticate": 1, "mechanism": "MONGODB-X509"});
        assert_eq!(b.handle_reply(&doc! {"ok": 1}).expect("ok"), AuthStep::Done);
    }

    #[test]
    fn invalid_credentials_are_rejected() {
        let cache = ScramCache::new();
        let bad = [
            cred(None, Some("pw"), None),
            cred(Some("u"), None, None),
            cred(Some(""), Some("pw"), Some(AuthMechanism::ScramSha256)),
            cred(Some("u"), None, Some(AuthMechanism::Plain)),
            cred(None, Some("pw"), Some(AuthMechanism::MongoDbX509)),
            cred(Some("u"), Some("pw"), Some(AuthMechanism::Gssapi)),
            cred(Some("u"), Some("pw"), Some(AuthMechanism::MongoDbAws)),
            cred(Some("u"), Some("pw"), Some(AuthMechanism::MongoDbCr)),
        ];
        for c in bad {
            let err = Authenticator::new(&c, &cache).expect_err("invalid");
            assert!(
                matches!(err.kind(), ErrorKind::Authentication { .. }),
                "{err}"
            );
        }
        let mut x = cred(None, None, Some(AuthMechanism::MongoDbX509));
        x.source = Some("admin".into());
        assert!(Authenticator::new(&x, &cache).is_err());
        let mut p = cred(Some("u"), Some("pw"), Some(AuthMechanism::ScramSha1));
        p.mechanism_properties = Some(doc! {"SERVICE_NAME": "x"});
        assert!(Authenticator::new(&p, &cache).is_err());
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let c = cred(Some("user"), Some("pencil"), None);
        let mut a = Authenticator::new(&c, &ScramCache::new()).expect("valid");
        assert!(a.handle_reply(&doc! {"ok": 1}).is_err());
        assert!(a.resume_speculative(&doc! {}).is_err());
        a.start(&HelloAuthInfo::default()).expect("start");
        assert!(a.speculative().is_err());
    }

    #[test]
    fn debug_redacts_password() {
        let c = cred(Some("user"), Some("s3cr3t-pw"), None);
        let a = Authenticator::new(&c, &ScramCache::new()).expect("valid");
        assert!(!format!("{a:?}").contains("s3cr3t-pw"));
    }
}
