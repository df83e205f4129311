//! Statements of the `update` and `delete` commands, and the validation the CRUD spec asks for
//! before anything is sent: an update document holds only `$`-operators, a replacement none, and
//! neither an update document nor a pipeline may be empty.

use bson::{Bson, Document, RawDocumentBuf};

use crate::error::{Error, Result};

/// What an update applies: an update document (`$set`, `$inc`, ...) or an aggregation pipeline
/// (MongoDB 4.2+). `Document` and `Vec<Document>` convert into it.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateModifications {
    /// An update document whose keys are all update operators.
    Document(Document),
    /// An aggregation pipeline (`$set`, `$unset`, `$addFields`, `$project`, `$replaceRoot`, ...).
    Pipeline(Vec<Document>),
}

impl From<Document> for UpdateModifications {
    fn from(d: Document) -> Self {
        UpdateModifications::Document(d)
    }
}

impl From<Vec<Document>> for UpdateModifications {
    fn from(p: Vec<Document>) -> Self {
        UpdateModifications::Pipeline(p)
    }
}

impl UpdateModifications {
    /// Checks the update: a non-empty document whose keys all start with `$`, or a non-empty
    /// pipeline. Errors are [`InvalidArgument`](crate::error::ErrorKind::InvalidArgument).
    pub fn validate(&self) -> Result<()> {
        match self {
            UpdateModifications::Document(d) => {
                if d.is_empty() {
                    return Err(Error::invalid_argument(
                        "an update document must not be empty",
                    ));
                }
                if let Some(key) = d.keys().find(|k| !k.starts_with('$')) {
                    return Err(Error::invalid_argument(format!(
                        "an update document must contain only update operators ($set, $inc, ...); \
                         found '{key}' (use replace_one to replace a document)"
                    )));
                }
                Ok(())
            }
            UpdateModifications::Pipeline(p) => {
                if p.is_empty() {
                    return Err(Error::invalid_argument(
                        "an update pipeline must not be empty",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The value of the statement's `u` (or findAndModify's `update`) field.
    pub fn to_bson(&self) -> Bson {
        match self {
            UpdateModifications::Document(d) => Bson::Document(d.clone()),
            UpdateModifications::Pipeline(p) => {
                Bson::Array(p.iter().cloned().map(Bson::Document).collect())
            }
        }
    }
}

/// Checks a replacement document: none of its top-level keys may start with `$`.
pub fn validate_replacement(replacement: &Document) -> Result<()> {
    if let Some(key) = replacement.keys().find(|k| k.starts_with('$')) {
        return Err(Error::invalid_argument(format!(
            "a replacement document must not contain update operators; found '{key}' \
             (use update_one to apply operators)"
        )));
    }
    Ok(())
}

/// Serializes a replacement and validates it.
pub fn replacement_document<T: serde::Serialize>(replacement: &T) -> Result<Document> {
    let doc = bson::serialize_to_document(replacement)?;
    validate_replacement(&doc)?;
    Ok(doc)
}

/// The `u` of a statement: operators/pipeline, or a replacement document.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateBody {
    /// Update operators or a pipeline (validated when the statement is built).
    Modifications(UpdateModifications),
    /// A whole replacement document (validated when the statement is built).
    Replacement(Document),
}

/// One statement of an `update` command.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateStatement {
    pub filter: Document,
    pub update: UpdateBody,
    /// Update every matching document (`multi: true`).
    pub multi: bool,
    pub upsert: Option<bool>,
    pub array_filters: Option<Vec<Document>>,
    pub collation: Option<Document>,
    pub hint: Option<Bson>,
    /// Which document a one-document update picks (MongoDB 8.0+).
    pub sort: Option<Document>,
}

impl UpdateStatement {
    /// A statement applying `update` to the documents matching `filter`.
    pub fn new(filter: Document, update: UpdateBody, multi: bool) -> Self {
        UpdateStatement {
            filter,
            update,
            multi,
            upsert: None,
            array_filters: None,
            collation: None,
            hint: None,
            sort: None,
        }
    }

    /// Validates the statement and builds its document:
    /// `{q, u, multi?, upsert?, arrayFilters?, collation?, hint?, sort?}`.
    pub fn to_document(&self) -> Result<Document> {
        let u = match &self.update {
            UpdateBody::Modifications(m) => {
                m.validate()?;
                m.to_bson()
            }
            UpdateBody::Replacement(r) => {
                validate_replacement(r)?;
                if self.array_filters.is_some() {
                    return Err(Error::invalid_argument(
                        "arrayFilters cannot be used with a replacement",
                    ));
                }
                Bson::Document(r.clone())
            }
        };
        if self.multi && self.sort.is_some() {
            return Err(Error::invalid_argument(
                "sort applies only to one-document updates",
            ));
        }
        let mut d = bson::doc! { "q": self.filter.clone(), "u": u };
        if self.multi {
            d.insert("multi", true);
        }
        if let Some(v) = self.upsert {
            d.insert("upsert", v);
        }
        if let Some(v) = &self.array_filters {
            d.insert("arrayFilters", v.clone());
        }
        if let Some(v) = &self.collation {
            d.insert("collation", v.clone());
        }
        if let Some(v) = &self.hint {
            d.insert("hint", v.clone());
        }
        if let Some(v) = &self.sort {
            d.insert("sort", v.clone());
        }
        Ok(d)
    }

    /// [`to_document`](Self::to_document) as raw BSON, ready for a [`WriteCommand`](super::WriteCommand).
    pub fn to_raw(&self) -> Result<RawDocumentBuf> {
        Ok(RawDocumentBuf::try_from(&self.to_document()?)?)
    }
}

/// One statement of a `delete` command.
#[derive(Clone, Debug, PartialEq)]
pub struct DeleteStatement {
    pub filter: Document,
    /// Delete every matching document (`limit: 0`) or only the first (`limit: 1`).
    pub multi: bool,
    pub collation: Option<Document>,
    pub hint: Option<Bson>,
}

impl DeleteStatement {
    /// A statement deleting the first (or every) document matching `filter`.
    pub fn new(filter: Document, multi: bool) -> Self {
        DeleteStatement {
            filter,
            multi,
            collation: None,
            hint: None,
        }
    }

    /// `{q, limit, collation?, hint?}`.
    pub fn to_document(&self) -> Document {
        let mut d = bson::doc! {
            "q": self.filter.clone(),
            "limit": if self.multi { 0i32 } else { 1i32 },
        };
        if let Some(v) = &self.collation {
            d.insert("collation", v.clone());
        }
        if let Some(v) = &self.hint {
            d.insert("hint", v.clone());
        }
        d
    }

    /// [`to_document`](Self::to_document) as raw BSON.
    pub fn to_raw(&self) -> Result<RawDocumentBuf> {
        Ok(RawDocumentBuf::try_from(&self.to_document())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bson::doc;

    fn invalid(r: Result<Document>) -> String {
        match r {
            Err(e) => match e.kind() {
                ErrorKind::InvalidArgument { message } => message.clone(),
                other => panic!("unexpected error kind {other:?}"),
            },
            Ok(d) => panic!("expected an invalid argument, got {d}"),
        }
    }

    #[test]
    fn update_statement_shape() {
        let mut s = UpdateStatement::new(
            doc! { "x": 1 },
            UpdateBody::Modifications(doc! { "$set": { "a.$[e]": 2 } }.into()),
            true,
        );
        s.upsert = Some(true);
        s.array_filters = Some(vec![doc! { "e": { "$gt": 1 } }]);
        s.collation = Some(doc! { "locale": "fr" });
        s.hint = Some(Bson::String("x_1".into()));
        assert_eq!(
            s.to_document().unwrap(),
            doc! {
                "q": { "x": 1 }, "u": { "$set": { "a.$[e]": 2 } }, "multi": true, "upsert": true,
                "arrayFilters": [{ "e": { "$gt": 1 } }], "collation": { "locale": "fr" },
                "hint": "x_1",
            }
        );
        let mut one = UpdateStatement::new(
            doc! {},
            UpdateBody::Modifications(vec![doc! { "$set": { "b": "$a" } }].into()),
            false,
        );
        one.sort = Some(doc! { "b": -1 });
        assert_eq!(
            one.to_document().unwrap(),
            doc! { "q": {}, "u": [{ "$set": { "b": "$a" } }], "sort": { "b": -1 } }
        );
        one.sort = None;
        assert_eq!(
            one.to_document().unwrap(),
            doc! { "q": {}, "u": [{ "$set": { "b": "$a" } }] }
        );
        let raw = one.to_raw().unwrap();
        assert!(raw.get_array("u").is_ok());
    }

    #[test]
    fn update_validation() {
        let stmt = |u: UpdateModifications| {
            UpdateStatement::new(doc! {}, UpdateBody::Modifications(u), false).to_document()
        };
        assert!(invalid(stmt(doc! {}.into())).contains("empty"));
        assert!(invalid(stmt(doc! { "$set": { "a": 1 }, "b": 2 }.into())).contains("'b'"));
        assert!(invalid(stmt(doc! { "x": 1 }.into())).contains("operators"));
        assert!(invalid(stmt(Vec::new().into())).contains("pipeline"));
        let mut sorted_many = UpdateStatement::new(
            doc! {},
            UpdateBody::Modifications(doc! { "$inc": { "n": 1 } }.into()),
            true,
        );
        sorted_many.sort = Some(doc! { "n": 1 });
        assert!(invalid(sorted_many.to_document()).contains("sort"));
    }

    #[test]
    fn replacement_validation() {
        let stmt = |r: Document| {
            UpdateStatement::new(doc! { "_id": 1 }, UpdateBody::Replacement(r), false).to_document()
        };
        assert!(invalid(stmt(doc! { "$set": { "a": 1 } })).contains("$set"));
        assert!(invalid(stmt(doc! { "a": 1, "$inc": { "n": 1 } })).contains("$inc"));
        // Nested `$`-keys and an empty replacement are the server's business.
        assert_eq!(stmt(doc! {}).unwrap(), doc! { "q": { "_id": 1 }, "u": {} });
        let mut with_filters =
            UpdateStatement::new(doc! {}, UpdateBody::Replacement(doc! { "a": 1 }), false);
        with_filters.array_filters = Some(vec![]);
        assert!(invalid(with_filters.to_document()).contains("arrayFilters"));
        #[derive(serde::Serialize)]
        struct Bad {
            #[serde(rename = "$x")]
            x: i32,
        }
        assert!(replacement_document(&Bad { x: 1 }).is_err());
    }

    #[test]
    fn delete_statement_shape() {
        let mut d = DeleteStatement::new(doc! { "a": 1 }, false);
        assert_eq!(d.to_document(), doc! { "q": { "a": 1 }, "limit": 1 });
        d.multi = true;
        d.collation = Some(doc! { "locale": "en", "strength": 2 });
        d.hint = Some(Bson::Document(doc! { "a": 1 }));
        assert_eq!(
            d.to_document(),
            doc! { "q": { "a": 1 }, "limit": 0, "collation": { "locale": "en", "strength": 2 }, "hint": { "a": 1 } }
        );
        assert!(d.to_raw().is_ok());
    }
}
