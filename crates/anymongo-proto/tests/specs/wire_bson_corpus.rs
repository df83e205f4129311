//! The BSON corpus as a cross-check of document validation: every valid document passes
//! `wire::validate_document` and round-trips as an OP_MSG body; every `decodeErrors` document is
//! rejected, both alone and as an OP_MSG reply body (where the wire decoder checks the framing
//! and the reply's reader, `conn::handshake::to_document`, the contents: a reply is validated
//! once, where it is read).
//!
//! Suite name: `wire-bson-corpus`. Cases: `wire-bson-corpus/<file>/<valid|decodeErrors>: <description>`.
//! (`parseErrors` are about extended JSON and string parsing, not wire bytes: not run here.)

use std::path::Path;

use anymongo_proto::bson::RawDocumentBuf;
use anymongo_proto::wire::raw::to_document;
use anymongo_proto::wire::{encode, validate_document, Body, Decoder, Message, OpMsg};
use anymongo_proto::ErrorKind;

use anymongo_proto::testing::specs::{read_json, skip_reason, Outcome, Report};

const SUITE: &str = "wire-bson-corpus";

/// Cases not run, with the reason. None so far: the raw validation rejects every `decodeErrors`
/// case of the corpus.
const SKIPS: &[(&str, &str)] = &[];

pub fn run(root: &Path, report: &mut Report) {
    let dir = root.join("bson-corpus/tests");
    for (stem, file) in report.files(SUITE, &dir) {
        let json = match read_json(&file) {
            Ok(j) => j,
            Err(e) => {
                report.case(&format!("{SUITE}/{stem}/load"), || Outcome::Fail(e));
                continue;
            }
        };
        for case in json["valid"].as_array().into_iter().flatten() {
            let name = format!(
                "{SUITE}/{stem}/valid: {}",
                case["description"].as_str().unwrap_or("?")
            );
            let hexes: Vec<String> = ["canonical_bson", "degenerate_bson"]
                .iter()
                .filter_map(|k| case[*k].as_str().map(str::to_string))
                .collect();
            report.case(&name, || {
                if let Some(why) = skip_reason(SKIPS, &name) {
                    return Outcome::Skip(why);
                }
                for hex in &hexes {
                    if let Err(e) = check_valid(hex) {
                        return Outcome::Fail(e);
                    }
                }
                Outcome::Pass
            });
        }
        for case in json["decodeErrors"].as_array().into_iter().flatten() {
            let name = format!(
                "{SUITE}/{stem}/decodeErrors: {}",
                case["description"].as_str().unwrap_or("?")
            );
            let hex = case["bson"].as_str().unwrap_or_default().to_string();
            report.case(&name, || {
                if let Some(why) = skip_reason(SKIPS, &name) {
                    return Outcome::Skip(why);
                }
                match check_invalid(&hex) {
                    Ok(()) => Outcome::Pass,
                    Err(e) => Outcome::Fail(e),
                }
            });
        }
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("odd-length hex {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex: {e}")))
        .collect()
}

fn check_valid(hex: &str) -> Result<(), String> {
    let bytes = unhex(hex)?;
    validate_document(&bytes).map_err(|e| format!("valid document rejected: {e}"))?;
    let body = RawDocumentBuf::from_bytes(bytes).map_err(|e| e.to_string())?;
    let msg = Message::new(1, Body::Msg(OpMsg::new(body)));
    let mut wire = Vec::new();
    encode(&msg, None, &mut wire).map_err(|e| e.to_string())?;
    let mut d = Decoder::new(anymongo_proto::wire::DEFAULT_MAX_MESSAGE_SIZE);
    d.feed(&wire);
    match d.decode() {
        Ok(Some(got)) if got == msg => Ok(()),
        other => Err(format!("OP_MSG round trip gave {other:?}")),
    }
}

fn check_invalid(hex: &str) -> Result<(), String> {
    let bytes = unhex(hex)?;
    if validate_document(&bytes).is_ok() {
        return Err("invalid document accepted by validate_document".to_string());
    }
    // The same bytes as the kind-0 section of an OP_MSG.
    let mut wire = Vec::new();
    let len = (16 + 4 + 1 + bytes.len()) as i32;
    for v in [len, 1, 0, 2013] {
        wire.extend_from_slice(&v.to_le_bytes());
    }
    wire.extend_from_slice(&0u32.to_le_bytes());
    wire.push(0);
    wire.extend_from_slice(&bytes);
    let mut d = Decoder::new(anymongo_proto::wire::DEFAULT_MAX_MESSAGE_SIZE);
    d.feed(&wire);
    let body = match d.decode() {
        Err(_) => return Ok(()),
        Ok(Some(Message {
            body: Body::Msg(msg),
            ..
        })) => msg.body,
        Ok(other) => return Err(format!("an OP_MSG decoded as {other:?}")),
    };
    // The framing was right: reading the reply must reject it.
    match to_document(&body) {
        Err(e) if matches!(e.kind(), ErrorKind::InvalidResponse { .. }) => Ok(()),
        Err(e) => Err(format!("reading the invalid reply gave {e:?}")),
        Ok(doc) => Err(format!("invalid reply body read as {doc:?}")),
    }
}
