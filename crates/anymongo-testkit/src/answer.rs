//! A command's reply before it is encoded: a plain document, or a cursor batch whose documents are
//! already encoded (the store's own bytes, shared), so a read never re-encodes what it serves.

use std::sync::Arc;

use bson::{doc, Bson, Document, RawDocumentBuf};

/// A reply on its way out.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// Any reply.
    Doc(Document),
    /// `{cursor: {firstBatch|nextBatch: [...], id, ns}, <extra>, ok: 1}`.
    Cursor(CursorReply),
}

/// A successful cursor reply whose batch is made of encoded documents.
#[derive(Debug, Clone)]
pub(crate) struct CursorReply {
    /// `true` for `firstBatch` (find, aggregate, ...), `false` for `nextBatch` (getMore).
    pub(crate) first: bool,
    pub(crate) docs: Vec<Arc<RawDocumentBuf>>,
    pub(crate) id: i64,
    pub(crate) ns: String,
    /// Top-level fields between `cursor` and `ok` (a replica-set member's `$clusterTime`).
    pub(crate) extra: Document,
}

impl From<Document> for Answer {
    fn from(d: Document) -> Self {
        Answer::Doc(d)
    }
}

impl CursorReply {
    fn batch_key(&self) -> &'static str {
        if self.first {
            "firstBatch"
        } else {
            "nextBatch"
        }
    }

    /// The same reply as a [`Document`] (decodes the batch).
    pub(crate) fn to_document(&self) -> Document {
        let batch: Vec<Bson> = self
            .docs
            .iter()
            .map(|raw| match Document::try_from(raw.as_ref().as_ref()) {
                Ok(d) => Bson::Document(d),
                // The store only holds documents it encoded or validated when they were stored.
                Err(_) => Bson::Document(Document::new()),
            })
            .collect();
        let mut d = doc! {
            "cursor": { self.batch_key(): batch, "id": self.id, "ns": self.ns.clone() },
        };
        for (k, v) in &self.extra {
            d.insert(k.clone(), v.clone());
        }
        d.insert("ok", 1.0);
        d
    }

    /// Encodes the reply, appending each batch document's bytes as they are.
    /// `None` when it does not fit in a BSON document (over 2 GiB).
    pub(crate) fn encode(&self) -> Option<RawDocumentBuf> {
        let docs_len: usize = self.docs.iter().map(|d| d.as_bytes().len() + 8).sum();
        let mut out = Vec::with_capacity(docs_len + self.ns.len() + 96);
        out.extend_from_slice(&[0; 4]);
        out.push(0x03);
        out.extend_from_slice(b"cursor\0");
        let cursor_start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(0x04);
        out.extend_from_slice(self.batch_key().as_bytes());
        out.push(0);
        let array_start = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut index = itoa_buf::Index::default();
        for d in &self.docs {
            out.push(0x03);
            out.extend_from_slice(index.next_key());
            out.push(0);
            out.extend_from_slice(d.as_bytes());
        }
        out.push(0);
        patch_len(&mut out, array_start)?;
        out.push(0x12);
        out.extend_from_slice(b"id\0");
        out.extend_from_slice(&self.id.to_le_bytes());
        out.push(0x02);
        out.extend_from_slice(b"ns\0");
        let ns_len = i32::try_from(self.ns.len() + 1).ok()?;
        out.extend_from_slice(&ns_len.to_le_bytes());
        out.extend_from_slice(self.ns.as_bytes());
        out.push(0);
        out.push(0);
        patch_len(&mut out, cursor_start)?;
        if !self.extra.is_empty() {
            let extra = self.extra.to_vec().ok()?;
            // The elements, without the length prefix and the trailing NUL.
            out.extend_from_slice(extra.get(4..extra.len().checked_sub(1)?)?);
        }
        out.push(0x01);
        out.extend_from_slice(b"ok\0");
        out.extend_from_slice(&1.0_f64.to_le_bytes());
        out.push(0);
        patch_len(&mut out, 0)?;
        RawDocumentBuf::from_bytes(out).ok()
    }
}

/// Writes the length of the document that starts at `start` and ends at the end of `out`.
fn patch_len(out: &mut [u8], start: usize) -> Option<()> {
    let len = i32::try_from(out.len().checked_sub(start)?).ok()?;
    out.get_mut(start..start + 4)?
        .copy_from_slice(&len.to_le_bytes());
    Some(())
}

/// Array keys "0", "1", ... without formatting machinery.
mod itoa_buf {
    /// The next array index, as decimal ASCII.
    #[derive(Debug, Default)]
    pub(super) struct Index {
        digits: Vec<u8>,
    }

    impl Index {
        /// The key for the next element: "0" first, then "1", "2", ...
        pub(super) fn next_key(&mut self) -> &[u8] {
            if self.digits.is_empty() {
                self.digits.push(b'0');
                return &self.digits;
            }
            let mut i = self.digits.len();
            loop {
                if i == 0 {
                    self.digits.insert(0, b'1');
                    break;
                }
                i -= 1;
                match self.digits.get_mut(i) {
                    Some(d) if *d == b'9' => *d = b'0',
                    Some(d) => {
                        *d += 1;
                        break;
                    }
                    None => break,
                }
            }
            &self.digits
        }
    }
}

impl Answer {
    /// The reply as a document to change (a cursor reply is decoded first).
    pub(crate) fn doc_mut(&mut self) -> &mut Document {
        if let Answer::Cursor(c) = self {
            *self = Answer::Doc(c.to_document());
        }
        match self {
            Answer::Doc(d) => d,
            Answer::Cursor(_) => unreachable!("converted above"),
        }
    }

    /// The reply as a document.
    #[cfg(test)]
    pub(crate) fn into_document(self) -> Document {
        match self {
            Answer::Doc(d) => d,
            Answer::Cursor(c) => c.to_document(),
        }
    }

    /// Whether the top level has `key`.
    pub(crate) fn contains_key(&self, key: &str) -> bool {
        match self {
            Answer::Doc(d) => d.contains_key(key),
            Answer::Cursor(c) => matches!(key, "cursor" | "ok") || c.extra.contains_key(key),
        }
    }

    /// Whether `ok` is 1.
    pub(crate) fn is_ok(&self) -> bool {
        match self {
            Answer::Doc(d) => d
                .get("ok")
                .and_then(crate::store::as_f64)
                .is_some_and(|v| v == 1.0),
            Answer::Cursor(_) => true,
        }
    }

    /// `cursor.id`, when there is one.
    pub(crate) fn cursor_id(&self) -> Option<i64> {
        match self {
            Answer::Doc(d) => d.get_document("cursor").and_then(|c| c.get_i64("id")).ok(),
            Answer::Cursor(c) => Some(c.id),
        }
    }

    /// Encodes the reply; `None` when it cannot be (too large, or not encodable).
    pub(crate) fn encode(&self) -> Option<RawDocumentBuf> {
        match self {
            Answer::Doc(d) => RawDocumentBuf::try_from(d).ok(),
            Answer::Cursor(c) => c.encode(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(d: Document) -> Arc<RawDocumentBuf> {
        Arc::new(RawDocumentBuf::try_from(&d).unwrap())
    }

    #[test]
    fn cursor_reply_bytes_equal_the_document_encoding() {
        let docs: Vec<_> = (0..23)
            .map(|i| raw(doc! { "_id": i, "s": "x".repeat(i as usize) }))
            .collect();
        for (first, extra) in [
            (true, Document::new()),
            (
                false,
                doc! { "operationTime": 5_i64, "$clusterTime": { "t": 1 } },
            ),
        ] {
            let c = CursorReply {
                first,
                docs: docs.clone(),
                id: 1234,
                ns: "db.coll".into(),
                extra,
            };
            let expected = RawDocumentBuf::try_from(&c.to_document()).unwrap();
            assert_eq!(c.encode().unwrap().as_bytes(), expected.as_bytes());
            let d = c.to_document();
            let batch = d
                .get_document("cursor")
                .unwrap()
                .get_array(if first { "firstBatch" } else { "nextBatch" })
                .unwrap();
            assert_eq!(batch.len(), 23);
            assert_eq!(d.keys().last().map(String::as_str), Some("ok"));
        }
        let empty = CursorReply {
            first: true,
            docs: Vec::new(),
            id: 0,
            ns: String::new(),
            extra: Document::new(),
        };
        assert_eq!(
            empty.encode().unwrap().as_bytes(),
            RawDocumentBuf::try_from(&empty.to_document())
                .unwrap()
                .as_bytes()
        );
    }

    #[test]
    fn array_keys_count_up() {
        let mut i = itoa_buf::Index::default();
        let keys: Vec<String> = (0..1001)
            .map(|_| String::from_utf8(i.next_key().to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (0..1001).map(|n| n.to_string()).collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn answers_report_ok_cursor_and_keys() {
        let mut a = Answer::Cursor(CursorReply {
            first: false,
            docs: vec![raw(doc! { "_id": 1 })],
            id: 7,
            ns: "d.c".into(),
            extra: Document::new(),
        });
        assert!(a.is_ok() && a.contains_key("cursor") && !a.contains_key("$clusterTime"));
        assert_eq!(a.cursor_id(), Some(7));
        a.doc_mut().insert("x", 1);
        assert!(matches!(a, Answer::Doc(_)));
        assert_eq!(a.cursor_id(), Some(7));
        let d = a.into_document();
        assert_eq!(
            d.get_document("cursor")
                .unwrap()
                .get_array("nextBatch")
                .unwrap(),
            &vec![Bson::Document(doc! { "_id": 1 })]
        );
        let e: Answer = doc! { "ok": 0.0 }.into();
        assert!(!e.is_ok() && e.cursor_id().is_none());
    }
}
