//! Auth spec connection string tests (`auth/tests/legacy/*.json`): `valid` and the resulting
//! `credential` (username, password, source, mechanism and a subset match of
//! mechanism_properties, including the per-mechanism defaults).

use std::path::Path;

use anymongo_proto::uri;
use serde_json::Value;

use crate::connection_string::json_eq;
use anymongo_proto::testing::specs::{Outcome, Report};

/// Cases whose expectation the auth spec itself has withdrawn.
const SKIPS: &[(&str, &str)] = &[
    (
        "should use username and password if specified (MONGODB-AWS)",
        "stale upstream case: DRIVERS-3131 (auth spec changelog 2025-09-30) removed MONGODB-AWS \
         credentials from the URI and the same file requires 'user:pass@...?authMechanism=\
         MONGODB-AWS' to be an error; we follow the spec and reject it",
    ),
    (
        "should use username, password and session token if specified (MONGODB-AWS)",
        "stale upstream case: DRIVERS-3131 removed URI credentials and AWS_SESSION_TOKEN for \
         MONGODB-AWS; the same file requires AWS_SESSION_TOKEN in the URI to be an error",
    ),
];

pub fn run(root: &Path, report: &mut Report) {
    report.described_tests("auth", &root.join("auth/tests/legacy"), SKIPS, check);
}

fn check(t: &Value) -> Outcome {
    let uri_str = t["uri"].as_str().unwrap_or("");
    let valid = t["valid"].as_bool().unwrap_or(true);
    let parsed = match (valid, uri::parse(uri_str)) {
        (false, Err(_)) => return Outcome::Pass,
        (false, Ok(p)) => {
            return Outcome::Fail(format!("expected an error, got {:?}", p.options.credential))
        }
        (true, Err(e)) => return Outcome::Fail(format!("expected success, got {e}")),
        (true, Ok(p)) => p,
    };
    let expected = &t["credential"];
    let Some(cred) = parsed.options.credential.as_ref() else {
        return if expected.is_null() {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("expected credential {expected}, got none"))
        };
    };
    let Some(expected) = expected.as_object() else {
        return Outcome::Fail(format!("expected no credential, got {cred:?}"));
    };
    let strings = [
        ("username", cred.username.clone()),
        ("password", cred.password.clone()),
        ("source", cred.source.clone()),
        ("mechanism", cred.mechanism.map(|m| m.as_str().to_string())),
    ];
    for (key, got) in strings {
        let Some(want) = expected.get(key) else {
            continue;
        };
        if want.as_str() != got.as_deref() {
            // Never print the password itself.
            let shown = if key == "password" {
                format!("{:?}", got.as_ref().map(|_| "<set>"))
            } else {
                format!("{got:?}")
            };
            return Outcome::Fail(format!("credential.{key}: expected {want}, got {shown}"));
        }
    }
    if let Some(want) = expected.get("mechanism_properties") {
        let got = cred
            .mechanism_properties
            .as_ref()
            .map(|d| serde_json::to_value(d).unwrap_or(Value::Null));
        match (want.as_object(), got) {
            (None, None) => {}
            (None, Some(g)) => {
                return Outcome::Fail(format!("expected no mechanism_properties, got {g}"))
            }
            (Some(w), g) => {
                let g = g.unwrap_or(Value::Null);
                for (k, v) in w {
                    if !g.get(k).is_some_and(|x| json_eq(v, x)) {
                        return Outcome::Fail(format!(
                            "mechanism_properties.{k}: expected {v}, got {g}"
                        ));
                    }
                }
            }
        }
    }
    Outcome::Pass
}
