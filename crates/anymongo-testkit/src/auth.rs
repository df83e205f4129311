//! The server side of authentication: SCRAM-SHA-1, SCRAM-SHA-256 (RFC 5802 / 7677 as MongoDB
//! profiles them) and PLAIN. Pure functions and a small conversation machine; the server wires them
//! to `saslStart` / `saslContinue` / `speculativeAuthenticate`.

use anymongo_proto::options::AuthMechanism;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use crate::error::CommandError;

/// A user the fake server knows.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    /// User name.
    pub name: String,
    /// The database the user is defined in (the client's `authSource`).
    pub db: String,
    /// Clear-text password.
    pub password: String,
    /// Mechanisms the user may authenticate with (listed in `saslSupportedMechs`).
    pub mechanisms: Vec<AuthMechanism>,
}

impl User {
    /// A user allowed to use SCRAM-SHA-1 and SCRAM-SHA-256.
    pub fn new(name: &str, db: &str, password: &str) -> Self {
        User {
            name: name.to_string(),
            db: db.to_string(),
            password: password.to_string(),
            mechanisms: vec![AuthMechanism::ScramSha1, AuthMechanism::ScramSha256],
        }
    }

    /// Replaces the allowed mechanisms.
    pub fn with_mechanisms(mut self, mechanisms: &[AuthMechanism]) -> Self {
        self.mechanisms = mechanisms.to_vec();
        self
    }
}

/// Which SCRAM hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SCRAM-SHA-1 (password input is `hex(md5("user:mongo:pass"))`).
    Sha1,
    /// SCRAM-SHA-256 (password input is the SASLprep'd password).
    Sha256,
}

impl ScramHash {
    /// The mechanism for a name, if it is a SCRAM one.
    pub fn from_mechanism(m: AuthMechanism) -> Option<Self> {
        match m {
            AuthMechanism::ScramSha1 => Some(ScramHash::Sha1),
            AuthMechanism::ScramSha256 => Some(ScramHash::Sha256),
            _ => None,
        }
    }

    /// mongod's default iteration count: the `scramIterationCount` server parameter (10,000) for
    /// SCRAM-SHA-1, `scramSHA256IterationCount` (15,000) for SCRAM-SHA-256.
    pub fn default_iterations(self) -> u32 {
        match self {
            ScramHash::Sha1 => 10_000,
            ScramHash::Sha256 => 15_000,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => match Hmac::<Sha1>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
            ScramHash::Sha256 => match Hmac::<Sha256>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// The PBKDF2 input for `user`'s password.
    pub fn password_input(self, username: &str, password: &str) -> Result<String, CommandError> {
        match self {
            ScramHash::Sha1 => {
                let digest = Md5::digest(format!("{username}:mongo:{password}").as_bytes());
                Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
            }
            ScramHash::Sha256 => stringprep::saslprep(password)
                .map(|c| c.into_owned())
                .map_err(|_| CommandError::bad_value("password is not valid under SASLprep")),
        }
    }

    /// `Hi(password, salt, i)`.
    pub fn salted_password(self, input: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(input.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(input.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// The parsed client-first message.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientFirst {
    /// The user name (decoded from `=2C` / `=3D`).
    pub username: String,
    /// The client nonce.
    pub nonce: String,
    /// `client-first-message-bare`.
    pub bare: String,
}

fn sasl_name_decode(s: &str) -> Result<String, CommandError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '=' {
            out.push(c);
            continue;
        }
        match (chars.next(), chars.next()) {
            (Some('2'), Some('C')) => out.push(','),
            (Some('3'), Some('D')) => out.push('='),
            _ => return Err(CommandError::bad_value("invalid escape in SCRAM user name")),
        }
    }
    Ok(out)
}

/// Parses `gs2-header client-first-message-bare`.
pub fn parse_client_first(payload: &[u8]) -> Result<ClientFirst, CommandError> {
    let s = std::str::from_utf8(payload)
        .map_err(|_| CommandError::bad_value("SCRAM payload is not UTF-8"))?;
    let bare = if let Some(rest) = s.strip_prefix("n,").or_else(|| s.strip_prefix("y,")) {
        // Optional authzid, then ','.
        match rest.split_once(',') {
            Some((authz, bare)) if authz.is_empty() || authz.starts_with("a=") => bare,
            _ => return Err(CommandError::bad_value("malformed SCRAM gs2 header")),
        }
    } else {
        return Err(CommandError::bad_value(
            "SCRAM channel binding is not supported",
        ));
    };
    let mut username = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            username = Some(sasl_name_decode(v)?);
        } else if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v.to_string());
        } else if attr.starts_with("m=") {
            return Err(CommandError::bad_value(
                "SCRAM extensions are not supported",
            ));
        }
    }
    match (username, nonce) {
        (Some(username), Some(nonce)) if !nonce.is_empty() => Ok(ClientFirst {
            username,
            nonce,
            bare: bare.to_string(),
        }),
        _ => Err(CommandError::bad_value(
            "SCRAM client-first message lacks n= or r=",
        )),
    }
}

/// One server-side SCRAM conversation after the server-first message was sent.
#[derive(Clone, Debug)]
pub struct ScramServer {
    hash: ScramHash,
    username: String,
    auth_prefix: String,
    combined_nonce: String,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramServer {
    /// Starts a conversation: returns the machine and the server-first message.
    /// `salted` is `Hi(password input, salt, iterations)` for the user.
    pub fn start(
        hash: ScramHash,
        first: &ClientFirst,
        salted: &[u8],
        salt: &[u8],
        iterations: u32,
        server_nonce: &str,
    ) -> (Self, String) {
        let combined_nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first = format!("r={combined_nonce},s={},i={iterations}", B64.encode(salt));
        let client_key = hash.hmac(salted, b"Client Key");
        let machine = ScramServer {
            hash,
            username: first.username.clone(),
            auth_prefix: format!("{},{}", first.bare, server_first),
            combined_nonce,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(salted, b"Server Key"),
        };
        (machine, server_first)
    }

    /// The user being authenticated.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Verifies the client-final message and returns the server-final message
    /// (`v=<signature>`). With `corrupt_signature` the signature is deliberately wrong.
    pub fn finish(&self, payload: &[u8], corrupt_signature: bool) -> Result<String, CommandError> {
        let s = std::str::from_utf8(payload).map_err(|_| CommandError::auth_failed())?;
        let (without_proof, proof_b64) =
            s.rsplit_once(",p=").ok_or_else(CommandError::auth_failed)?;
        let mut channel_ok = false;
        let mut nonce_ok = false;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                // Base64 of the gs2 header without channel binding: "n,," or "y,,".
                channel_ok = c == "biws" || c == "eSws";
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce_ok = r == self.combined_nonce;
            }
        }
        if !channel_ok || !nonce_ok {
            return Err(CommandError::auth_failed());
        }
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| CommandError::auth_failed())?;
        let auth_message = format!("{},{}", self.auth_prefix, without_proof);
        let client_signature = self.hash.hmac(&self.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(CommandError::auth_failed());
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if self.hash.hash(&client_key) != self.stored_key {
            return Err(CommandError::auth_failed());
        }
        let mut server_signature = self.hash.hmac(&self.server_key, auth_message.as_bytes());
        if corrupt_signature {
            if let Some(b) = server_signature.first_mut() {
                *b ^= 0xff;
            }
        }
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// Parses a PLAIN payload `[authzid] NUL authcid NUL passwd` into (user, password).
pub fn parse_plain(payload: &[u8]) -> Result<(String, String), CommandError> {
    let mut parts = payload.split(|b| *b == 0);
    let (_authz, user, pass) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(u), Some(p), None) => (a, u, p),
        _ => return Err(CommandError::auth_failed()),
    };
    let user = String::from_utf8(user.to_vec()).map_err(|_| CommandError::auth_failed())?;
    let pass = String::from_utf8(pass.to_vec()).map_err(|_| CommandError::auth_failed())?;
    Ok((user, pass))
}

/// A fresh random server nonce (24 random bytes, base64).
pub fn server_nonce() -> String {
    let bytes: [u8; 24] = rand::random();
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        let root = std::env::var("ANYMONGO_SPECS").unwrap_or_else(|_| "/work/shared/specs".into());
        let text = std::fs::read_to_string(format!("{root}/derived/scram-vectors.json"))
            .expect("scram-vectors.json is readable");
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        v["vectors"].as_array().cloned().expect("vectors array")
    }

    fn s<'a>(v: &'a Value, k: &str) -> &'a str {
        v[k].as_str().expect("string field")
    }

    #[test]
    fn spec_vectors_server_side() {
        let vs = vectors();
        assert_eq!(vs.len(), 2);
        for v in vs {
            let hash = match s(&v, "mechanism") {
                "SCRAM-SHA-1" => ScramHash::Sha1,
                _ => ScramHash::Sha256,
            };
            let start = B64.decode(s(&v, "saslStart_payload_b64")).unwrap();
            assert_eq!(start, s(&v, "client_first").as_bytes());
            let first = parse_client_first(&start).unwrap();
            assert_eq!(first.username, s(&v, "username"));
            assert_eq!(first.nonce, s(&v, "client_nonce"));
            // Take the server nonce, salt and iteration count from the vector's server-first.
            let sf = s(&v, "server_first");
            let mut combined = "";
            let mut salt = Vec::new();
            let mut iters = 0;
            for attr in sf.split(',') {
                if let Some(r) = attr.strip_prefix("r=") {
                    combined = r;
                } else if let Some(x) = attr.strip_prefix("s=") {
                    salt = B64.decode(x).unwrap();
                } else if let Some(i) = attr.strip_prefix("i=") {
                    iters = i.parse().unwrap();
                }
            }
            let server_nonce = &combined[first.nonce.len()..];
            let input = hash
                .password_input(s(&v, "username"), s(&v, "password"))
                .unwrap();
            let salted = hash.salted_password(&input, &salt, iters);
            let (machine, server_first) =
                ScramServer::start(hash, &first, &salted, &salt, iters, server_nonce);
            assert_eq!(server_first, sf);
            assert_eq!(
                B64.encode(server_first.as_bytes()),
                s(&v, "saslStart_reply_payload_b64")
            );
            let cont = B64.decode(s(&v, "saslContinue_payload_b64")).unwrap();
            let server_final = machine.finish(&cont, false).unwrap();
            assert_eq!(server_final, s(&v, "server_final"));
            assert_eq!(
                B64.encode(server_final.as_bytes()),
                s(&v, "saslContinue_reply_payload_b64")
            );
            // The corrupted signature differs.
            assert_ne!(machine.finish(&cont, true).unwrap(), server_final);
            // A wrong password gives a proof the server rejects with code 18.
            let input = hash.password_input(s(&v, "username"), "wrong").unwrap();
            let salted = hash.salted_password(&input, &salt, iters);
            let (machine, _) =
                ScramServer::start(hash, &first, &salted, &salt, iters, server_nonce);
            let err = machine.finish(&cont, false).unwrap_err();
            assert_eq!(
                (err.code, err.code_name.as_str(), err.errmsg.as_str()),
                (18, "AuthenticationFailed", "Authentication failed.")
            );
        }
    }

    #[test]
    fn client_first_parsing() {
        let f = parse_client_first(b"n,,n=a=2Cb=3Dc,r=xyz").unwrap();
        assert_eq!(f.username, "a,b=c");
        assert_eq!(f.bare, "n=a=2Cb=3Dc,r=xyz");
        assert!(parse_client_first(b"p=tls-unique,,n=u,r=x").is_err());
        assert!(parse_client_first(b"n,,n=u").is_err());
        assert!(parse_client_first(b"n,,n=u=ZZ,r=x").is_err());
        assert!(parse_client_first(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn tampered_nonce_fails() {
        let first = parse_client_first(b"n,,n=user,r=abc").unwrap();
        let salted = ScramHash::Sha256.salted_password("pencil", b"salt", 4096);
        let (m, _) = ScramServer::start(ScramHash::Sha256, &first, &salted, b"salt", 4096, "srv");
        assert_eq!(
            m.finish(b"c=biws,r=abcOTHER,p=AAAA", false)
                .unwrap_err()
                .code,
            18
        );
        assert_eq!(m.finish(b"garbage", false).unwrap_err().code, 18);
    }

    #[test]
    fn plain_payload() {
        assert_eq!(parse_plain(b"\0u\0p").unwrap(), ("u".into(), "p".into()));
        assert!(parse_plain(b"u\0p").is_err());
    }
}
