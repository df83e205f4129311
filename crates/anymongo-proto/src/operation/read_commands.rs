//! Read commands that are not `find` or `aggregate`: `count` (estimated document count),
//! `distinct`, `listDatabases`, and any command that replies with a cursor (`listCollections`,
//! `listIndexes`, `run_cursor_command`).

use bson::{doc, Bson, Document, RawDocumentBuf};

use super::{get_i64, Command, CursorInfo, Operation, Retryability};
use crate::error::{Error, Result};
use crate::operation::StreamDescription;
use crate::options::ReadPreference;

/// Adds every field of `options` to `body`.
fn extend(body: &mut Document, options: &Document) {
    for (k, v) in options {
        body.insert(k.clone(), v.clone());
    }
}

/// The `count` command without a query: the collection's metadata count.
#[derive(Debug, Clone)]
pub struct Count {
    pub db: String,
    pub collection: String,
    /// maxTimeMS, comment, readConcern.
    pub options: Document,
    pub read_preference: Option<ReadPreference>,
}

impl Operation for Count {
    type Output = u64;

    fn name(&self) -> &str {
        "count"
    }

    fn retryability(&self) -> Retryability {
        Retryability::Read
    }

    fn is_read(&self) -> bool {
        true
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        let mut body = doc! { "count": self.collection.clone() };
        extend(&mut body, &self.options);
        Ok(Command::new(self.db.as_str(), body))
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<u64> {
        let n = get_i64(&response, "n")
            .ok_or_else(|| Error::invalid_response("count reply has no numeric 'n'"))?;
        u64::try_from(n).map_err(|_| Error::invalid_response(format!("negative count {n}")))
    }

    fn read_preference(&self) -> Option<&ReadPreference> {
        self.read_preference.as_ref()
    }
}

/// The `distinct` command.
#[derive(Debug, Clone)]
pub struct Distinct {
    pub db: String,
    pub collection: String,
    pub key: String,
    pub query: Document,
    /// collation, comment, hint, maxTimeMS, readConcern.
    pub options: Document,
    pub read_preference: Option<ReadPreference>,
}

impl Operation for Distinct {
    type Output = Vec<Bson>;

    fn name(&self) -> &str {
        "distinct"
    }

    fn retryability(&self) -> Retryability {
        Retryability::Read
    }

    fn is_read(&self) -> bool {
        true
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        let mut body = doc! {
            "distinct": self.collection.clone(),
            "key": self.key.clone(),
            "query": self.query.clone(),
        };
        extend(&mut body, &self.options);
        Ok(Command::new(self.db.as_str(), body))
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<Vec<Bson>> {
        let values = response
            .get_array("values")
            .map_err(|_| Error::invalid_response("distinct reply has no 'values' array"))?;
        let mut out = Vec::new();
        for v in values {
            let v = v.map_err(|e| Error::invalid_response(format!("bad distinct value: {e}")))?;
            out.push(crate::wire::raw::to_bson(v)?);
        }
        Ok(out)
    }

    fn read_preference(&self) -> Option<&ReadPreference> {
        self.read_preference.as_ref()
    }
}

/// The `listDatabases` command (against `admin`); the output is the `databases` array.
#[derive(Debug, Clone)]
pub struct ListDatabases {
    /// filter, nameOnly, authorizedDatabases, comment.
    pub options: Document,
}

impl Operation for ListDatabases {
    type Output = Vec<Document>;

    fn name(&self) -> &str {
        "listDatabases"
    }

    fn retryability(&self) -> Retryability {
        Retryability::Read
    }

    fn is_read(&self) -> bool {
        true
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        let mut body = doc! { "listDatabases": 1 };
        extend(&mut body, &self.options);
        Ok(Command::new("admin", body))
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<Vec<Document>> {
        let dbs = response
            .get_array("databases")
            .map_err(|_| Error::invalid_response("listDatabases reply has no 'databases'"))?;
        let mut out = Vec::new();
        for d in dbs {
            let d = d
                .ok()
                .and_then(|d| d.as_document().map(|d| d.to_owned()))
                .ok_or_else(|| Error::invalid_response("a 'databases' entry is not a document"))?;
            out.push(crate::wire::raw::to_document(&d)?);
        }
        Ok(out)
    }
}

/// Any command that replies with a cursor: `listCollections`, `listIndexes` (retryable reads),
/// or a user's command for `run_cursor_command` (never retried: the driver cannot know what it
/// does).
#[derive(Debug, Clone)]
pub struct CursorCommand {
    pub db: String,
    pub body: Document,
    pub read_preference: Option<ReadPreference>,
    retryability: Retryability,
}

impl CursorCommand {
    /// A user's command for `run_cursor_command`: sent as written, selected by `read_preference`
    /// (the primary without one), never retried.
    pub fn user(
        db: impl Into<String>,
        body: Document,
        read_preference: Option<ReadPreference>,
    ) -> Self {
        CursorCommand {
            db: db.into(),
            body,
            read_preference,
            retryability: Retryability::None,
        }
    }

    /// `listCollections` with its options (filter, nameOnly, authorizedCollections, comment) and
    /// the first batch's size.
    pub fn list_collections(db: &str, options: Document, batch_size: Option<u32>) -> Self {
        let mut body = doc! { "listCollections": 1 };
        extend(&mut body, &options);
        body.insert("cursor", batch_doc(batch_size));
        CursorCommand {
            db: db.to_string(),
            body,
            read_preference: None,
            retryability: Retryability::Read,
        }
    }

    /// `listIndexes` of `collection` with its options (comment, maxTimeMS).
    pub fn list_indexes(
        db: &str,
        collection: &str,
        options: Document,
        batch_size: Option<u32>,
    ) -> Self {
        let mut body = doc! { "listIndexes": collection };
        extend(&mut body, &options);
        body.insert("cursor", batch_doc(batch_size));
        CursorCommand {
            db: db.to_string(),
            body,
            read_preference: None,
            retryability: Retryability::Read,
        }
    }
}

fn batch_doc(batch_size: Option<u32>) -> Document {
    match batch_size {
        Some(b) => doc! { "batchSize": i64::from(b) },
        None => Document::new(),
    }
}

impl Operation for CursorCommand {
    type Output = CursorInfo;

    fn name(&self) -> &str {
        self.body.keys().next().map(String::as_str).unwrap_or("")
    }

    fn retryability(&self) -> Retryability {
        self.retryability
    }

    /// The listings are reads; a user's command is one when it is given a read preference.
    fn is_read(&self) -> bool {
        self.retryability == Retryability::Read || self.read_preference.is_some()
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        if self.body.is_empty() {
            return Err(Error::invalid_argument(
                "a command document must not be empty",
            ));
        }
        Ok(Command::borrowed(&self.db, &self.body))
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<CursorInfo> {
        CursorInfo::parse(response)
    }

    fn read_preference(&self) -> Option<&ReadPreference> {
        self.read_preference.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::super::aggregate::test_description;
    use super::*;
    use crate::options::ReadPreferenceMode;

    fn raw(d: Document) -> RawDocumentBuf {
        RawDocumentBuf::try_from(&d).unwrap()
    }

    #[test]
    fn count_builds_and_parses() {
        let mut op = Count {
            db: "d".into(),
            collection: "c".into(),
            options: doc! { "maxTimeMS": 5i64, "readConcern": { "level": "local" } },
            read_preference: Some(ReadPreference::with_mode(ReadPreferenceMode::Nearest)),
        };
        let cmd = op.build(&test_description()).unwrap();
        assert_eq!(
            *cmd.body,
            doc! { "count": "c", "maxTimeMS": 5i64, "readConcern": { "level": "local" } }
        );
        assert_eq!(
            op.read_preference().unwrap().mode,
            ReadPreferenceMode::Nearest
        );
        let d = test_description();
        assert_eq!(
            op.handle_response(raw(doc! { "ok": 1, "n": 3 }), &d)
                .unwrap(),
            3
        );
        assert_eq!(
            op.handle_response(raw(doc! { "ok": 1, "n": 3.0 }), &d)
                .unwrap(),
            3
        );
        assert!(op.handle_response(raw(doc! { "ok": 1 }), &d).is_err());
        assert!(op
            .handle_response(raw(doc! { "ok": 1, "n": -2 }), &d)
            .is_err());
    }

    #[test]
    fn distinct_builds_and_parses() {
        let mut op = Distinct {
            db: "d".into(),
            collection: "c".into(),
            key: "a.b".into(),
            query: doc! { "x": { "$gt": 1 } },
            options: doc! { "collation": { "locale": "fr" } },
            read_preference: None,
        };
        let cmd = op.build(&test_description()).unwrap();
        assert_eq!(
            *cmd.body,
            doc! { "distinct": "c", "key": "a.b", "query": { "x": { "$gt": 1 } },
            "collation": { "locale": "fr" } }
        );
        let d = test_description();
        let values = op
            .handle_response(raw(doc! { "ok": 1, "values": [1, "a", null] }), &d)
            .unwrap();
        assert_eq!(values, vec![Bson::Int32(1), Bson::from("a"), Bson::Null]);
        assert!(op.handle_response(raw(doc! { "ok": 1 }), &d).is_err());
    }

    #[test]
    fn list_databases_builds_and_parses() {
        let mut op = ListDatabases {
            options: doc! { "nameOnly": true, "filter": { "name": "x" } },
        };
        let cmd = op.build(&test_description()).unwrap();
        assert_eq!(cmd.target_db, "admin");
        assert_eq!(
            *cmd.body,
            doc! { "listDatabases": 1, "nameOnly": true, "filter": { "name": "x" } }
        );
        let d = test_description();
        let dbs = op
            .handle_response(raw(doc! { "ok": 1, "databases": [{ "name": "x" }] }), &d)
            .unwrap();
        assert_eq!(dbs, vec![doc! { "name": "x" }]);
        assert!(op
            .handle_response(raw(doc! { "ok": 1, "databases": [1] }), &d)
            .is_err());
        assert!(op.handle_response(raw(doc! { "ok": 1 }), &d).is_err());
    }

    #[test]
    fn cursor_commands_build() {
        let mut op = CursorCommand::list_collections("d", doc! { "nameOnly": true }, Some(2));
        assert_eq!(op.name(), "listCollections");
        assert_eq!(
            *op.build(&test_description()).unwrap().body,
            doc! { "listCollections": 1, "nameOnly": true, "cursor": { "batchSize": 2i64 } }
        );
        let mut op = CursorCommand::list_indexes("d", "c", doc! { "comment": "hi" }, None);
        assert_eq!(op.name(), "listIndexes");
        assert_eq!(
            *op.build(&test_description()).unwrap().body,
            doc! { "listIndexes": "c", "comment": "hi", "cursor": {} }
        );
        assert_eq!(op.retryability(), Retryability::Read);
        assert!(op.is_read());
        let mut empty = CursorCommand::user("d", doc! {}, None);
        assert!(empty.build(&test_description()).is_err());
        // A user's cursor command is never retried, and is a read only when given a read
        // preference.
        let user = CursorCommand::user("d", doc! { "aggregate": "c", "pipeline": [] }, None);
        assert_eq!(user.retryability(), Retryability::None);
        assert!(!user.is_read());
        let nearest = Some(ReadPreference::with_mode(ReadPreferenceMode::Nearest));
        let user = CursorCommand::user("d", doc! { "find": "c" }, nearest);
        assert_eq!(user.retryability(), Retryability::None);
        assert!(user.is_read());
    }
}
