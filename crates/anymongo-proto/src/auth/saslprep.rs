//! SASLprep (RFC 4013) of SCRAM-SHA-256 passwords.
//!
//! Only passwords are prepared, and only for SCRAM-SHA-256: the auth spec forbids preparing user
//! names (the server looks users up by their raw name) and SCRAM-SHA-1 input (it is a hex digest).

use std::borrow::Cow;

use crate::error::{Error, Result};

/// Prepares `password` with SASLprep: maps non-ASCII spaces to a space, deletes "mapped to nothing"
/// characters (such as U+00AD SOFT HYPHEN), normalizes to NFKC (so U+2163 ROMAN NUMERAL FOUR becomes
/// "IV") and rejects prohibited characters and bad bidirectional text.
///
/// Errors are [`crate::ErrorKind::Authentication`]; the message never contains the password.
pub fn saslprep(password: &str) -> Result<Cow<'_, str>> {
    stringprep::saslprep(password).map_err(|e| {
        // The library's message quotes the offending character; keep the password out of errors.
        let text = e.to_string();
        let reason = if text.starts_with("prohibited character") {
            "it contains a prohibited character".to_string()
        } else {
            text
        };
        Error::authentication(format!(
            "the password cannot be prepared with SASLprep for SCRAM-SHA-256: {reason}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn ascii_is_unchanged_and_borrowed() {
        let out = saslprep("pencil").expect("prepares");
        assert_eq!(out, "pencil");
        assert!(matches!(out, Cow::Borrowed(_)));
    }

    #[test]
    fn auth_spec_step4_forms() {
        // User "IX": password forms "IX" and "I\u{00AD}X" both prepare to "IX".
        assert_eq!(saslprep("IX").expect("ok"), "IX");
        assert_eq!(saslprep("I\u{00AD}X").expect("ok"), "IX");
        // User "\u{2168}" has password "\u{2163}" (ROMAN NUMERAL FOUR), which prepares to "IV";
        // the forms "IV" and "I\u{00AD}V" must authenticate too.
        assert_eq!(saslprep("\u{2163}").expect("ok"), "IV");
        assert_eq!(saslprep("IV").expect("ok"), "IV");
        assert_eq!(saslprep("I\u{00AD}V").expect("ok"), "IV");
        // ROMAN NUMERAL NINE itself normalizes to "IX" (usernames are never prepared, though).
        assert_eq!(saslprep("\u{2168}").expect("ok"), "IX");
    }

    #[test]
    fn rfc4013_examples() {
        // Non-ASCII space maps to SPACE; ordinary letters are kept.
        assert_eq!(saslprep("a\u{00A0}b").expect("ok"), "a b");
        // U+00AA FEMININE ORDINAL INDICATOR → "a" (NFKC).
        assert_eq!(saslprep("\u{00AA}").expect("ok"), "a");
        // Prohibited: control character U+0007.
        let err = saslprep("\u{0007}").expect_err("prohibited");
        assert!(matches!(err.kind(), ErrorKind::Authentication { .. }));
        // Bidi violation: RandALCat followed by LCat.
        assert!(saslprep("\u{0627}\u{0031}").is_err());
    }

    #[test]
    fn error_message_does_not_leak_password() {
        let err = saslprep("sec\u{0007}ret").expect_err("prohibited");
        let text = err.to_string();
        assert!(
            !text.contains("sec") && !text.contains('\u{0007}'),
            "{text}"
        );
    }
}
