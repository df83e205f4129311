//! Administrative write commands that return only `ok`: `createIndexes`, `dropIndexes`,
//! `create` (a collection) and `dropDatabase`. They run on the primary and are not retried.

use bson::{doc, Bson, Document, RawDocumentBuf};

use super::{Command, Operation};
use crate::error::{Error, Result};
use crate::operation::StreamDescription;

/// One administrative command; build it with a constructor.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminCommand {
    pub db: String,
    pub body: Document,
}

impl AdminCommand {
    fn new(db: &str, mut body: Document, options: Document) -> Self {
        for (k, v) in options {
            body.insert(k, v);
        }
        AdminCommand {
            db: db.to_string(),
            body,
        }
    }

    /// `createIndexes` of `indexes` (each `{key, name, ...options}`), with options
    /// (commitQuorum, maxTimeMS, writeConcern, comment).
    pub fn create_indexes(
        db: &str,
        collection: &str,
        indexes: Vec<Document>,
        options: Document,
    ) -> Result<Self> {
        if indexes.is_empty() {
            return Err(Error::invalid_argument(
                "create_indexes needs at least one index",
            ));
        }
        for index in &indexes {
            if index.get_document("key").map_or(true, |k| k.is_empty()) {
                return Err(Error::invalid_argument(
                    "an index needs a non-empty key pattern",
                ));
            }
        }
        let indexes: Vec<Bson> = indexes.into_iter().map(Bson::Document).collect();
        Ok(Self::new(
            db,
            doc! { "createIndexes": collection, "indexes": indexes },
            options,
        ))
    }

    /// `dropIndexes`: `index` is a name, or `"*"` for every index but `_id_`.
    pub fn drop_indexes(db: &str, collection: &str, index: &str, options: Document) -> Self {
        Self::new(
            db,
            doc! { "dropIndexes": collection, "index": index },
            options,
        )
    }

    /// `create` with collection options (capped, size, validator, ..., writeConcern).
    pub fn create_collection(db: &str, name: &str, options: Document) -> Self {
        Self::new(db, doc! { "create": name }, options)
    }

    /// `dropDatabase` with options (writeConcern, comment).
    pub fn drop_database(db: &str, options: Document) -> Self {
        Self::new(db, doc! { "dropDatabase": 1 }, options)
    }
}

impl Operation for AdminCommand {
    type Output = RawDocumentBuf;

    fn name(&self) -> &str {
        self.body.keys().next().map(String::as_str).unwrap_or("")
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        Ok(Command::borrowed(&self.db, &self.body))
    }

    /// The reply as received: its contents are not validated (the callers only need `ok`, which
    /// the executor has checked); validate it before reading more of it.
    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<RawDocumentBuf> {
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::super::aggregate::test_description;
    use super::*;

    #[test]
    fn create_indexes_body_and_validation() {
        let mut op = AdminCommand::create_indexes(
            "d",
            "c",
            vec![doc! { "key": { "a": 1 }, "name": "a_1", "unique": true }],
            doc! { "writeConcern": { "w": 1i64 } },
        )
        .unwrap();
        assert_eq!(op.name(), "createIndexes");
        assert!(op.read_preference().is_none(), "runs on the primary");
        assert_eq!(
            *op.build(&test_description()).unwrap().body,
            doc! { "createIndexes": "c",
            "indexes": [{ "key": { "a": 1 }, "name": "a_1", "unique": true }],
            "writeConcern": { "w": 1i64 } }
        );
        assert!(AdminCommand::create_indexes("d", "c", vec![], doc! {}).is_err());
        assert!(AdminCommand::create_indexes("d", "c", vec![doc! { "key": {} }], doc! {}).is_err());
        assert!(
            AdminCommand::create_indexes("d", "c", vec![doc! { "name": "x" }], doc! {}).is_err()
        );
    }

    #[test]
    fn other_bodies() {
        assert_eq!(
            AdminCommand::drop_indexes("d", "c", "*", doc! { "maxTimeMS": 1i64 }).body,
            doc! { "dropIndexes": "c", "index": "*", "maxTimeMS": 1i64 }
        );
        assert_eq!(
            AdminCommand::create_collection("d", "c", doc! { "capped": true, "size": 4096i64 })
                .body,
            doc! { "create": "c", "capped": true, "size": 4096i64 }
        );
        let op = AdminCommand::drop_database("d", doc! {});
        assert_eq!(op.body, doc! { "dropDatabase": 1 });
        assert_eq!(op.name(), "dropDatabase");
    }
}
