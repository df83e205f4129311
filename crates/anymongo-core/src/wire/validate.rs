//! Full structural validation of BSON documents.

use bson::raw::{RawBsonRef, RawDocument, RawIter};

use super::WireError;

/// Checks that `bytes` is exactly one valid BSON document: its declared length equals
/// `bytes.len()`, and every element, recursively, parses (types, lengths, terminators, UTF-8 of
/// keys and strings, nested documents, arrays and code-with-scope scopes).
///
/// The walk uses an explicit stack, so arbitrarily deep nesting cannot overflow the call stack.
pub fn validate_document(bytes: &[u8]) -> Result<(), WireError> {
    let doc = RawDocument::from_bytes(bytes).map_err(bson_err)?;
    let mut stack: Vec<RawIter<'_>> = Vec::new();
    stack.push(doc.iter_elements());
    while let Some(iter) = stack.last_mut() {
        let Some(next) = iter.next() else {
            stack.pop();
            continue;
        };
        let element = next.map_err(bson_err)?;
        match element.value().map_err(bson_err)? {
            RawBsonRef::Document(d) => stack.push(d.iter_elements()),
            RawBsonRef::Array(a) => stack.push(a.iter_elements()),
            RawBsonRef::JavaScriptCodeWithScope(c) => stack.push(c.scope.iter_elements()),
            _ => {}
        }
    }
    Ok(())
}

fn bson_err(e: bson::error::Error) -> WireError {
    WireError::InvalidBson(e.to_string())
}
