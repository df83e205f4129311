//! `findAndModify`: update, replace or delete one document and return it (before or after).

use bson::{doc, Document, RawBsonRef, RawDocumentBuf};

use super::update::{validate_replacement, UpdateModifications};
use super::{error_labels, get_i64, Command, Operation};
use crate::error::{Error, ErrorKind, Result, WriteConcernError, WriteFailure};
use crate::operation::StreamDescription;

/// What a `findAndModify` does to the document it finds.
#[derive(Clone, Debug, PartialEq)]
pub enum Modification {
    /// `remove: true`.
    Delete,
    /// `update: <operators or pipeline>`.
    Update(UpdateModifications),
    /// `update: <replacement document>`.
    Replace(Document),
}

/// A `findAndModify` command. Its output is the document before or after the change (`None`
/// when nothing matched and nothing was upserted).
#[derive(Clone, Debug)]
pub struct FindAndModify {
    pub db: String,
    pub collection: String,
    pub query: Document,
    pub modification: Modification,
    /// Extra command fields, already named as the server expects: `sort`, `fields`, `new`,
    /// `upsert`, `arrayFilters`, `collation`, `hint`, `maxTimeMS`, `writeConcern`, `comment`,
    /// `let`, `bypassDocumentValidation`.
    pub options: Document,
    /// Send unacknowledged (`w: 0`): `moreToCome`, no reply, no document returned.
    pub unacknowledged: bool,
}

impl FindAndModify {
    /// The command body, after validating the modification.
    pub fn body(&self) -> Result<Document> {
        let mut body = doc! {
            "findAndModify": self.collection.clone(),
            "query": self.query.clone(),
        };
        match &self.modification {
            Modification::Delete => {
                body.insert("remove", true);
            }
            Modification::Update(m) => {
                m.validate()?;
                body.insert("update", m.to_bson());
            }
            Modification::Replace(r) => {
                validate_replacement(r)?;
                body.insert("update", r.clone());
            }
        }
        for (k, v) in &self.options {
            body.insert(k.clone(), v.clone());
        }
        Ok(body)
    }
}

impl Operation for FindAndModify {
    type Output = Option<RawDocumentBuf>;

    fn name(&self) -> &str {
        "findAndModify"
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        let mut command = Command::new(self.db.as_str(), self.body()?);
        command.more_to_come = self.unacknowledged;
        Ok(command)
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<Option<RawDocumentBuf>> {
        if self.unacknowledged {
            return Ok(None);
        }
        if let Ok(wce) = response.get_document("writeConcernError") {
            let details = wce
                .get_document("errInfo")
                .ok()
                .and_then(|d| crate::wire::raw::to_document(d).ok());
            let failure = WriteConcernError {
                code: get_i64(wce, "code").unwrap_or(0) as i32,
                code_name: wce.get_str("codeName").unwrap_or("").to_string(),
                message: wce.get_str("errmsg").unwrap_or("").to_string(),
                details,
                labels: error_labels(&response),
            };
            let labels = failure.labels.clone();
            return Err(
                Error::new(ErrorKind::Write(WriteFailure::WriteConcernError(failure)))
                    .with_labels(labels),
            );
        }
        match response.get("value") {
            // Handed to the caller raw: validated here (the wire decoder only checks framing).
            Ok(Some(RawBsonRef::Document(d))) => {
                crate::wire::validate_document(d.as_bytes())?;
                Ok(Some(d.to_owned()))
            }
            Ok(Some(RawBsonRef::Null)) | Ok(None) => Ok(None),
            Ok(Some(other)) => Err(Error::invalid_response(format!(
                "findAndModify 'value' is a {:?}, not a document",
                other.element_type()
            ))),
            Err(e) => Err(Error::invalid_response(format!(
                "invalid findAndModify reply: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description() -> StreamDescription {
        let reply = doc! { "ok": 1, "minWireVersion": 0, "maxWireVersion": 21 };
        StreamDescription::from_reply(&reply, &[]).unwrap()
    }

    fn op(modification: Modification, options: Document) -> FindAndModify {
        FindAndModify {
            db: "db".into(),
            collection: "c".into(),
            query: doc! { "a": 1 },
            modification,
            options,
            unacknowledged: false,
        }
    }

    #[test]
    fn command_shapes() {
        let desc = description();
        let mut o = op(
            Modification::Delete,
            doc! { "sort": { "a": -1 }, "fields": { "_id": 0 } },
        );
        let cmd = o.build(&desc).unwrap();
        assert_eq!(cmd.name(), "findAndModify");
        assert_eq!(cmd.target_db, "db");
        assert_eq!(
            *cmd.body,
            doc! { "findAndModify": "c", "query": { "a": 1 }, "remove": true, "sort": { "a": -1 }, "fields": { "_id": 0 } }
        );
        let mut o = op(
            Modification::Update(doc! { "$inc": { "n": 1 } }.into()),
            doc! { "new": true, "upsert": true },
        );
        let cmd = o.build(&desc).unwrap();
        assert_eq!(
            *cmd.body,
            doc! { "findAndModify": "c", "query": { "a": 1 }, "update": { "$inc": { "n": 1 } }, "new": true, "upsert": true }
        );
        let mut o = op(
            Modification::Update(vec![doc! { "$set": { "b": "$a" } }].into()),
            Document::new(),
        );
        let cmd = o.build(&desc).unwrap();
        assert!(cmd.body.get_array("update").is_ok());
        let mut o = op(Modification::Replace(doc! { "z": 1 }), Document::new());
        let cmd = o.build(&desc).unwrap();
        assert_eq!(cmd.body.get_document("update").unwrap(), &doc! { "z": 1 });
    }

    #[test]
    fn validation_happens_before_sending() {
        let desc = description();
        for m in [
            Modification::Update(doc! { "x": 1 }.into()),
            Modification::Update(doc! {}.into()),
            Modification::Update(Vec::new().into()),
            Modification::Replace(doc! { "$set": { "x": 1 } }),
        ] {
            let err = op(m, Document::new()).build(&desc).unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::InvalidArgument { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn reply_parsing() {
        let desc = description();
        let mut o = op(Modification::Delete, Document::new());
        let raw = |d: Document| RawDocumentBuf::try_from(&d).unwrap();
        let got = o
            .handle_response(raw(doc! { "ok": 1, "value": { "_id": 3, "a": 1 } }), &desc)
            .unwrap()
            .unwrap();
        assert_eq!(got.get_i32("_id").unwrap(), 3);
        assert!(o
            .handle_response(raw(doc! { "ok": 1, "value": null }), &desc)
            .unwrap()
            .is_none());
        assert!(o
            .handle_response(raw(doc! { "ok": 1 }), &desc)
            .unwrap()
            .is_none());
        assert!(o
            .handle_response(raw(doc! { "ok": 1, "value": 5 }), &desc)
            .is_err());
        let err = o
            .handle_response(
                raw(doc! { "ok": 1, "value": null, "errorLabels": ["RetryableWriteError"],
                    "writeConcernError": { "code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting" } }),
                &desc,
            )
            .unwrap_err();
        assert_eq!(err.code(), Some(64));
        assert!(err.contains_label("RetryableWriteError"));
        assert!(matches!(
            err.kind(),
            ErrorKind::Write(WriteFailure::WriteConcernError(_))
        ));
    }

    #[test]
    fn unacknowledged_sends_more_to_come_and_returns_nothing() {
        let mut op = op(Modification::Delete, doc! { "writeConcern": { "w": 0 } });
        op.unacknowledged = true;
        let reply = doc! { "n": 0 };
        let description = description();
        let command = op.build(&description).unwrap();
        assert!(command.more_to_come);
        let raw = RawDocumentBuf::try_from(&reply).unwrap();
        assert_eq!(op.handle_response(raw, &description).unwrap(), None);
    }
}
