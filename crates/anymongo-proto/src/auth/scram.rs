//! SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) as MongoDB speaks them over `saslStart` /
//! `saslContinue`, as a step machine: server reply in, next command out.
//!
//! MongoDB specifics (auth spec): user names are never SASLprep'd; SCRAM-SHA-1 derives keys from
//! `hex(md5("<user>:mongo:<password>"))`, SCRAM-SHA-256 from the SASLprep'd password; no channel
//! binding (`n,,`); iteration counts below 4096 are refused; `saslStart` carries
//! `options: {skipEmptyExchange: true}` and the client copes with servers that still want the extra
//! empty round trip. The server's signature is always verified.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bson::{doc, Bson, Document};
use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;

use super::{binary, check_ok, conversation_id, sasl_done, sasl_payload, AuthStep};
use crate::error::{Error, Result};
use crate::options::AuthMechanism;

/// The minimum iteration count the client accepts (auth spec: mitigates downgrade attacks).
pub const MIN_ITERATION_COUNT: u32 = 4096;

/// The hash function of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    /// SCRAM-SHA-1 (MongoDB's variant: the key derivation input is an MD5 digest).
    Sha1,
    /// SCRAM-SHA-256 (the password is prepared with SASLprep).
    Sha256,
}

impl ScramMechanism {
    /// The SASL mechanism name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ScramMechanism::Sha1 => "SCRAM-SHA-1",
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// The SCRAM mechanism of `mechanism`, if it is one.
    pub fn from_auth_mechanism(mechanism: AuthMechanism) -> Option<Self> {
        match mechanism {
            AuthMechanism::ScramSha1 => Some(ScramMechanism::Sha1),
            AuthMechanism::ScramSha256 => Some(ScramMechanism::Sha256),
            _ => None,
        }
    }

    /// The matching [`AuthMechanism`].
    pub fn auth_mechanism(&self) -> AuthMechanism {
        match self {
            ScramMechanism::Sha1 => AuthMechanism::ScramSha1,
            ScramMechanism::Sha256 => AuthMechanism::ScramSha256,
        }
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .map_err(|_| Error::internal("HMAC rejected its key"))?;
            mac.update(data);
            Ok(mac.finalize().into_bytes().to_vec())
        }
        match self {
            ScramMechanism::Sha1 => run::<Hmac<Sha1>>(key, data),
            ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, data),
        }
    }

    fn hash(&self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha1 => Sha1::digest(data).to_vec(),
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// `Hi()` of RFC 5802: PBKDF2 with this mechanism's HMAC.
    fn hi(&self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramMechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }

    /// The key-derivation input for `password`: MongoDB's hex MD5 digest for SCRAM-SHA-1, the
    /// SASLprep'd password for SCRAM-SHA-256.
    fn kdf_password(&self, username: &str, password: &str) -> Result<String> {
        match self {
            ScramMechanism::Sha1 => {
                let mut md5 = Md5::new();
                md5.update(username.as_bytes());
                md5.update(b":mongo:");
                md5.update(password.as_bytes());
                Ok(hex(&md5.finalize()))
            }
            ScramMechanism::Sha256 => Ok(super::saslprep::saslprep(password)?.into_owned()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    kdf_password: String,
    salt: Vec<u8>,
    iterations: u32,
    mechanism: ScramMechanism,
}

/// The keys derived from a salted password.
#[derive(Clone, PartialEq, Eq)]
struct CachedKeys {
    client_key: Vec<u8>,
    server_key: Vec<u8>,
}

/// A cache of derived SCRAM keys (`ClientKey`, `ServerKey`), keyed by password, salt, iteration
/// count and mechanism, as the auth spec requires; PBKDF2 then runs once per credential rather than
/// once per connection.
///
/// Cheap to clone (clones share the entries): keep one per client (per connection string) and
/// hand it to every [`ScramClient`] / [`super::Authenticator`]. `Debug` shows only the entry count.
#[derive(Clone, Default)]
pub struct ScramCache {
    inner: Arc<Mutex<HashMap<CacheKey, CachedKeys>>>,
}

impl ScramCache {
    /// At most this many entries are kept; the cache is emptied when it would grow past it.
    pub const MAX_ENTRIES: usize = 64;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many derived key pairs are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, CachedKeys>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &CacheKey) -> Option<CachedKeys> {
        self.lock().get(key).cloned()
    }

    fn insert(&self, key: CacheKey, keys: CachedKeys) {
        let mut map = self.lock();
        if map.len() >= Self::MAX_ENTRIES && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, keys);
    }
}

impl fmt::Debug for ScramCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCache")
            .field("entries", &self.len())
            .finish()
    }
}

/// A fresh client nonce: 24 random bytes from the thread-local CSPRNG, base64-encoded (32
/// printable characters, no commas).
pub fn generate_nonce() -> String {
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes);
    B64.encode(bytes)
}

/// `saslname` escaping of RFC 5802: `=` → `=3D`, `,` → `=2C`.
fn escape_username(username: &str) -> String {
    let mut out = String::with_capacity(username.len());
    for c in username.chars() {
        match c {
            '=' => out.push_str("=3D"),
            ',' => out.push_str("=2C"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, PartialEq, Eq)]
enum ScramState {
    /// `client_first` not yet produced.
    Initial,
    /// `saslStart` sent; waiting for the server-first message.
    ClientFirstSent,
    /// `saslContinue` with the proof sent; waiting for the server-final message.
    ClientFinalSent {
        conversation_id: Bson,
        server_signature: Vec<u8>,
    },
    /// The signature was verified but the server wants the extra empty round trip.
    EmptyExchangeSent,
    /// Authenticated.
    Done,
    /// An error ended the conversation.
    Failed,
}

/// A SCRAM conversation for one connection.
///
/// Steps: [`client_first`](Self::client_first) (or
/// [`speculative_authenticate`](Self::speculative_authenticate)), then feed every reply to
/// [`handle_reply`](Self::handle_reply) (or the explicit `handle_server_first` /
/// `handle_server_final`) and send what it returns until [`AuthStep::Done`]. `Debug` never shows
/// the password or derived keys.
#[derive(Clone)]
pub struct ScramClient {
    mechanism: ScramMechanism,
    username: String,
    kdf_password: String,
    source: String,
    client_nonce: String,
    client_first_bare: String,
    cache: ScramCache,
    state: ScramState,
    speculative: bool,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ScramState::Initial => "Initial",
            ScramState::ClientFirstSent => "ClientFirstSent",
            ScramState::ClientFinalSent { .. } => "ClientFinalSent",
            ScramState::EmptyExchangeSent => "EmptyExchangeSent",
            ScramState::Done => "Done",
            ScramState::Failed => "Failed",
        };
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("source", &self.source)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A conversation for `username`/`password` against database `source`, with client nonce
    /// `nonce` (use [`generate_nonce`]; fixed nonces are for tests). The nonce must be non-empty
    /// printable ASCII without `,`.
    pub fn new(
        username: &str,
        password: &str,
        mechanism: ScramMechanism,
        source: &str,
        cache: ScramCache,
        nonce: impl Into<String>,
    ) -> Result<Self> {
        let nonce = nonce.into();
        if nonce.is_empty()
            || !nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(Error::invalid_argument(
                "a SCRAM client nonce must be non-empty printable ASCII without ','",
            ));
        }
        if username.is_empty() {
            return Err(Error::authentication(format!(
                "{} requires a non-empty username",
                mechanism.as_str()
            )));
        }
        let kdf_password = mechanism.kdf_password(username, password)?;
        let client_first_bare = format!("n={},r={}", escape_username(username), nonce);
        Ok(ScramClient {
            mechanism,
            username: username.to_string(),
            kdf_password,
            source: source.to_string(),
            client_nonce: nonce,
            client_first_bare,
            cache,
            state: ScramState::Initial,
            speculative: false,
        })
    }

    /// The mechanism.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The database the conversation's commands go to.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the server has been authenticated (its signature verified and `done` seen).
    pub fn is_done(&self) -> bool {
        self.state == ScramState::Done
    }

    /// The client-first message (`n,,n=<user>,r=<nonce>`).
    pub fn client_first_message(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// The `saslStart` command carrying the client-first message; send it to [`Self::source`].
    pub fn client_first(&mut self) -> Document {
        self.state = ScramState::ClientFirstSent;
        self.speculative = false;
        doc! {
            "saslStart": 1,
            "mechanism": self.mechanism.as_str(),
            "payload": binary(self.client_first_message().into_bytes()),
            "options": { "skipEmptyExchange": true },
        }
    }

    /// The `speculativeAuthenticate` document for the `hello` handshake: the `saslStart` command
    /// plus `db: <source>`. Its reply (the hello's `speculativeAuthenticate` field) goes to
    /// [`Self::handle_server_first`] (or [`Self::handle_reply`]).
    pub fn speculative_authenticate(&mut self) -> Document {
        let mut cmd = self.client_first();
        self.speculative = true;
        cmd.insert("db", self.source.clone());
        cmd
    }

    /// Handles any reply according to the conversation's state.
    pub fn handle_reply(&mut self, reply: &Document) -> Result<AuthStep> {
        match self.state {
            ScramState::ClientFirstSent => self.handle_server_first(reply),
            ScramState::ClientFinalSent { .. } | ScramState::EmptyExchangeSent => {
                self.handle_server_final(reply)
            }
            ScramState::Initial => Err(Error::internal(
                "SCRAM reply handled before the client-first message was sent",
            )),
            ScramState::Done => Err(Error::internal(
                "SCRAM reply handled after authentication finished",
            )),
            ScramState::Failed => Err(Error::authentication(
                "the SCRAM conversation already failed",
            )),
        }
    }

    /// Handles the reply to `saslStart` (or a hello's `speculativeAuthenticate` document, which
    /// has no `ok` field): checks the server nonce and iteration count, computes the proof and
    /// returns the `saslContinue` command carrying the client-final message.
    pub fn handle_server_first(&mut self, reply: &Document) -> Result<AuthStep> {
        if self.state != ScramState::ClientFirstSent {
            return Err(Error::internal(
                "SCRAM server-first message handled out of order",
            ));
        }
        let result = self.server_first_inner(reply);
        if result.is_err() {
            self.state = ScramState::Failed;
        }
        result
    }

    fn server_first_inner(&mut self, reply: &Document) -> Result<AuthStep> {
        let mech = self.mechanism.as_str();
        // A hello's speculativeAuthenticate reply has no `ok` field.
        check_ok(reply, mech, self.speculative)?;
        let conversation_id = conversation_id(reply, mech)?;
        if sasl_done(reply, mech)? {
            return Err(Error::authentication(format!(
                "{mech}: the server ended the conversation (done: true) before the client proved \
                 its identity"
            )));
        }
        let payload = sasl_payload(reply, mech)?;
        let server_first = std::str::from_utf8(&payload).map_err(|_| {
            Error::authentication(format!("{mech}: the server-first message is not UTF-8"))
        })?;
        let parsed = parse_server_first(server_first, mech)?;
        if !parsed.nonce.starts_with(&self.client_nonce)
            || parsed.nonce.len() <= self.client_nonce.len()
        {
            return Err(Error::authentication(format!(
                "{mech}: the server nonce does not extend the client nonce"
            )));
        }
        if parsed.iterations < MIN_ITERATION_COUNT {
            return Err(Error::authentication(format!(
                "{mech}: the server's iteration count {} is below the minimum of \
                 {MIN_ITERATION_COUNT}",
                parsed.iterations
            )));
        }

        let keys = self.derive_keys(&parsed.salt, parsed.iterations)?;
        let without_proof = format!("c=biws,r={}", parsed.nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, server_first, without_proof
        );
        let stored_key = self.mechanism.hash(&keys.client_key);
        let client_signature = self.mechanism.hmac(&stored_key, auth_message.as_bytes())?;
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature = self
            .mechanism
            .hmac(&keys.server_key, auth_message.as_bytes())?;
        let client_final = format!("{without_proof},p={}", B64.encode(proof));

        let cmd = doc! {
            "saslContinue": 1,
            "conversationId": conversation_id.clone(),
            "payload": binary(client_final.into_bytes()),
        };
        self.state = ScramState::ClientFinalSent {
            conversation_id,
            server_signature,
        };
        Ok(AuthStep::Send {
            command: cmd,
            db: self.source.clone(),
        })
    }

    fn derive_keys(&self, salt: &[u8], iterations: u32) -> Result<CachedKeys> {
        let key = CacheKey {
            kdf_password: self.kdf_password.clone(),
            salt: salt.to_vec(),
            iterations,
            mechanism: self.mechanism,
        };
        if let Some(keys) = self.cache.get(&key) {
            return Ok(keys);
        }
        let salted = self
            .mechanism
            .hi(self.kdf_password.as_bytes(), salt, iterations);
        let keys = CachedKeys {
            client_key: self.mechanism.hmac(&salted, b"Client Key")?,
            server_key: self.mechanism.hmac(&salted, b"Server Key")?,
        };
        self.cache.insert(key, keys.clone());
        Ok(keys)
    }

    /// Handles the reply to the `saslContinue` carrying the proof (verifying the server signature),
    /// or to the extra empty `saslContinue` older servers ask for.
    pub fn handle_server_final(&mut self, reply: &Document) -> Result<AuthStep> {
        let result = self.server_final_inner(reply);
        match &result {
            Ok(AuthStep::Done) => self.state = ScramState::Done,
            Ok(AuthStep::Send { .. }) => {}
            Err(_) => self.state = ScramState::Failed,
        }
        result
    }

    fn server_final_inner(&mut self, reply: &Document) -> Result<AuthStep> {
        let mech = self.mechanism.as_str();
        match std::mem::replace(&mut self.state, ScramState::Failed) {
            ScramState::ClientFinalSent {
                conversation_id,
                server_signature,
            } => {
                check_ok(reply, mech, false)?;
                let payload = sasl_payload(reply, mech)?;
                let server_final = std::str::from_utf8(&payload).map_err(|_| {
                    Error::authentication(format!("{mech}: the server-final message is not UTF-8"))
                })?;
                let signature = parse_server_final(server_final, mech)?;
                if !constant_time_eq(&signature, &server_signature) {
                    return Err(Error::authentication(format!(
                        "{mech}: the server's signature is wrong (the server does not know the \
                         password)"
                    )));
                }
                if sasl_done(reply, mech)? {
                    return Ok(AuthStep::Done);
                }
                // An older server: one more, empty, round trip.
                let cmd = doc! {
                    "saslContinue": 1,
                    "conversationId": conversation_id,
                    "payload": binary(Vec::new()),
                };
                self.state = ScramState::EmptyExchangeSent;
                Ok(AuthStep::Send {
                    command: cmd,
                    db: self.source.clone(),
                })
            }
            ScramState::EmptyExchangeSent => {
                check_ok(reply, mech, false)?;
                if sasl_done(reply, mech)? {
                    Ok(AuthStep::Done)
                } else {
                    Err(Error::authentication(format!(
                        "{mech}: the server did not finish the conversation after the empty \
                         exchange"
                    )))
                }
            }
            other => {
                self.state = other;
                Err(Error::internal(
                    "SCRAM server-final message handled out of order",
                ))
            }
        }
    }
}

struct ServerFirst {
    nonce: String,
    salt: Vec<u8>,
    iterations: u32,
}

fn parse_server_first(msg: &str, mech: &str) -> Result<ServerFirst> {
    let bad = |what: &str| {
        Error::authentication(format!("{mech}: malformed server-first message: {what}"))
    };
    if msg.starts_with("m=") {
        return Err(bad("mandatory extension not supported"));
    }
    if let Some(e) = msg.strip_prefix("e=") {
        return Err(Error::authentication(format!(
            "{mech}: the server reported an error: {}",
            truncate(e)
        )));
    }
    let mut parts = msg.split(',');
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or_else(|| bad("expected 'r=<nonce>' first"))?;
    let salt = parts
        .next()
        .and_then(|p| p.strip_prefix("s="))
        .ok_or_else(|| bad("expected 's=<salt>' second"))?;
    let iterations = parts
        .next()
        .and_then(|p| p.strip_prefix("i="))
        .ok_or_else(|| bad("expected 'i=<iteration count>' third"))?;
    let salt = B64
        .decode(salt)
        .map_err(|_| bad("the salt is not valid base64"))?;
    if salt.is_empty() {
        return Err(bad("the salt is empty"));
    }
    if !iterations.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the iteration count is not a number"));
    }
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| bad("the iteration count is not a valid number"))?;
    Ok(ServerFirst {
        nonce: nonce.to_string(),
        salt,
        iterations,
    })
}

fn parse_server_final(msg: &str, mech: &str) -> Result<Vec<u8>> {
    if let Some(e) = msg.strip_prefix("e=") {
        return Err(Error::authentication(format!(
            "{mech}: the server reported an error: {}",
            truncate(e)
        )));
    }
    let sig = msg
        .split(',')
        .next()
        .and_then(|p| p.strip_prefix("v="))
        .ok_or_else(|| {
            Error::authentication(format!(
                "{mech}: malformed server-final message: expected 'v=<signature>'"
            ))
        })?;
    B64.decode(sig).map_err(|_| {
        Error::authentication(format!(
            "{mech}: malformed server-final message: the signature is not valid base64"
        ))
    })
}

/// Keeps server-provided text in error messages short.
fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn payload_str(cmd: &Document) -> String {
        match cmd.get("payload") {
            Some(Bson::Binary(b)) => String::from_utf8(b.bytes.clone()).expect("utf8"),
            other => panic!("no binary payload: {other:?}"),
        }
    }

    fn reply(conversation_id: i32, payload: &str, done: bool) -> Document {
        doc! {
            "conversationId": conversation_id,
            "payload": binary(payload.as_bytes().to_vec()),
            "done": done,
            "ok": 1.0,
        }
    }

    fn expect_send(step: AuthStep) -> (Document, String) {
        match step {
            AuthStep::Send { command, db } => (command, db),
            AuthStep::Done => panic!("expected a command, got Done"),
        }
    }

    fn assert_auth_err(r: Result<AuthStep>, needle: &str) {
        match r {
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Authentication { .. }),
                    "not an authentication error: {e}"
                );
                assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
            }
            Ok(step) => panic!("expected an error containing {needle:?}, got {step:?}"),
        }
    }

    const SHA256_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const SHA256_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn sha256_client(cache: ScramCache) -> ScramClient {
        ScramClient::new(
            "user",
            "pencil",
            ScramMechanism::Sha256,
            "admin",
            cache,
            "rOprNGfwEbeRWgbNEkqO",
        )
        .expect("client")
    }

    #[test]
    fn spec_sha256_conversation_short_form() {
        let mut c = sha256_client(ScramCache::new());
        let start = c.client_first();
        assert_eq!(start.get_str("mechanism").ok(), Some("SCRAM-SHA-256"));
        assert_eq!(start.get_i32("saslStart").ok(), Some(1));
        assert_eq!(
            start.get_document("options").ok(),
            Some(&doc! {"skipEmptyExchange": true})
        );
        assert_eq!(payload_str(&start), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");

        let (cont, db) = expect_send(
            c.handle_reply(&reply(1, SHA256_SERVER_FIRST, false))
                .expect("server first"),
        );
        assert_eq!(db, "admin");
        assert_eq!(cont.get_i32("saslContinue").ok(), Some(1));
        assert_eq!(cont.get_i32("conversationId").ok(), Some(1));
        assert_eq!(
            payload_str(&cont),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let step = c
            .handle_reply(&reply(1, SHA256_SERVER_FINAL, true))
            .expect("server final");
        assert_eq!(step, AuthStep::Done);
        assert!(c.is_done());
    }

    #[test]
    fn spec_sha1_conversation_long_form_with_empty_exchange() {
        let mut c = ScramClient::new(
            "user",
            "pencil",
            ScramMechanism::Sha1,
            "test",
            ScramCache::new(),
            "fyko+d2lbbFgONRv9qkxdawL",
        )
        .expect("client");
        let start = c.client_first();
        assert_eq!(payload_str(&start), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let (cont, db) = expect_send(
            c.handle_reply(&reply(
                7,
                "r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,\
                 s=rQ9ZY3MntBeuP3E1TDVC4w==,i=10000",
                false,
            ))
            .expect("server first"),
        );
        assert_eq!(db, "test");
        assert_eq!(cont.get_i32("conversationId").ok(), Some(7));
        assert_eq!(
            payload_str(&cont),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,\
             p=MC2T8BvbmWRckDw8oWl5IVghwCY="
        );
        // An older server: done is false after the signature, so one empty round trip follows.
        let (empty, _) = expect_send(
            c.handle_reply(&reply(7, "v=UMWeI25JD1yNYZRMpZ4VHvhZ9e0=", false))
                .expect("server final"),
        );
        assert_eq!(payload_str(&empty), "");
        assert_eq!(empty.get_i32("conversationId").ok(), Some(7));
        assert!(!c.is_done());
        assert_eq!(
            c.handle_reply(&reply(7, "", true)).expect("last"),
            AuthStep::Done
        );
        assert!(c.is_done());
    }

    #[test]
    fn empty_exchange_must_end_with_done() {
        let mut c = sha256_client(ScramCache::new());
        c.client_first();
        c.handle_reply(&reply(1, SHA256_SERVER_FIRST, false))
            .expect("first");
        c.handle_reply(&reply(1, SHA256_SERVER_FINAL, false))
            .expect("final");
        assert_auth_err(c.handle_reply(&reply(1, "", false)), "did not finish");
    }

    #[test]
    fn speculative_document_has_db() {
        let mut c = sha256_client(ScramCache::new());
        let spec = c.speculative_authenticate();
        assert_eq!(spec.get_str("db").ok(), Some("admin"));
        assert_eq!(spec.get_str("mechanism").ok(), Some("SCRAM-SHA-256"));
        // The hello's speculativeAuthenticate reply has no `ok` field.
        let spec_reply = doc! {
            "conversationId": 1,
            "payload": binary(SHA256_SERVER_FIRST.as_bytes().to_vec()),
            "done": false,
        };
        let (cont, _) = expect_send(c.handle_server_first(&spec_reply).expect("resumes"));
        assert!(payload_str(&cont).ends_with("p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
    }

    #[test]
    fn wrong_password_server_error() {
        let mut c = ScramClient::new(
            "user",
            "wrong",
            ScramMechanism::Sha256,
            "admin",
            ScramCache::new(),
            "rOprNGfwEbeRWgbNEkqO",
        )
        .expect("client");
        c.client_first();
        let (cont, _) = expect_send(
            c.handle_reply(&reply(1, SHA256_SERVER_FIRST, false))
                .expect("first"),
        );
        // A different password gives a different proof.
        assert!(!payload_str(&cont).ends_with("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
        let err_reply = doc! {
            "ok": 0.0,
            "errmsg": "Authentication failed.",
            "code": 18,
            "codeName": "AuthenticationFailed",
        };
        assert_auth_err(c.handle_reply(&err_reply), "Authentication failed.");
        assert_auth_err(c.handle_reply(&err_reply), "already failed");
    }

    #[test]
    fn server_error_on_sasl_start() {
        let mut c = sha256_client(ScramCache::new());
        c.client_first();
        let err_reply =
            doc! {"ok": 0, "errmsg": "no such user", "code": 11, "codeName": "UserNotFound"};
        assert_auth_err(c.handle_reply(&err_reply), "UserNotFound");
    }

    #[test]
    fn wrong_server_signature_is_rejected() {
        let mut c = sha256_client(ScramCache::new());
        c.client_first();
        c.handle_reply(&reply(1, SHA256_SERVER_FIRST, false))
            .expect("first");
        let forged = format!("v={}", B64.encode([0u8; 32]));
        assert_auth_err(c.handle_reply(&reply(1, &forged, true)), "signature");
        assert!(!c.is_done());
    }

    #[test]
    fn server_final_error_attribute() {
        let mut c = sha256_client(ScramCache::new());
        c.client_first();
        c.handle_reply(&reply(1, SHA256_SERVER_FIRST, false))
            .expect("first");
        assert_auth_err(
            c.handle_reply(&reply(1, "e=invalid-proof", true)),
            "invalid-proof",
        );
    }

    #[test]
    fn nonce_must_extend_client_nonce() {
        for server_first in [
            "r=XXXXNGfwEbeRWgbNEkqO%hvYD,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            // Exactly the client nonce: the server added nothing.
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        ] {
            let mut c = sha256_client(ScramCache::new());
            c.client_first();
            assert_auth_err(c.handle_reply(&reply(1, server_first, false)), "nonce");
        }
    }

    #[test]
    fn low_iteration_count_is_rejected_for_both_mechanisms() {
        for mech in [ScramMechanism::Sha1, ScramMechanism::Sha256] {
            let mut c = ScramClient::new("user", "pencil", mech, "admin", ScramCache::new(), "abc")
                .expect("client");
            c.client_first();
            assert_auth_err(
                c.handle_reply(&reply(1, "r=abcdef,s=c2FsdA==,i=4095", false)),
                "iteration count 4095",
            );
        }
    }

    #[test]
    fn done_on_server_first_is_rejected() {
        let mut c = sha256_client(ScramCache::new());
        c.client_first();
        assert_auth_err(c.handle_reply(&reply(1, SHA256_SERVER_FIRST, true)), "done");
    }

    #[test]
    fn malformed_server_first_messages() {
        let cases: &[(&str, &str)] = &[
            ("", "r=<nonce>"),
            (
                "m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=4096",
                "mandatory extension",
            ),
            ("e=other-error", "other-error"),
            ("r=rOprNGfwEbeRWgbNEkqOx", "s=<salt>"),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==", "i=<iteration"),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=!!!,i=4096", "base64"),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096", "salt is empty"),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=-5000", "not a number"),
            (
                "r=rOprNGfwEbeRWgbNEkqOx,s=c2FsdA==,i=99999999999",
                "not a valid number",
            ),
            ("s=c2FsdA==,r=rOprNGfwEbeRWgbNEkqOx,i=4096", "r=<nonce>"),
        ];
        for (msg, needle) in cases {
            let mut c = sha256_client(ScramCache::new());
            c.client_first();
            assert_auth_err(c.handle_reply(&reply(1, msg, false)), needle);
        }
    }

    #[test]
    fn malformed_reply_documents() {
        let cases: Vec<(Document, &str)> = vec![
            (
                doc! {"ok": 1, "done": false, "payload": binary(b"x".to_vec())},
                "conversationId",
            ),
            (
                doc! {"ok": 1, "conversationId": 1, "done": false},
                "payload",
            ),
            (
                doc! {"ok": 1, "conversationId": 1, "done": false, "payload": 5},
                "payload",
            ),
            (
                doc! {"ok": 1, "conversationId": 1, "done": "no", "payload": binary(vec![])},
                "done",
            ),
            (
                doc! {"ok": 1, "conversationId": 1, "done": false, "payload": binary(vec![0xff, 0xfe])},
                "UTF-8",
            ),
            (doc! {"conversationId": 1, "payload": binary(vec![])}, "ok"),
        ];
        for (r, needle) in cases {
            let mut c = sha256_client(ScramCache::new());
            c.client_first();
            // Replies without `ok` are accepted only as speculative replies, so feed via the
            // regular path.
            assert_auth_err(c.handle_reply(&r), needle);
        }
    }

    #[test]
    fn base64_string_payload_is_accepted() {
        let mut c = sha256_client(ScramCache::new());
        c.client_first();
        let r = doc! {
            "conversationId": 1,
            "payload": B64.encode(SHA256_SERVER_FIRST),
            "done": false,
            "ok": 1,
        };
        let (cont, _) = expect_send(c.handle_reply(&r).expect("first"));
        assert!(payload_str(&cont).ends_with("p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
    }

    #[test]
    fn out_of_order_calls_are_errors_not_panics() {
        let mut c = sha256_client(ScramCache::new());
        assert!(c
            .handle_reply(&reply(1, SHA256_SERVER_FIRST, false))
            .is_err());
        assert!(c
            .handle_server_final(&reply(1, SHA256_SERVER_FINAL, true))
            .is_err());
        c.client_first();
        assert!(c
            .handle_server_final(&reply(1, SHA256_SERVER_FINAL, true))
            .is_err());
    }

    #[test]
    fn username_is_escaped_not_prepared() {
        let c = ScramClient::new(
            "a=b,c\u{2168}",
            "pw",
            ScramMechanism::Sha256,
            "admin",
            ScramCache::new(),
            "nonce",
        )
        .expect("client");
        assert_eq!(c.client_first_message(), "n,,n=a=3Db=2Cc\u{2168},r=nonce");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mk = |user: &str, pw: &str, nonce: &str| {
            ScramClient::new(
                user,
                pw,
                ScramMechanism::Sha256,
                "admin",
                ScramCache::new(),
                nonce,
            )
        };
        assert!(mk("", "pw", "n").is_err());
        assert!(mk("u", "pw", "").is_err());
        assert!(mk("u", "pw", "a,b").is_err());
        assert!(mk("u", "bad\u{0007}", "n").is_err());
        // SCRAM-SHA-1 never SASLpreps: the same password is fine there.
        assert!(ScramClient::new(
            "u",
            "bad\u{0007}",
            ScramMechanism::Sha1,
            "admin",
            ScramCache::new(),
            "n"
        )
        .is_ok());
    }

    #[test]
    fn generated_nonces_are_valid_and_distinct() {
        let a = generate_nonce();
        let b = generate_nonce();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        ScramClient::new(
            "u",
            "p",
            ScramMechanism::Sha256,
            "admin",
            ScramCache::new(),
            a,
        )
        .expect("valid nonce");
    }

    /// Runs the spec's SCRAM-SHA-256 exchange with `password` and returns the client-final message.
    fn proof_for(password: &str, cache: &ScramCache) -> String {
        let mut c = ScramClient::new(
            "user",
            password,
            ScramMechanism::Sha256,
            "admin",
            cache.clone(),
            "rOprNGfwEbeRWgbNEkqO",
        )
        .expect("client");
        c.client_first();
        let (cont, _) = expect_send(
            c.handle_reply(&reply(1, SHA256_SERVER_FIRST, false))
                .expect("first"),
        );
        payload_str(&cont)
    }

    #[test]
    fn saslprep_equivalent_passwords_give_the_same_proof() {
        let cache = ScramCache::new();
        let plain = proof_for("IX", &cache);
        assert_eq!(proof_for("I\u{00AD}X", &ScramCache::new()), plain);
        assert_eq!(proof_for("\u{2168}", &ScramCache::new()), plain);
        assert_ne!(proof_for("IV", &ScramCache::new()), plain);
        assert_eq!(
            proof_for("\u{2163}", &ScramCache::new()),
            proof_for("I\u{00AD}V", &ScramCache::new())
        );
    }

    #[test]
    fn cache_is_filled_once_and_reused() {
        let cache = ScramCache::new();
        assert!(cache.is_empty());
        let first = proof_for("pencil", &cache);
        assert_eq!(cache.len(), 1);
        let second = proof_for("pencil", &cache);
        assert_eq!(first, second);
        assert_eq!(cache.len(), 1);
        // Same password but another salt or mechanism is another entry.
        proof_for("other", &cache);
        assert_eq!(cache.len(), 2);
        // The cache really is consulted: poison the entry and the proof changes.
        {
            let mut map = cache.lock();
            for v in map.values_mut() {
                v.client_key = vec![0u8; 32];
            }
        }
        assert_ne!(proof_for("pencil", &cache), first);
        cache.clear();
        assert_eq!(proof_for("pencil", &cache), first);
        assert!(format!("{cache:?}").contains("entries"));
    }

    #[test]
    fn cache_is_bounded() {
        let cache = ScramCache::new();
        for i in 0..(ScramCache::MAX_ENTRIES + 3) {
            cache.insert(
                CacheKey {
                    kdf_password: format!("p{i}"),
                    salt: vec![1],
                    iterations: 4096,
                    mechanism: ScramMechanism::Sha256,
                },
                CachedKeys {
                    client_key: vec![],
                    server_key: vec![],
                },
            );
        }
        assert!(cache.len() <= ScramCache::MAX_ENTRIES);
    }

    #[test]
    fn debug_hides_secrets() {
        let c = ScramClient::new(
            "user",
            "hunter2secret",
            ScramMechanism::Sha256,
            "admin",
            ScramCache::new(),
            "n",
        )
        .expect("client");
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2secret"), "{s}");
    }

    mod vectors {
        use super::*;

        fn specs_root() -> std::path::PathBuf {
            if let Some(p) = std::env::var_os("ANYMONGO_SPECS") {
                return p.into();
            }
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs")
        }

        #[test]
        fn derived_scram_vectors() {
            let path = specs_root().join("derived/scram-vectors.json");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{} unreadable ({e}); set ANYMONGO_SPECS", path.display())
            });
            let json: serde_json::Value = serde_json::from_str(&text).expect("json");
            let vectors = json["vectors"].as_array().expect("vectors array");
            assert!(!vectors.is_empty());
            for v in vectors {
                let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("missing {k}"));
                let mech = match s("mechanism") {
                    "SCRAM-SHA-1" => ScramMechanism::Sha1,
                    "SCRAM-SHA-256" => ScramMechanism::Sha256,
                    other => panic!("unknown mechanism {other}"),
                };
                let mut c = ScramClient::new(
                    s("username"),
                    s("password"),
                    mech,
                    "admin",
                    ScramCache::new(),
                    s("client_nonce"),
                )
                .expect("client");
                let start = c.client_first();
                assert_eq!(payload_str(&start), s("client_first"));
                assert_eq!(B64.encode(payload_str(&start)), s("saslStart_payload_b64"));
                let server_first = B64.decode(s("saslStart_reply_payload_b64")).expect("b64");
                assert_eq!(server_first, s("server_first").as_bytes());
                let (cont, _) = expect_send(
                    c.handle_reply(&doc! {
                        "conversationId": 1,
                        "payload": binary(server_first),
                        "done": false,
                        "ok": 1,
                    })
                    .expect("server first"),
                );
                assert_eq!(payload_str(&cont), s("client_final"));
                assert_eq!(
                    B64.encode(payload_str(&cont)),
                    s("saslContinue_payload_b64")
                );
                let server_final = B64
                    .decode(s("saslContinue_reply_payload_b64"))
                    .expect("b64");
                assert_eq!(server_final, s("server_final").as_bytes());
                let step = c
                    .handle_reply(&doc! {
                        "conversationId": 1,
                        "payload": binary(server_final),
                        "done": true,
                        "ok": 1,
                    })
                    .expect("server final verifies");
                assert_eq!(step, AuthStep::Done, "{}", s("mechanism"));
            }
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn arbitrary_payload() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..80),
                // Near-valid server-first messages.
                (
                    "rOprNGfwEbeRWgbNEkqO[ -~]{0,12}",
                    "[A-Za-z0-9+/=]{0,12}",
                    "[0-9-]{0,4}"
                )
                    .prop_map(|(r, s, i)| format!("r={r},s={s},i={i}").into_bytes()),
                "[a-z]=[ -~]{0,30}(,[ -~]{0,20}){0,4}".prop_map(String::into_bytes),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn malformed_server_payloads_never_panic(
                first in arbitrary_payload(),
                last in arbitrary_payload(),
                done1 in any::<bool>(),
                done2 in any::<bool>(),
            ) {
                let mut c = ScramClient::new(
                    "user", "pencil", ScramMechanism::Sha256, "admin", ScramCache::new(),
                    "rOprNGfwEbeRWgbNEkqO",
                ).expect("client");
                c.client_first();
                let r1 = doc! {"conversationId": 1, "payload": binary(first), "done": done1, "ok": 1};
                if c.handle_reply(&r1).is_ok() {
                    let r2 = doc! {"conversationId": 1, "payload": binary(last), "done": done2, "ok": 1};
                    // A random server-final can never carry the right signature.
                    prop_assert!(c.handle_reply(&r2).is_err());
                    prop_assert!(!c.is_done());
                }
            }

            #[test]
            fn forged_server_final_never_verifies(last in arbitrary_payload(), done in any::<bool>()) {
                static CACHE: std::sync::OnceLock<ScramCache> = std::sync::OnceLock::new();
                let cache = CACHE.get_or_init(ScramCache::new).clone();
                let mut c = sha256_client(cache);
                c.client_first();
                c.handle_reply(&reply(1, SHA256_SERVER_FIRST, false)).expect("valid server-first");
                let r = doc! {"conversationId": 1, "payload": binary(last.clone()), "done": done, "ok": 1};
                let outcome = c.handle_reply(&r);
                if last == SHA256_SERVER_FINAL.as_bytes() {
                    prop_assert!(outcome.is_ok());
                } else {
                    prop_assert!(outcome.is_err());
                    prop_assert!(!c.is_done());
                }
            }
        }
    }
}
