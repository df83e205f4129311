//! Which name servers to ask, and how patiently: [`ResolverConfig`], and the parser of the
//! system's `/etc/resolv.conf` (the file itself is read by the driver, not here).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How the driver's DNS client resolves `mongodb+srv://` names (SRV and TXT records) and, when
/// it names its own servers, host names too.
///
/// The default ([`ResolverConfig::system`]) asks the name servers of `/etc/resolv.conf`, with its
/// `timeout` and `attempts` options, and leaves host names to the runtime's resolver (the
/// system's, which also reads `/etc/hosts`). A configuration that names servers
/// ([`ResolverConfig::with_nameservers`], [`ResolverConfig::cloudflare`], ...) is used for all of
/// the client's DNS: SRV and TXT records, and the A/AAAA records of the hosts it connects to
/// (a host those servers know no address for is then left to the runtime's resolver).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResolverConfig {
    /// The name servers, asked in order; empty means the system's.
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for each name server's answer (a try); `None` means the system's
    /// (`options timeout:n`, default 5 s).
    pub timeout: Option<Duration>,
    /// How many rounds of tries over all name servers; `None` means the system's
    /// (`options attempts:n`, default 2).
    pub attempts: Option<u32>,
}

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// glibc's default per-try timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// glibc's default number of attempts.
pub const DEFAULT_ATTEMPTS: u32 = 2;
/// glibc's caps on `timeout` and `attempts`.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_ATTEMPTS: u32 = 5;

impl ResolverConfig {
    /// The system's configuration (`/etc/resolv.conf`).
    pub fn system() -> Self {
        ResolverConfig::default()
    }

    /// These name servers (on port 53 unless the address says otherwise), with the default
    /// timeout and attempts.
    pub fn with_nameservers(nameservers: impl IntoIterator<Item = SocketAddr>) -> Self {
        ResolverConfig {
            nameservers: nameservers.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Cloudflare's public resolvers (1.1.1.1, 1.0.0.1).
    pub fn cloudflare() -> Self {
        Self::public([[1, 1, 1, 1], [1, 0, 0, 1]])
    }

    /// Google's public resolvers (8.8.8.8, 8.8.4.4).
    pub fn google() -> Self {
        Self::public([[8, 8, 8, 8], [8, 8, 4, 4]])
    }

    /// Quad9's public resolvers (9.9.9.9, 149.112.112.112).
    pub fn quad9() -> Self {
        Self::public([[9, 9, 9, 9], [149, 112, 112, 112]])
    }

    fn public(ips: [[u8; 4]; 2]) -> Self {
        Self::with_nameservers(
            ips.map(|ip| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), DNS_PORT)),
        )
    }

    /// The per-try timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The number of attempts (at least 1).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = Some(attempts);
        self
    }

    /// Whether this configuration names its own servers (and so resolves host names too).
    pub fn has_nameservers(&self) -> bool {
        !self.nameservers.is_empty()
    }

    /// This configuration with what it leaves to the system filled in from `system` (the
    /// parsed `/etc/resolv.conf`), and the defaults for what neither says.
    pub fn resolved_with(&self, system: Option<&ResolverConfig>) -> ResolverConfig {
        let nameservers = if self.nameservers.is_empty() {
            system.map(|s| s.nameservers.clone()).unwrap_or_default()
        } else {
            self.nameservers.clone()
        };
        ResolverConfig {
            nameservers,
            timeout: Some(
                self.timeout
                    .or(system.and_then(|s| s.timeout))
                    .unwrap_or(DEFAULT_TIMEOUT),
            ),
            attempts: Some(
                self.attempts
                    .or(system.and_then(|s| s.attempts))
                    .unwrap_or(DEFAULT_ATTEMPTS)
                    .max(1),
            ),
        }
    }

    /// The per-try timeout in force.
    pub fn effective_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The number of attempts in force (at least 1).
    pub fn effective_attempts(&self) -> u32 {
        self.attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1)
    }
}

/// Parses the text of `/etc/resolv.conf` (resolv.conf(5)): `nameserver` lines (IPv4 or IPv6
/// addresses; scoped IPv6 addresses, which a socket address cannot carry here, are skipped) and
/// the `timeout:n` and `attempts:n` options (capped at 30 and 5, as glibc does). A file without
/// a `nameserver` line means the local server (127.0.0.1), as in glibc. `search`, `domain` and
/// other options do not apply: the driver only asks for fully qualified names. Unknown or
/// malformed lines are ignored, never an error.
pub fn parse_resolv_conf(text: &str) -> ResolverConfig {
    let mut config = ResolverConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    config.nameservers.push(SocketAddr::new(ip, DNS_PORT));
                }
            }
            Some("options") => {
                for option in words {
                    if let Some(n) = option.strip_prefix("timeout:") {
                        if let Ok(n) = n.parse::<u64>() {
                            config.timeout = Some(Duration::from_secs(n.max(1)).min(MAX_TIMEOUT));
                        }
                    } else if let Some(n) = option.strip_prefix("attempts:") {
                        if let Ok(n) = n.parse::<u32>() {
                            config.attempts = Some(n.clamp(1, MAX_ATTEMPTS));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if config.nameservers.is_empty() {
        config
            .nameservers
            .push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers_and_options() {
        let c = parse_resolv_conf(
            "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver  ::1 # v6\n\
             nameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2 timeout:3 attempts:4 rotate\n",
        );
        assert_eq!(
            c.nameservers,
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(c.timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.attempts, Some(4));
    }

    #[test]
    fn caps_defaults_and_an_empty_file() {
        let c = parse_resolv_conf("options timeout:0 attempts:99\noptions timeout:900");
        assert_eq!(c.timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.attempts, Some(5));
        assert_eq!(c.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
        let c = parse_resolv_conf("options timeout:x attempts:-1 timeout:\n\u{0}garbage");
        assert_eq!((c.timeout, c.attempts), (None, None));
    }

    #[test]
    fn explicit_settings_override_the_system() {
        let system = parse_resolv_conf("nameserver 10.0.0.2\noptions timeout:1 attempts:3");
        let c = ResolverConfig::system().resolved_with(Some(&system));
        assert_eq!(c.nameservers, system.nameservers);
        assert_eq!(c.effective_timeout(), Duration::from_secs(1));
        assert_eq!(c.effective_attempts(), 3);

        let mine = ResolverConfig::with_nameservers(["127.0.0.1:5353".parse().unwrap()])
            .timeout(Duration::from_millis(200));
        assert!(mine.has_nameservers());
        let c = mine.resolved_with(Some(&system));
        assert_eq!(c.nameservers, mine.nameservers);
        assert_eq!(c.effective_timeout(), Duration::from_millis(200));
        assert_eq!(c.effective_attempts(), 3);

        let c = ResolverConfig::system().attempts(0).resolved_with(None);
        assert!(c.nameservers.is_empty());
        assert_eq!(c.effective_timeout(), DEFAULT_TIMEOUT);
        assert_eq!(c.effective_attempts(), 1);
        assert_eq!(ResolverConfig::google().nameservers.len(), 2);
    }
}
