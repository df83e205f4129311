//! Write commands (`insert`, `update`, `delete`) sent as OP_MSG document sequences and split into
//! batches that respect the server's `maxWriteBatchSize` and `maxMessageSizeBytes`.

use bson::{doc, Bson, Document, RawDocumentBuf};

use super::{error_labels, get_i64, Command, Operation};
use crate::error::{Error, Result, WriteConcernError, WriteError};
use crate::operation::StreamDescription;
use crate::wire::DocumentSequenceRef;

/// Room kept for the command body and framing when filling a message with statements.
const MESSAGE_OVERHEAD: usize = 16 * 1024;

/// Which write command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Insert,
    Update,
    Delete,
}

impl WriteKind {
    fn command_name(self) -> &'static str {
        match self {
            WriteKind::Insert => "insert",
            WriteKind::Update => "update",
            WriteKind::Delete => "delete",
        }
    }

    fn sequence_identifier(self) -> &'static str {
        match self {
            WriteKind::Insert => "documents",
            WriteKind::Update => "updates",
            WriteKind::Delete => "deletes",
        }
    }
}

/// An `insert`, `update` or `delete` of many statements, sent in as many batches as needed.
#[derive(Debug, Clone)]
pub struct WriteCommand {
    pub db: String,
    pub collection: String,
    pub kind: WriteKind,
    /// The documents (insert) or statements (update/delete), already serialized.
    pub statements: Vec<RawDocumentBuf>,
    pub ordered: bool,
    /// Extra command fields: writeConcern, bypassDocumentValidation, comment, let. The first
    /// [`build`](Operation::build) moves them into the command body, which every batch reuses.
    pub options: Document,
    /// Send unacknowledged (`w: 0`): `moreToCome`, no reply.
    pub unacknowledged: bool,
    offset: usize,
    batch_end: usize,
    /// The command body without its statements, put together by the first build.
    body: Option<Document>,
}

/// What one batch of a write reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    /// `n`: documents inserted / matched / deleted.
    pub n: i64,
    /// `nModified` (update).
    pub n_modified: i64,
    /// `upserted`: (statement index, `_id`).
    pub upserted: Vec<(usize, Bson)>,
    /// Write errors, with indexes relative to the whole write.
    pub write_errors: Vec<WriteError>,
    pub write_concern_error: Option<WriteConcernError>,
    /// The statement range of this batch.
    pub range: std::ops::Range<usize>,
}

impl WriteCommand {
    /// A write of `statements` into `db.collection`.
    pub fn new(
        kind: WriteKind,
        db: impl Into<String>,
        collection: impl Into<String>,
        statements: Vec<RawDocumentBuf>,
        ordered: bool,
        options: Document,
    ) -> Self {
        WriteCommand {
            db: db.into(),
            collection: collection.into(),
            kind,
            statements,
            ordered,
            options,
            unacknowledged: false,
            offset: 0,
            batch_end: 0,
            body: None,
        }
    }

    /// Whether statements remain to be sent.
    pub fn has_more(&self) -> bool {
        self.offset < self.statements.len()
    }

    /// Skips the rest (an ordered write stops at its first error).
    pub fn abandon(&mut self) {
        self.offset = self.statements.len();
    }
}

impl Operation for WriteCommand {
    type Output = WriteOutcome;

    fn name(&self) -> &str {
        self.kind.command_name()
    }

    fn build(&mut self, description: &StreamDescription) -> Result<Command<'_>> {
        if self.statements.is_empty() {
            return Err(Error::invalid_argument(format!(
                "{} requires at least one document",
                self.kind.command_name()
            )));
        }
        let max_count = description.max_write_batch_size.max(1) as usize;
        let max_doc = description.max_bson_object_size.max(1) as usize;
        // The first statement always goes (it alone is bounded by maxBsonObjectSize).
        let max_bytes =
            (description.max_message_size_bytes.max(1) as usize).saturating_sub(MESSAGE_OVERHEAD);
        let mut end = self.offset;
        let mut bytes = 0usize;
        while end < self.statements.len() && end - self.offset < max_count {
            let len = self.statements[end].as_bytes().len();
            // Inserted documents are bounded by maxBsonObjectSize; update/delete statements
            // carry a little framing on top (the server allows 16 KiB extra).
            let limit = match self.kind {
                WriteKind::Insert => max_doc,
                _ => max_doc + 16 * 1024,
            };
            if len > limit {
                return Err(Error::invalid_argument(format!(
                    "document at index {end} is {len} bytes, over the server's maximum of {max_doc}"
                )));
            }
            if end > self.offset && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            end += 1;
        }
        self.batch_end = end;
        let body = self.body.get_or_insert_with(|| {
            let mut body = doc! {
                self.kind.command_name(): self.collection.as_str(),
                "ordered": self.ordered,
            };
            body.extend(std::mem::take(&mut self.options));
            body
        });
        let mut command = Command::borrowed(&self.db, body);
        command.sequences.push(DocumentSequenceRef {
            identifier: self.kind.sequence_identifier(),
            documents: &self.statements[self.offset..end],
        });
        command.more_to_come = self.unacknowledged;
        Ok(command)
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<WriteOutcome> {
        let range = self.offset..self.batch_end;
        self.offset = self.batch_end;
        if self.unacknowledged {
            return Ok(WriteOutcome {
                range,
                ..Default::default()
            });
        }
        // Validates the reply (the wire decoder only checked its framing).
        let reply = crate::wire::raw::to_document(&response)?;
        parse_write_reply(&reply, &response, range)
    }
}

fn parse_write_reply(
    reply: &Document,
    raw: &RawDocumentBuf,
    range: std::ops::Range<usize>,
) -> Result<WriteOutcome> {
    let base = range.start;
    let int = |d: &Document, key: &str| -> Option<i64> {
        match d.get(key)? {
            Bson::Int32(v) => Some(i64::from(*v)),
            Bson::Int64(v) => Some(*v),
            Bson::Double(v) => Some(*v as i64),
            _ => None,
        }
    };
    let mut outcome = WriteOutcome {
        n: get_i64(raw, "n").unwrap_or(0),
        n_modified: get_i64(raw, "nModified").unwrap_or(0),
        range,
        ..Default::default()
    };
    if let Ok(upserted) = reply.get_array("upserted") {
        for entry in upserted {
            let entry = entry
                .as_document()
                .ok_or_else(|| Error::invalid_response("an 'upserted' entry is not a document"))?;
            let index = int(entry, "index")
                .ok_or_else(|| Error::invalid_response("an 'upserted' entry has no index"))?;
            let id = entry.get("_id").cloned().unwrap_or(Bson::Null);
            outcome.upserted.push((base + index.max(0) as usize, id));
        }
    }
    if let Ok(errors) = reply.get_array("writeErrors") {
        for entry in errors {
            let entry = entry.as_document().ok_or_else(|| {
                Error::invalid_response("a 'writeErrors' entry is not a document")
            })?;
            let index = int(entry, "index").unwrap_or(0).max(0) as usize;
            outcome.write_errors.push(WriteError {
                index: base + index,
                code: int(entry, "code").unwrap_or(0) as i32,
                code_name: entry.get_str("codeName").ok().map(str::to_string),
                message: entry.get_str("errmsg").unwrap_or("").to_string(),
                details: entry.get_document("errInfo").ok().cloned(),
            });
        }
    }
    if let Ok(wce) = reply.get_document("writeConcernError") {
        outcome.write_concern_error = Some(WriteConcernError {
            code: int(wce, "code").unwrap_or(0) as i32,
            code_name: wce.get_str("codeName").unwrap_or("").to_string(),
            message: wce.get_str("errmsg").unwrap_or("").to_string(),
            details: wce.get_document("errInfo").ok().cloned(),
            labels: error_labels(raw),
        });
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(max_batch: i64, max_msg: i64) -> StreamDescription {
        let reply = doc! {
            "ok": 1, "minWireVersion": 0, "maxWireVersion": 21,
            "maxWriteBatchSize": max_batch, "maxMessageSizeBytes": max_msg,
            "maxBsonObjectSize": 16 * 1024 * 1024,
        };
        StreamDescription::from_reply(&reply, &[]).unwrap()
    }

    fn docs(n: usize, pad: usize) -> Vec<RawDocumentBuf> {
        (0..n)
            .map(|i| {
                RawDocumentBuf::try_from(&doc! { "_id": i as i32, "pad": "x".repeat(pad) }).unwrap()
            })
            .collect()
    }

    #[test]
    fn splits_at_max_write_batch_size() {
        let desc = description(3, 48_000_000);
        let mut op = WriteCommand::new(
            WriteKind::Insert,
            "db",
            "c",
            docs(7, 1),
            true,
            doc! { "writeConcern": { "w": 1 }, "comment": "c" },
        );
        let all = docs(7, 1);
        let mut sizes = Vec::new();
        let mut start = 0;
        while op.has_more() {
            let cmd = op.build(&desc).unwrap();
            // Every batch carries the whole body and borrows its slice of the documents.
            assert_eq!(
                *cmd.body,
                doc! { "insert": "c", "ordered": true, "writeConcern": { "w": 1 }, "comment": "c" }
            );
            assert_eq!(cmd.name(), "insert");
            assert_eq!(cmd.sequences[0].identifier, "documents");
            let n = cmd.sequences[0].documents.len();
            assert_eq!(cmd.sequences[0].documents, &all[start..start + n]);
            start += n;
            sizes.push(n);
            let reply = RawDocumentBuf::try_from(&doc! { "ok": 1, "n": 1 }).unwrap();
            op.handle_response(reply, &desc).unwrap();
        }
        assert_eq!(sizes, vec![3, 3, 1]);
    }

    #[test]
    fn splits_at_max_message_size() {
        // Each document is ~10 KiB; a 64 KiB message minus overhead holds a few of them.
        let desc = description(100_000, 64 * 1024);
        let mut op = WriteCommand::new(
            WriteKind::Insert,
            "db",
            "c",
            docs(20, 10_000),
            false,
            Document::new(),
        );
        let mut total = 0;
        while op.has_more() {
            let cmd = op.build(&desc).unwrap();
            let bytes: usize = cmd.sequences[0]
                .documents
                .iter()
                .map(|d| d.as_bytes().len())
                .sum();
            assert!(bytes <= 64 * 1024, "{bytes}");
            total += cmd.sequences[0].documents.len();
            let reply = RawDocumentBuf::try_from(&doc! { "ok": 1, "n": 1 }).unwrap();
            op.handle_response(reply, &desc).unwrap();
        }
        assert_eq!(total, 20);
    }

    #[test]
    fn write_errors_are_indexed_across_batches() {
        let desc = description(2, 48_000_000);
        let mut op = WriteCommand::new(
            WriteKind::Insert,
            "db",
            "c",
            docs(4, 1),
            false,
            Document::new(),
        );
        op.build(&desc).unwrap();
        op.handle_response(
            RawDocumentBuf::try_from(&doc! { "ok": 1, "n": 2 }).unwrap(),
            &desc,
        )
        .unwrap();
        op.build(&desc).unwrap();
        let reply = doc! { "ok": 1, "n": 1, "writeErrors": [
            { "index": 1, "code": 11000, "errmsg": "E11000 duplicate key" }
        ], "writeConcernError": { "code": 64, "codeName": "WriteConcernFailed", "errmsg": "timeout" } };
        let out = op
            .handle_response(RawDocumentBuf::try_from(&reply).unwrap(), &desc)
            .unwrap();
        assert_eq!(out.write_errors[0].index, 3);
        assert_eq!(out.write_errors[0].code, 11000);
        assert_eq!(out.write_concern_error.unwrap().code, 64);
        assert!(!op.has_more());
    }

    #[test]
    fn oversized_document_is_an_invalid_argument() {
        let reply =
            doc! { "ok": 1, "minWireVersion": 0, "maxWireVersion": 21, "maxBsonObjectSize": 100 };
        let desc = StreamDescription::from_reply(&reply, &[]).unwrap();
        let mut op = WriteCommand::new(
            WriteKind::Insert,
            "db",
            "c",
            docs(1, 500),
            true,
            Document::new(),
        );
        assert!(op.build(&desc).is_err());
    }
}
