//! Domain names on the wire (RFC 1035 §3.1, §4.1.4).
//!
//! A name is a sequence of labels (a length byte, 1-63 bytes), ended by a zero byte or by a
//! compression pointer (two bytes, top bits `11`) to an earlier place in the message. Decoding
//! follows pointers under two rules that make every input terminate: a pointer must point before
//! the start of the stretch of labels it ends (so the stretches start ever earlier), and the name
//! may not exceed 255 bytes. Names are handled as lowercase ASCII without the final dot; labels
//! with bytes outside printable ASCII, or with a dot inside, are refused as malformed.

use super::DnsError;

/// The longest name on the wire, length bytes and final zero included (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 255;
/// The longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// Appends `name` (dot-separated, an optional final dot) in wire form, uncompressed.
pub fn encode(name: &str, out: &mut Vec<u8>) -> Result<(), DnsError> {
    let invalid = |reason: &str| DnsError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(invalid("the name is empty"));
    }
    let start = out.len();
    for label in trimmed.split('.') {
        if label.is_empty() {
            out.truncate(start);
            return Err(invalid("empty label"));
        }
        if label.len() > MAX_LABEL_LEN {
            out.truncate(start);
            return Err(invalid("a label is longer than 63 bytes"));
        }
        if !label.bytes().all(is_name_byte) {
            out.truncate(start);
            return Err(invalid("a label has a character outside printable ASCII"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > MAX_NAME_LEN {
        out.truncate(start);
        return Err(invalid("the name is longer than 255 bytes"));
    }
    Ok(())
}

/// Bytes allowed in a label: printable ASCII except the dot.
fn is_name_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'.'
}

/// Reads the name at `offset` of `msg`, following compression pointers. Returns the name
/// (lowercase, dot-separated, no final dot; `""` for the root) and the offset just after the
/// name where it started (after its first pointer, if any).
pub fn decode(msg: &[u8], offset: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    // Wire length of the name so far (the final zero byte counted from the start).
    let mut wire_len = 1usize;
    let mut pos = offset;
    // Where the stretch of labels being read started: a pointer must point before it.
    let mut stretch_start = offset;
    let mut end = None;
    loop {
        let Some(&len) = msg.get(pos) else {
            return Err(DnsError::malformed(
                "a name runs past the end of the message",
            ));
        };
        match len >> 6 {
            0b00 => {
                if len == 0 {
                    let after = end.unwrap_or(pos + 1);
                    return Ok((name, after));
                }
                let len = usize::from(len);
                wire_len += len + 1;
                if wire_len > MAX_NAME_LEN {
                    return Err(DnsError::malformed("a name is longer than 255 bytes"));
                }
                let Some(label) = msg.get(pos + 1..pos + 1 + len) else {
                    return Err(DnsError::malformed(
                        "a label runs past the end of the message",
                    ));
                };
                if !label.iter().all(|b| is_name_byte(*b)) {
                    return Err(DnsError::malformed(
                        "a name has a character outside printable ASCII",
                    ));
                }
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
                pos += 1 + len;
            }
            0b11 => {
                let Some(&low) = msg.get(pos + 1) else {
                    return Err(DnsError::malformed(
                        "a compression pointer runs past the end of the message",
                    ));
                };
                let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                if target >= stretch_start {
                    return Err(DnsError::malformed(
                        "a compression pointer does not point backwards (a loop)",
                    ));
                }
                end.get_or_insert(pos + 2);
                pos = target;
                stretch_start = target;
            }
            _ => {
                return Err(DnsError::malformed(
                    "a label type other than a length or a pointer",
                ))
            }
        }
    }
}

/// `name` lowercased, without a final dot: the form names are compared in.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode(name, &mut out).expect("valid name");
        out
    }

    #[test]
    fn encodes_labels_and_the_root() {
        assert_eq!(enc("a.bc"), b"\x01a\x02bc\x00");
        assert_eq!(enc("a.bc."), b"\x01a\x02bc\x00");
        let mut out = vec![9];
        for bad in ["", ".", "a..b", ".a", "a b", "a\u{e9}"] {
            assert!(encode(bad, &mut out).is_err(), "{bad:?}");
            assert_eq!(out, [9], "a refused name leaves the buffer as it was");
        }
        assert!(encode(&"x".repeat(63), &mut out).is_ok());
        assert!(encode(&"x".repeat(64), &mut out).is_err());
        // 4 labels of 63 bytes need 4 * 64 + 1 = 257 bytes: too long.
        let long = vec!["y".repeat(63); 4].join(".");
        assert!(matches!(
            encode(&long, &mut Vec::new()),
            Err(DnsError::InvalidName { .. })
        ));
        let ok = [
            "y".repeat(63),
            "y".repeat(63),
            "y".repeat(63),
            "y".repeat(61),
        ]
        .join(".");
        assert_eq!(enc(&ok).len(), 255);
    }

    #[test]
    fn decodes_with_pointers_and_lowercases() {
        // "Foo.Example" at 0, then "www" + pointer to 4 ("example").
        let mut msg = enc("Foo.Example");
        let www = msg.len();
        msg.extend_from_slice(b"\x03www\xc0\x04");
        assert_eq!(decode(&msg, 0).unwrap(), ("foo.example".to_string(), www));
        assert_eq!(
            decode(&msg, www).unwrap(),
            ("www.example".to_string(), msg.len())
        );
        // The root.
        assert_eq!(decode(b"\x00", 0).unwrap(), (String::new(), 1));
    }

    #[test]
    fn refuses_loops_forward_pointers_and_overruns() {
        // A pointer to itself.
        assert!(decode(b"\xc0\x00", 0).is_err());
        // A forward pointer.
        assert!(decode(b"\xc0\x02\x00", 0).is_err());
        // Labels, then a pointer back to their own start: a loop.
        let msg = b"\x01a\xc0\x00";
        assert!(matches!(decode(msg, 0), Err(DnsError::Malformed { .. })));
        // Two stretches pointing at each other: 0: "a" -> 4; 4: "b" -> 0.
        let msg = b"\x01a\xc0\x04\x01b\xc0\x00";
        assert!(decode(msg, 4).is_err());
        assert!(decode(msg, 0).is_err());
        // Truncations.
        assert!(decode(b"\x05abc", 0).is_err());
        assert!(decode(b"\x01a", 0).is_err());
        assert!(decode(b"\xc0", 0).is_err());
        assert!(decode(b"", 0).is_err());
        // Reserved label types.
        assert!(decode(b"\x40\x00", 0).is_err());
        assert!(decode(b"\x80\x00", 0).is_err());
        // Bytes that have no place in a host name.
        assert!(decode(b"\x01.\x00", 0).is_err());
        assert!(decode(b"\x01\x00\x00", 0).is_err());
    }

    #[test]
    fn a_chain_of_pointers_is_bounded_by_the_name_length() {
        // Each stretch is a 63-byte label then a pointer to the previous stretch: the name
        // grows past 255 bytes before the chain ends, whatever its length.
        let mut msg = vec![0u8];
        let mut prev = 0usize;
        for _ in 0..10 {
            let here = msg.len();
            msg.push(63);
            msg.extend(std::iter::repeat_n(b'z', 63));
            msg.push(0xc0 | (prev >> 8) as u8);
            msg.push(prev as u8);
            prev = here;
        }
        assert!(decode(&msg, prev).is_err());
    }

    proptest! {
        #[test]
        fn every_input_terminates_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            offset in 0usize..600,
        ) {
            if let Ok((name, after)) = decode(&bytes, offset) {
                prop_assert!(after > offset && after <= bytes.len());
                prop_assert!(name.len() < MAX_NAME_LEN);
            }
        }

        #[test]
        fn encoded_names_decode_to_themselves(
            labels in proptest::collection::vec("[a-zA-Z0-9_-]{1,20}", 1..8),
        ) {
            let name = labels.join(".");
            let bytes = enc(&name);
            prop_assert_eq!(decode(&bytes, 0).unwrap(), (name.to_ascii_lowercase(), bytes.len()));
        }
    }
}
