//! Secondary indexes: specifications as `createIndexes` takes them and `listIndexes` answers
//! them, and unique indexes enforced on every write (DuplicateKey, 11000, with `keyPattern` and
//! `keyValue`). Non-unique indexes are kept for the catalog only (a scan answers every query).

use std::collections::HashMap;

use bson::{doc, Bson, Document};

use super::filter::{as_f64, matches, path_values, values_equal};
use super::IdKey;
use crate::error::CommandError;

/// One secondary index of a collection.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub(crate) name: String,
    pub(crate) key: Document,
    pub(crate) unique: bool,
    sparse: bool,
    partial: Option<Document>,
    /// The specification as given, less `key`, `name` and `v` (listed back by `listIndexes`).
    options: Document,
    /// Unique indexes: each key's owner (the document's sequence number).
    entries: HashMap<Vec<u8>, u64>,
}

fn bad_spec(msg: impl Into<String>) -> CommandError {
    CommandError::new(67, "CannotCreateIndex", msg)
}

/// The `_id` index as `listIndexes` shows it.
pub(crate) fn id_index_document() -> Document {
    doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }
}

impl Index {
    /// Parses one entry of `createIndexes`' `indexes`.
    pub(crate) fn from_spec(spec: &Document) -> Result<Index, CommandError> {
        let key = match spec.get("key") {
            Some(Bson::Document(k)) if !k.is_empty() => k.clone(),
            Some(Bson::Document(_)) => return Err(bad_spec("Index keys cannot be empty.")),
            _ => {
                return Err(CommandError::new(
                    9,
                    "FailedToParse",
                    "The 'key' field is a required property of an index specification",
                ))
            }
        };
        for (field, dir) in &key {
            let ok = match dir {
                Bson::String(s) => matches!(s.as_str(), "text" | "2dsphere" | "2d" | "hashed"),
                other => as_f64(other).is_some_and(|f| f != 0.0),
            };
            if !ok || field.is_empty() {
                return Err(bad_spec(format!(
                    "Values in the index key pattern can only be of numeric type, or the strings \
                     text, 2dsphere, 2d, hashed; found {field}: {dir}"
                )));
            }
        }
        let name = match spec.get("name") {
            Some(Bson::String(n)) if !n.is_empty() => n.clone(),
            Some(Bson::String(_)) => return Err(bad_spec("The index name cannot be empty")),
            _ => {
                return Err(CommandError::new(
                    9,
                    "FailedToParse",
                    "The 'name' field is a required property of an index specification",
                ))
            }
        };
        if (name == "_id_" || (key.len() == 1 && key.contains_key("_id")))
            && spec.get_bool("unique").unwrap_or(false)
        {
            return Err(bad_spec(
                "The field 'unique' is not valid for an _id index specification.",
            ));
        }
        let flag = |k: &str| match spec.get(k) {
            Some(Bson::Boolean(b)) => *b,
            Some(other) => as_f64(other).is_some_and(|f| f != 0.0),
            None => false,
        };
        let partial = match spec.get("partialFilterExpression") {
            None => None,
            Some(Bson::Document(f)) => Some(f.clone()),
            Some(_) => {
                return Err(CommandError::type_mismatch(
                    "The field 'partialFilterExpression' must be an object",
                ))
            }
        };
        let mut options = spec.clone();
        for k in ["key", "name", "v"] {
            options.remove(k);
        }
        Ok(Index {
            name,
            unique: flag("unique"),
            sparse: flag("sparse"),
            partial,
            key,
            options,
            entries: HashMap::new(),
        })
    }

    /// The index as `listIndexes` lists it.
    pub(crate) fn to_document(&self) -> Document {
        let mut d = doc! { "v": 2, "key": self.key.clone(), "name": self.name.clone() };
        for (k, v) in &self.options {
            d.insert(k.clone(), v.clone());
        }
        d
    }

    /// Whether `spec` asks for this very index (same name, key and options).
    pub(crate) fn same_as(&self, other: &Index) -> bool {
        self.name == other.name
            && values_equal(
                &Bson::Document(self.key.clone()),
                &Bson::Document(other.key.clone()),
            )
            && self.unique == other.unique
            && self.sparse == other.sparse
            && self.partial == other.partial
    }

    /// The key values of `d` (one per element of an indexed array), or `None` when `d` is not in
    /// the index (sparse and without any key field, or outside the partial filter).
    fn key_values(&self, d: &Document) -> Result<Option<Vec<Vec<Bson>>>, CommandError> {
        if let Some(f) = &self.partial {
            if !matches(d, f)? {
                return Ok(None);
            }
        }
        let mut per_field: Vec<Vec<Bson>> = Vec::with_capacity(self.key.len());
        let mut any_present = false;
        let mut arrays = 0;
        for field in self.key.keys() {
            let vals: Vec<Bson> = path_values(d, field)
                .into_iter()
                .flat_map(|v| match v {
                    None => vec![Bson::Null],
                    Some(Bson::Array(items)) if items.is_empty() => vec![Bson::Undefined],
                    Some(Bson::Array(items)) => items.clone(),
                    Some(other) => vec![other.clone()],
                })
                .collect();
            if path_values(d, field).iter().any(Option::is_some) {
                any_present = true;
            }
            if vals.len() > 1 {
                arrays += 1;
            }
            per_field.push(vals);
        }
        if self.sparse && !any_present {
            return Ok(None);
        }
        if arrays > 1 {
            return Err(CommandError::new(
                171,
                "CannotIndexParallelArrays",
                format!(
                    "cannot index parallel arrays [{}]",
                    self.key.keys().cloned().collect::<Vec<_>>().join("] [")
                ),
            ));
        }
        // The cartesian product (at most one field has several values).
        let mut keys: Vec<Vec<Bson>> = vec![Vec::new()];
        for vals in per_field {
            let mut next = Vec::with_capacity(keys.len() * vals.len());
            for k in &keys {
                for v in &vals {
                    let mut k2 = k.clone();
                    k2.push(v.clone());
                    next.push(k2);
                }
            }
            keys = next;
        }
        Ok(Some(keys))
    }

    fn encode(key: &[Bson]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in key {
            let IdKey(bytes) = super::id_key(v);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// The duplicate-key error of this index for the key `key`.
    fn duplicate(&self, ns: &str, key: &[Bson]) -> CommandError {
        duplicate_key_error(ns, &self.name, &self.key, key)
    }

    /// Checks that `d` (stored as `seq`) breaks no uniqueness; returns its encoded keys.
    pub(crate) fn check(
        &self,
        ns: &str,
        d: &Document,
        seq: u64,
    ) -> Result<Vec<Vec<u8>>, CommandError> {
        if !self.unique {
            return Ok(Vec::new());
        }
        let Some(keys) = self.key_values(d)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let enc = Self::encode(&k);
            if self.entries.get(&enc).is_some_and(|owner| *owner != seq) {
                return Err(self.duplicate(ns, &k));
            }
            out.push(enc);
        }
        Ok(out)
    }

    /// Records `keys` (from [`Index::check`]) as owned by `seq`.
    pub(crate) fn add(&mut self, keys: Vec<Vec<u8>>, seq: u64) {
        for k in keys {
            self.entries.insert(k, seq);
        }
    }

    /// Forgets the keys of `d` owned by `seq`.
    pub(crate) fn remove(&mut self, d: &Document, seq: u64) {
        if !self.unique {
            return;
        }
        if let Ok(Some(keys)) = self.key_values(d) {
            for k in keys {
                let enc = Self::encode(&k);
                if self.entries.get(&enc) == Some(&seq) {
                    self.entries.remove(&enc);
                }
            }
        }
    }
}

/// mongod's DuplicateKey error: "E11000 duplicate key error collection: <ns> index: <name> dup
/// key: { <field>: <value>, ... }", with `keyPattern` and `keyValue`.
pub(crate) fn duplicate_key_error(
    ns: &str,
    index: &str,
    pattern: &Document,
    key: &[Bson],
) -> CommandError {
    let mut key_value = Document::new();
    for (field, v) in pattern.keys().zip(key) {
        let v = if matches!(v, Bson::Undefined) {
            Bson::Null
        } else {
            v.clone()
        };
        key_value.insert(field.clone(), v);
    }
    let shown: Vec<String> = key_value.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    CommandError::new(
        11000,
        "DuplicateKey",
        format!(
            "E11000 duplicate key error collection: {ns} index: {index} dup key: {{ {} }}",
            shown.join(", ")
        ),
    )
    .with_field("keyPattern", pattern.clone())
    .with_field("keyValue", key_value)
}

/// The name `createIndexes` clients give an index by default: `field_dir` joined by `_`.
#[cfg(test)]
fn default_name(key: &Document) -> String {
    key.iter()
        .map(|(k, v)| {
            format!(
                "{k}_{}",
                match v {
                    Bson::String(s) => s.clone(),
                    other =>
                        as_f64(other).map_or_else(|| other.to_string(), |f| (f as i64).to_string()),
                }
            )
        })
        .collect::<Vec<_>>()
        .join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_conflict_and_sparse_skips() {
        let spec = doc! { "key": { "a": 1 }, "name": "a_1", "unique": true };
        let mut idx = Index::from_spec(&spec).unwrap();
        assert_eq!(default_name(&idx.key), "a_1");
        let k = idx.check("db.c", &doc! { "a": 1 }, 1).unwrap();
        idx.add(k, 1);
        let e = idx.check("db.c", &doc! { "a": 1.0 }, 2).unwrap_err();
        assert_eq!(e.code, 11000);
        assert_eq!(
            e.extra.as_ref().unwrap().get_document("keyValue").unwrap(),
            &doc! { "a": 1.0 }
        );
        assert!(e
            .errmsg
            .starts_with("E11000 duplicate key error collection: db.c index: a_1 dup key: { a: "));
        assert!(
            idx.check("db.c", &doc! { "a": 1 }, 1).is_ok(),
            "its own key"
        );
        assert!(
            idx.check("db.c", &doc! { "a": [2, 1] }, 3).is_err(),
            "an array element"
        );
        let k = idx.check("db.c", &doc! { "b": 1 }, 4).unwrap();
        idx.add(k, 4);
        assert!(
            idx.check("db.c", &doc! { "b": 2 }, 5).is_err(),
            "two missing are two nulls"
        );
        let sparse = Index::from_spec(
            &doc! { "key": { "a": 1 }, "name": "s", "unique": true, "sparse": true },
        )
        .unwrap();
        assert!(sparse.check("db.c", &doc! {}, 1).unwrap().is_empty());
        assert_eq!(
            Index::from_spec(&doc! { "key": {}, "name": "x" })
                .unwrap_err()
                .code,
            67
        );
        assert_eq!(
            Index::from_spec(&doc! { "key": { "a": 1 }, "name": "n", "unique": true })
                .unwrap()
                .to_document(),
            doc! { "v": 2, "key": { "a": 1 }, "name": "n", "unique": true }
        );
    }
}
