//! DNS for `mongodb+srv://`, sans-IO: what a stub resolver sends and how it reads the answers.
//!
//! - [`name`]: domain names on the wire, with compression pointers followed under strict bounds
//!   (a pointer must point backwards, a name is at most 255 bytes), so that no answer can loop
//!   or blow up.
//! - [`message`]: queries (one question, recursion desired) and answers (SRV, TXT, A, AAAA and
//!   CNAME records), every malformed input a typed [`DnsError`].
//! - [`config`]: [`ResolverConfig`] (name servers, per-try timeout, attempts) and the parser of
//!   `/etc/resolv.conf`.
//! - [`lookup`]: [`Lookup`], one question asked of the configured name servers: query ids,
//!   tries and attempts as deadlines computed from the `now` it is given, UDP first and TCP when
//!   an answer comes back truncated, answers checked against the question and the server asked.
//! - [`seedlist`]: the Initial DNS Seedlist Discovery and SRV polling rules: the parent-domain
//!   check of SRV targets, `srvMaxHosts`, the TXT record's options, the rescan interval.
//!
//! The driver (`anymongo-core`) drives [`Lookup`] over its runtime's UDP and TCP sockets.

pub mod config;
pub mod lookup;
pub mod message;
pub mod name;
pub mod seedlist;

use std::fmt;
use std::time::Duration;

pub use config::{parse_resolv_conf, ResolverConfig};
pub use lookup::{Answer, Lookup, Transmit};
pub use message::{RData, Record, Response};

/// The record types the driver asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// An IPv4 address.
    A,
    /// An IPv6 address.
    Aaaa,
    /// A service location (RFC 2782).
    Srv,
    /// Text strings.
    Txt,
}

impl RecordType {
    /// The type's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Aaaa => 28,
            RecordType::Srv => 33,
            RecordType::Txt => 16,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Srv => "SRV",
            RecordType::Txt => "TXT",
        })
    }
}

/// One SRV record: where an instance of a service listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SrvRecord {
    /// The target host name, as the server sent it (lowercased, without the trailing dot).
    pub target: String,
    pub port: u16,
    /// Ignored by the driver (the seedlist spec says so), kept for completeness.
    pub priority: u16,
    /// Ignored by the driver, kept for completeness.
    pub weight: u16,
    /// Time to live, in seconds.
    pub ttl: u32,
}

/// One TXT record: its character strings, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxtRecord {
    pub strings: Vec<Vec<u8>>,
    /// Time to live, in seconds.
    pub ttl: u32,
}

/// Why a DNS lookup failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsError {
    /// The name cannot be asked for (an empty label, a label over 63 bytes, a name over 255
    /// bytes on the wire).
    InvalidName { name: String, reason: String },
    /// The name does not exist (NXDOMAIN), or has no record of the type asked for.
    NotFound {
        name: String,
        record_type: RecordType,
        /// Whether the server said the name does not exist at all (NXDOMAIN).
        nxdomain: bool,
    },
    /// Every name server failed to answer the question (SERVFAIL, REFUSED, ...); `rcode` is
    /// the last server's response code.
    ServerFailure { name: String, rcode: u8 },
    /// An answer was not a valid DNS message, or not an answer to the question asked.
    Malformed { reason: String },
    /// No usable answer arrived within the configured timeouts and attempts.
    Timeout {
        name: String,
        /// How long the lookup tried.
        after: Duration,
        /// Answers that came back with the wrong id, from the wrong address or for another
        /// question, and were ignored.
        ignored: u32,
    },
    /// A socket error talking to the name servers (the last one met).
    Io { message: String },
    /// No name server is configured.
    NoNameservers,
    /// A failure of a resolver plugged in by the application.
    Other { message: String },
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::InvalidName { name, reason } => {
                write!(f, "invalid DNS name '{name}': {reason}")
            }
            DnsError::NotFound {
                name,
                record_type,
                nxdomain: true,
            } => write!(
                f,
                "no {record_type} record for '{name}': the name does not exist"
            ),
            DnsError::NotFound {
                name, record_type, ..
            } => write!(f, "no {record_type} record for '{name}'"),
            DnsError::ServerFailure { name, rcode } => write!(
                f,
                "the name servers failed to answer for '{name}' (response code {rcode}: {})",
                message::rcode_name(*rcode)
            ),
            DnsError::Malformed { reason } => write!(f, "malformed DNS answer: {reason}"),
            DnsError::Timeout {
                name,
                after,
                ignored,
            } => {
                write!(f, "no DNS answer for '{name}' within {after:?}")?;
                if *ignored > 0 {
                    write!(
                        f,
                        " ({ignored} answer(s) ignored: wrong id, sender or question)"
                    )?;
                }
                Ok(())
            }
            DnsError::Io { message } => write!(f, "DNS socket error: {message}"),
            DnsError::NoNameservers => f.write_str(
                "no DNS name server is configured (no nameserver in /etc/resolv.conf): give \
                 the client a ResolverConfig",
            ),
            DnsError::Other { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for DnsError {}

impl DnsError {
    /// A failure of an application's own resolver.
    pub fn other(message: impl Into<String>) -> Self {
        DnsError::Other {
            message: message.into(),
        }
    }

    /// A malformed answer.
    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        DnsError::Malformed {
            reason: reason.into(),
        }
    }
}

impl From<DnsError> for crate::Error {
    fn from(e: DnsError) -> Self {
        crate::Error::dns_resolve(e.to_string())
    }
}
