//! `aggregate` (on a collection or, with `aggregate: 1`, on a database), and the `count_documents`
//! pipeline built on it.

use bson::{doc, Bson, Document, RawDocumentBuf};

use super::{get_i64, Command, CursorInfo, Operation, Retryability};
use crate::error::{Error, Result};
use crate::operation::StreamDescription;
use crate::options::ReadPreference;

/// What an aggregation runs against.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateTarget {
    /// `aggregate: "<collection>"`.
    Collection(String),
    /// `aggregate: 1` (database-level stages such as `$currentOp`, `$listLocalSessions`).
    Database,
}

/// The `aggregate` command.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub db: String,
    pub target: AggregateTarget,
    pub pipeline: Vec<Document>,
    /// Options as command fields: allowDiskUse, bypassDocumentValidation, collation, comment,
    /// hint, maxTimeMS, readConcern, writeConcern, let.
    pub options: Document,
    /// `cursor.batchSize` of the first batch.
    pub batch_size: Option<u32>,
    /// Ignored when the pipeline writes (`$out` / `$merge`): those go to the primary.
    pub read_preference: Option<ReadPreference>,
}

impl Aggregate {
    /// Whether the last stage is `$out` or `$merge`. Such an aggregation is a write: it runs on
    /// the primary and is not retried as a read.
    pub fn has_write_stage(&self) -> bool {
        self.pipeline
            .last()
            .and_then(|stage| stage.keys().next())
            .is_some_and(|k| k == "$out" || k == "$merge")
    }
}

impl Operation for Aggregate {
    type Output = CursorInfo;

    fn name(&self) -> &str {
        "aggregate"
    }

    /// A retryable read, unless the pipeline writes (`$out`/`$merge`): those are neither
    /// retryable reads nor retryable writes.
    fn retryability(&self) -> Retryability {
        if self.has_write_stage() {
            Retryability::None
        } else {
            Retryability::Read
        }
    }

    /// A write stage runs on the primary, whatever the read preference.
    fn is_read(&self) -> bool {
        !self.has_write_stage()
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        let target = match &self.target {
            AggregateTarget::Collection(c) => Bson::String(c.clone()),
            AggregateTarget::Database => Bson::Int32(1),
        };
        let pipeline: Vec<Bson> = self.pipeline.iter().cloned().map(Bson::Document).collect();
        let mut cursor = Document::new();
        // A write stage returns no documents; a batch size of 0 there would be pointless.
        if let Some(b) = self.batch_size.filter(|_| !self.has_write_stage()) {
            cursor.insert("batchSize", i64::from(b));
        }
        let mut body = doc! { "aggregate": target, "pipeline": pipeline, "cursor": cursor };
        for (k, v) in &self.options {
            if k == "writeConcern" && !self.has_write_stage() {
                continue;
            }
            body.insert(k.clone(), v.clone());
        }
        Ok(Command::new(self.db.as_str(), body))
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<CursorInfo> {
        CursorInfo::parse(response)
    }

    fn read_preference(&self) -> Option<&ReadPreference> {
        if self.has_write_stage() {
            None
        } else {
            self.read_preference.as_ref()
        }
    }
}

/// The `count_documents` pipeline (CRUD spec): `$match`, then `$skip` / `$limit` if given, then
/// `$group {_id: 1, n: {$sum: 1}}`.
pub fn count_documents_pipeline(
    filter: Document,
    skip: Option<u64>,
    limit: Option<u64>,
) -> Result<Vec<Document>> {
    let to_i64 = |v: u64, what: &str| {
        i64::try_from(v).map_err(|_| Error::invalid_argument(format!("{what} is too large")))
    };
    let mut pipeline = vec![doc! { "$match": filter }];
    if let Some(s) = skip.filter(|s| *s > 0) {
        pipeline.push(doc! { "$skip": to_i64(s, "skip")? });
    }
    if let Some(l) = limit.filter(|l| *l > 0) {
        pipeline.push(doc! { "$limit": to_i64(l, "limit")? });
    }
    pipeline.push(doc! { "$group": { "_id": 1, "n": { "$sum": 1 } } });
    Ok(pipeline)
}

/// The count in the first batch of a `count_documents` aggregation: none means 0.
pub fn parse_count_documents(info: &CursorInfo) -> Result<u64> {
    let Some(first) = info.batch.front() else {
        return Ok(0);
    };
    let first = bson::RawDocument::from_bytes(first)
        .map_err(|e| Error::invalid_response(format!("invalid count result: {e}")))?;
    let n = get_i64(first, "n")
        .ok_or_else(|| Error::invalid_response("count result has no numeric 'n'"))?;
    u64::try_from(n).map_err(|_| Error::invalid_response(format!("negative count {n}")))
}

/// A handshake description for the operations' unit tests.
#[cfg(test)]
pub(crate) fn test_description() -> StreamDescription {
    let reply = doc! { "ok": 1, "minWireVersion": 0, "maxWireVersion": 21 };
    StreamDescription::from_reply(&reply, &[]).expect("a valid hello reply")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ReadPreferenceMode;

    fn desc() -> StreamDescription {
        test_description()
    }

    fn op(pipeline: Vec<Document>) -> Aggregate {
        Aggregate {
            db: "db".into(),
            target: AggregateTarget::Collection("c".into()),
            pipeline,
            options: doc! { "writeConcern": { "w": "majority" }, "comment": "x" },
            batch_size: Some(5),
            read_preference: Some(ReadPreference::with_mode(ReadPreferenceMode::Secondary)),
        }
    }

    #[test]
    fn read_aggregation_keeps_read_preference_and_drops_write_concern() {
        let mut a = op(vec![doc! { "$match": { "a": 1 } }]);
        assert!(!a.has_write_stage());
        assert_eq!(a.name(), "aggregate");
        assert!(a.read_preference().is_some());
        assert_eq!(a.retryability(), Retryability::Read);
        assert!(a.is_read());
        let cmd = a.build(&desc()).unwrap();
        assert_eq!(
            *cmd.body,
            doc! { "aggregate": "c", "pipeline": [{ "$match": { "a": 1 } }],
            "cursor": { "batchSize": 5i64 }, "comment": "x" }
        );
        assert_eq!(cmd.target_db, "db");
    }

    #[test]
    fn write_stage_goes_to_the_primary_with_write_concern() {
        for last in [doc! { "$out": "o" }, doc! { "$merge": { "into": "o" } }] {
            let mut a = op(vec![doc! { "$match": {} }, last]);
            assert!(a.has_write_stage());
            assert_eq!(a.name(), "aggregate");
            assert_eq!(a.retryability(), Retryability::None, "never retried");
            assert!(!a.is_read(), "selected as a write");
            assert!(a.read_preference().is_none());
            let cmd = a.build(&desc()).unwrap();
            assert_eq!(cmd.body.get_document("cursor").unwrap(), &doc! {});
            assert_eq!(
                cmd.body.get_document("writeConcern").unwrap(),
                &doc! { "w": "majority" }
            );
        }
        // `$out` not last is not a write stage (the server rejects it; we do not guess).
        assert!(!op(vec![doc! { "$out": "o" }, doc! { "$match": {} }]).has_write_stage());
    }

    #[test]
    fn database_aggregation_targets_one() {
        let mut a = op(vec![doc! { "$currentOp": {} }]);
        a.target = AggregateTarget::Database;
        a.db = "admin".into();
        let cmd = a.build(&desc()).unwrap();
        assert_eq!(cmd.body.get("aggregate"), Some(&Bson::Int32(1)));
        assert_eq!(cmd.name(), "aggregate");
    }

    #[test]
    fn count_documents_pipeline_and_result() {
        assert_eq!(
            count_documents_pipeline(doc! { "a": 1 }, Some(2), Some(3)).unwrap(),
            vec![
                doc! { "$match": { "a": 1 } },
                doc! { "$skip": 2i64 },
                doc! { "$limit": 3i64 },
                doc! { "$group": { "_id": 1, "n": { "$sum": 1 } } },
            ]
        );
        assert_eq!(
            count_documents_pipeline(doc! {}, None, Some(0))
                .unwrap()
                .len(),
            2
        );
        assert!(count_documents_pipeline(doc! {}, Some(u64::MAX), None).is_err());
        let parse = |reply: Document| {
            let raw = RawDocumentBuf::try_from(&reply).unwrap();
            parse_count_documents(&CursorInfo::parse(raw).unwrap())
        };
        let empty = doc! { "ok": 1, "cursor": { "id": 0i64, "ns": "d.c", "firstBatch": [] } };
        assert_eq!(parse(empty).unwrap(), 0);
        for n in [Bson::Int32(7), Bson::Int64(7), Bson::Double(7.0)] {
            let r = doc! { "ok": 1, "cursor": { "id": 0i64, "ns": "d.c",
            "firstBatch": [{ "_id": 1, "n": n }] } };
            assert_eq!(parse(r).unwrap(), 7);
        }
        let bad =
            doc! { "ok": 1, "cursor": { "id": 0i64, "ns": "d.c", "firstBatch": [{ "n": "x" }] } };
        assert!(parse(bad).is_err());
        let neg =
            doc! { "ok": 1, "cursor": { "id": 0i64, "ns": "d.c", "firstBatch": [{ "n": -1 }] } };
        assert!(parse(neg).is_err());
    }
}
