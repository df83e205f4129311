//! Commands that open or continue cursors: `find`, `getMore`, `killCursors`, and the parsing of
//! the `cursor` sub-document every cursor-returning command replies with.

use std::collections::VecDeque;
use std::time::Duration;

use bson::{doc, Bson, Document, RawArray, RawDocumentBuf};

use super::{get_i64, Command, Operation};
use crate::conn::StreamDescription;
use crate::error::{Error, Result};
use crate::options::ReadPreference;

/// The `cursor` sub-document of a reply: its id, namespace and first (or next) batch.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorInfo {
    /// The server's cursor id; 0 means the cursor is exhausted.
    pub id: i64,
    /// The namespace `db.collection` the cursor iterates.
    pub ns: String,
    /// The documents of this batch.
    pub batch: VecDeque<RawDocumentBuf>,
    /// `postBatchResumeToken`, for change streams.
    pub post_batch_resume_token: Option<RawDocumentBuf>,
}

impl CursorInfo {
    /// Parses `{cursor: {id, ns, firstBatch|nextBatch}}`.
    pub fn parse(reply: &RawDocumentBuf) -> Result<Self> {
        let cursor = reply
            .get_document("cursor")
            .map_err(|_| Error::invalid_response("reply has no 'cursor' document"))?;
        let id = get_i64(cursor, "id")
            .ok_or_else(|| Error::invalid_response("cursor has no numeric 'id'"))?;
        let ns = cursor.get_str("ns").unwrap_or("").to_string();
        let batch: &RawArray = cursor
            .get_array("firstBatch")
            .or_else(|_| cursor.get_array("nextBatch"))
            .map_err(|_| Error::invalid_response("cursor has no 'firstBatch' or 'nextBatch'"))?;
        let mut docs = VecDeque::new();
        for item in batch {
            let item = item.map_err(|e| Error::invalid_response(format!("bad batch: {e}")))?;
            let doc = item
                .as_document()
                .ok_or_else(|| Error::invalid_response("a batch entry is not a document"))?;
            docs.push_back(doc.to_owned());
        }
        let post_batch_resume_token = cursor
            .get_document("postBatchResumeToken")
            .ok()
            .map(|d| d.to_owned());
        Ok(CursorInfo {
            id,
            ns,
            batch: docs,
            post_batch_resume_token,
        })
    }
}

/// Splits `db.collection` (the collection may contain dots).
pub fn split_namespace(ns: &str) -> Option<(&str, &str)> {
    ns.split_once('.')
}

/// The `find` command.
#[derive(Debug, Clone, Default)]
pub struct Find {
    pub db: String,
    pub collection: String,
    /// The query filter. The first [`build`](Operation::build) moves it into the command body
    /// (kept for a retry), leaving an empty document here.
    pub filter: Document,
    /// Options as command fields: sort, projection, skip, limit, batchSize, hint, collation,
    /// comment, maxTimeMS, allowDiskUse, let, singleBatch, tailable, awaitData, ...
    /// Moved into the command body by the first build, like `filter`.
    pub options: Document,
    pub read_preference: Option<ReadPreference>,
    /// The command body, put together by the first build.
    body: Option<Document>,
}

impl Find {
    /// A `find` of `filter` in `db.collection`, with `options` as command fields.
    pub fn new(
        db: impl Into<String>,
        collection: impl Into<String>,
        filter: Document,
        options: Document,
        read_preference: Option<ReadPreference>,
    ) -> Self {
        Find {
            db: db.into(),
            collection: collection.into(),
            filter,
            options,
            read_preference,
            body: None,
        }
    }
}

impl Find {
    /// A `find` whose whole command body (`find`, `filter`, then the options) is already put
    /// together; `filter` and `options` stay empty.
    pub(crate) fn from_body(
        db: impl Into<String>,
        collection: impl Into<String>,
        body: Document,
        read_preference: Option<ReadPreference>,
    ) -> Self {
        Find {
            body: Some(body),
            ..Find::new(
                db,
                collection,
                Document::new(),
                Document::new(),
                read_preference,
            )
        }
    }
}

impl Operation for Find {
    type Output = CursorInfo;

    fn name(&self) -> &str {
        "find"
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        let body = self.body.get_or_insert_with(|| {
            let mut body = doc! {
                "find": self.collection.as_str(),
                "filter": std::mem::take(&mut self.filter),
            };
            body.extend(std::mem::take(&mut self.options));
            body
        });
        Ok(Command::borrowed(&self.db, body))
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<CursorInfo> {
        CursorInfo::parse(&response)
    }

    fn read_preference(&self) -> Option<&ReadPreference> {
        self.read_preference.as_ref()
    }
}

/// The `getMore` command.
#[derive(Debug, Clone)]
pub struct GetMore {
    pub db: String,
    pub collection: String,
    pub cursor_id: i64,
    pub batch_size: Option<u32>,
    pub max_time: Option<Duration>,
    pub comment: Option<Bson>,
}

impl Operation for GetMore {
    type Output = CursorInfo;

    fn name(&self) -> &str {
        "getMore"
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        let mut body = doc! { "getMore": self.cursor_id, "collection": self.collection.as_str() };
        if let Some(n) = self.batch_size.filter(|n| *n > 0) {
            body.insert("batchSize", i64::from(n));
        }
        if let Some(t) = self.max_time {
            body.insert("maxTimeMS", t.as_millis() as i64);
        }
        if let Some(c) = &self.comment {
            body.insert("comment", c.clone());
        }
        Ok(Command::new(self.db.as_str(), body))
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<CursorInfo> {
        CursorInfo::parse(&response)
    }
}

/// The `killCursors` command.
#[derive(Debug, Clone)]
pub struct KillCursors {
    pub db: String,
    pub collection: String,
    pub cursor_ids: Vec<i64>,
}

impl Operation for KillCursors {
    type Output = ();

    fn name(&self) -> &str {
        "killCursors"
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        Ok(Command::new(
            self.db.clone(),
            doc! { "killCursors": self.collection.as_str(), "cursors": self.cursor_ids.as_slice() },
        ))
    }

    fn handle_response(
        &mut self,
        _response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_first_and_next_batches() {
        let reply = RawDocumentBuf::try_from(&doc! {
            "ok": 1, "cursor": { "id": 42i64, "ns": "db.coll.sub", "firstBatch": [{ "a": 1 }, { "a": 2 }] }
        })
        .unwrap();
        let info = CursorInfo::parse(&reply).unwrap();
        assert_eq!(info.id, 42);
        assert_eq!(info.batch.len(), 2);
        assert_eq!(split_namespace(&info.ns), Some(("db", "coll.sub")));
        let next = RawDocumentBuf::try_from(&doc! {
            "ok": 1, "cursor": { "id": 0, "ns": "db.c", "nextBatch": [] }
        })
        .unwrap();
        assert_eq!(CursorInfo::parse(&next).unwrap().id, 0);
    }

    #[test]
    fn find_builds_the_same_body_every_time() {
        let desc = crate::operation::aggregate::test_description();
        let expected =
            doc! { "find": "c", "filter": { "a": 1 }, "limit": 1i64, "singleBatch": true };
        let mut op = Find::new(
            "db",
            "c",
            doc! { "a": 1 },
            doc! { "limit": 1i64, "singleBatch": true },
            None,
        );
        for _ in 0..2 {
            let cmd = op.build(&desc).unwrap();
            assert_eq!(*cmd.body, expected);
            assert_eq!(cmd.target_db, "db");
            assert_eq!(cmd.name(), "find");
        }
        let mut op = Find::from_body("db", "c", expected.clone(), None);
        assert_eq!(*op.build(&desc).unwrap().body, expected);
    }

    #[test]
    fn malformed_cursor_replies_are_errors() {
        for bad in [
            doc! { "ok": 1 },
            doc! { "ok": 1, "cursor": { "ns": "a.b", "firstBatch": [] } },
            doc! { "ok": 1, "cursor": { "id": 1i64, "ns": "a.b" } },
            doc! { "ok": 1, "cursor": { "id": 1i64, "ns": "a.b", "firstBatch": [1] } },
        ] {
            let raw = RawDocumentBuf::try_from(&bad).unwrap();
            assert!(CursorInfo::parse(&raw).is_err(), "{bad}");
        }
    }
}
