//! `testkit-serve`: starts the testkit in each of its configurations on 127.0.0.1 so that a
//! client that is not ours (CI's PyMongo check, `ci/testkit-check/`) can hold it to mongod's
//! behaviour.
//!
//! It prints one JSON line naming each configuration's connection string, then reads control
//! lines from stdin until stdin closes (then it shuts every server down and exits):
//!
//! * `kill <set> <member>` / `revive <set> <member>`: stop / restart a replica-set member;
//! * `step_down <set>`: no primary until `elect`; `elect <set> <member>`: a new primary;
//!
//! each answered by one line, `ok` or `error: <why>`. `<set>` is `rs` or `rs_degraded`.
//!
//! Configurations: `plain` (standalone), `auth` (users below), `tls` (its CA file in `tls_ca`),
//! `compression` (snappy, zlib, zstd), `failpoints` (a standalone for fail point checks), `rs`
//! (a three-member replica set `rs0`, member 0 primary) and `rs_degraded` (set `rsd`, three
//! members of which member 2 is down, for write concern checks).
//!
//! Users of `auth`: `alice`/`alice-pw` (admin, SCRAM-SHA-1 and SCRAM-SHA-256),
//! `sha1only`/`sha1-pw` (admin, SCRAM-SHA-1), `sha256only`/`sha256-pw` (admin, SCRAM-SHA-256),
//! `plainuser`/`plain-pw` (`$external`, PLAIN).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;

use anymongo_proto::options::{AuthMechanism, Compressor};
use anymongo_testkit::{FakeServer, ReplicaSet, TlsIdentity, User};

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Running {
    servers: Vec<FakeServer>,
    sets: BTreeMap<&'static str, ReplicaSet>,
    uris: BTreeMap<&'static str, String>,
}

fn start() -> std::io::Result<Running> {
    let mut uris = BTreeMap::new();
    let mut servers = Vec::new();

    let plain = FakeServer::builder().try_start()?;
    uris.insert("plain", plain.uri());
    servers.push(plain);

    let auth = FakeServer::builder()
        .users([
            User::new("alice", "admin", "alice-pw"),
            User::new("sha1only", "admin", "sha1-pw").with_mechanisms(&[AuthMechanism::ScramSha1]),
            User::new("sha256only", "admin", "sha256-pw")
                .with_mechanisms(&[AuthMechanism::ScramSha256]),
            User::new("plainuser", "$external", "plain-pw")
                .with_mechanisms(&[AuthMechanism::Plain]),
        ])
        .try_start()?;
    uris.insert("auth", auth.uri());
    servers.push(auth);

    let identity = TlsIdentity::generate()?;
    uris.insert("tls_ca", identity.ca_path.display().to_string());
    let tls = FakeServer::builder().tls(identity).try_start()?;
    uris.insert("tls", tls.uri());
    servers.push(tls);

    let compression = FakeServer::builder()
        .compressors(&[
            Compressor::Snappy,
            Compressor::Zlib { level: None },
            Compressor::Zstd,
        ])
        .try_start()?;
    uris.insert("compression", compression.uri());
    servers.push(compression);

    let failpoints = FakeServer::builder().try_start()?;
    uris.insert("failpoints", failpoints.uri());
    servers.push(failpoints);

    let mut sets = BTreeMap::new();
    let rs = ReplicaSet::try_start_with(3, "rs0", |_, b| b)?;
    uris.insert("rs", rs.uri());
    sets.insert("rs", rs);
    let degraded = ReplicaSet::try_start_with(3, "rsd", |_, b| b)?;
    degraded.kill(2);
    uris.insert("rs_degraded", degraded.uri());
    sets.insert("rs_degraded", degraded);

    Ok(Running {
        servers,
        sets,
        uris,
    })
}

fn control(running: &Running, line: &str) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let set = |name: &str| {
        running
            .sets
            .get(name)
            .ok_or_else(|| format!("no replica set '{name}'"))
    };
    let member = |s: &str| s.parse::<usize>().map_err(|_| format!("bad member '{s}'"));
    match words.as_slice() {
        ["kill", s, m] => {
            set(s)?.kill(member(m)?);
            Ok(())
        }
        ["revive", s, m] => set(s)?.revive(member(m)?).map_err(|e| e.to_string()),
        ["step_down", s] => {
            set(s)?.step_down();
            Ok(())
        }
        ["elect", s, m] => {
            let rs = set(s)?;
            let m = member(m)?;
            if m >= rs.hosts().len() {
                return Err(format!("no member {m}"));
            }
            rs.elect(m);
            Ok(())
        }
        _ => Err(format!("unknown control line '{line}'")),
    }
}

fn main() -> ExitCode {
    let running = match start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("testkit-serve: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fields: Vec<String> = running
        .uris
        .iter()
        .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
        .collect();
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{{{}}}", fields.join(", "))
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match control(&running, line.trim()) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    drop(running.servers);
    drop(running.sets);
    ExitCode::SUCCESS
}
