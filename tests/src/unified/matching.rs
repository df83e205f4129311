//! The unified format's matching rules ("Evaluating Matches"): expected values may hold special
//! `$$` operators, root-level documents may have extra fields, numbers compare by value across
//! int32 / int64 / double, arrays must have the same length.

use bson::{Bson, Document};

/// Values the `$$matchesEntity` operator can look up (saved results, by entity id).
pub trait EntityLookup {
    /// The BSON value of entity `id`, if it is one.
    fn bson_entity(&self, id: &str) -> Option<Bson>;
}

/// No entities (for matching outside a test, e.g. unit tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEntities;

impl EntityLookup for NoEntities {
    fn bson_entity(&self, _id: &str) -> Option<Bson> {
        None
    }
}

/// Matches `expected` against `actual` as a root-level value (a document may have extra
/// fields at the top level only). The error says where and why they differ.
pub fn match_root(
    expected: &Bson,
    actual: &Bson,
    entities: &dyn EntityLookup,
) -> Result<(), String> {
    Matcher { entities }.value(expected, Some(actual), true, "")
}

/// Matches `expected` against `actual` where an array's elements are root-level documents
/// (results iterated from a cursor: `find`, `aggregate`, ...).
pub fn match_root_elements(
    expected: &Bson,
    actual: &Bson,
    entities: &dyn EntityLookup,
) -> Result<(), String> {
    let m = Matcher { entities };
    match (expected, actual) {
        (Bson::Array(e), Bson::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "expected {} documents, got {}: {}",
                    e.len(),
                    a.len(),
                    Bson::Array(a.clone())
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                m.value(ev, Some(av), true, &format!("[{i}]"))?;
            }
            Ok(())
        }
        _ => m.value(expected, Some(actual), true, ""),
    }
}

/// Whether `d` is a special operator: a document whose first and only key starts with `$$`.
pub fn operator(d: &Document) -> Option<(&str, &Bson)> {
    if d.len() != 1 {
        return None;
    }
    let (k, v) = d.iter().next()?;
    k.starts_with("$$").then_some((k.as_str(), v))
}

struct Matcher<'a> {
    entities: &'a dyn EntityLookup,
}

impl Matcher<'_> {
    fn value(
        &self,
        expected: &Bson,
        actual: Option<&Bson>,
        root: bool,
        path: &str,
    ) -> Result<(), String> {
        if let Bson::Document(d) = expected {
            if let Some((op, arg)) = operator(d) {
                return self.operator(op, arg, actual, root, path);
            }
        }
        let Some(actual) = actual else {
            return Err(format!(
                "{}: expected {expected}, the value is missing",
                at(path)
            ));
        };
        match expected {
            Bson::Document(e) => {
                let Bson::Document(a) = actual else {
                    return Err(format!(
                        "{}: expected a document {expected}, got {actual}",
                        at(path)
                    ));
                };
                for (k, ev) in e {
                    self.value(ev, a.get(k), false, &format!("{path}.{k}"))?;
                }
                if !root {
                    if let Some(extra) = a.keys().find(|k| !e.contains_key(k.as_str())) {
                        return Err(format!(
                            "{}: unexpected field {extra:?} in nested document {actual} (expected {expected})",
                            at(path)
                        ));
                    }
                }
                Ok(())
            }
            Bson::Array(e) => {
                let Bson::Array(a) = actual else {
                    return Err(format!(
                        "{}: expected an array {expected}, got {actual}",
                        at(path)
                    ));
                };
                if e.len() != a.len() {
                    return Err(format!(
                        "{}: expected {} elements {expected}, got {} {actual}",
                        at(path),
                        e.len(),
                        a.len()
                    ));
                }
                for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                    self.value(ev, Some(av), false, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            _ => {
                if scalar_eq(expected, actual) {
                    Ok(())
                } else {
                    Err(format!(
                        "{}: expected {expected:?}, got {actual:?}",
                        at(path)
                    ))
                }
            }
        }
    }

    fn operator(
        &self,
        op: &str,
        arg: &Bson,
        actual: Option<&Bson>,
        root: bool,
        path: &str,
    ) -> Result<(), String> {
        match op {
            "$$exists" => {
                let want = arg
                    .as_bool()
                    .ok_or_else(|| format!("{}: $$exists takes a boolean", at(path)))?;
                if want == actual.is_some() {
                    Ok(())
                } else if want {
                    Err(format!("{}: expected the field to exist", at(path)))
                } else {
                    Err(format!(
                        "{}: expected no field, got {}",
                        at(path),
                        actual.map(ToString::to_string).unwrap_or_default()
                    ))
                }
            }
            "$$unsetOrMatches" => match actual {
                None => Ok(()),
                Some(a) => self.value(arg, Some(a), root, path),
            },
            "$$type" => {
                let actual = actual.ok_or_else(|| {
                    format!(
                        "{}: expected a value of type {arg}, it is missing",
                        at(path)
                    )
                })?;
                let names: Vec<&str> = match arg {
                    Bson::String(s) => vec![s.as_str()],
                    Bson::Array(a) => a.iter().filter_map(Bson::as_str).collect(),
                    _ => return Err(format!("{}: $$type takes a string or an array", at(path))),
                };
                if names.iter().any(|n| type_matches(n, actual)) {
                    Ok(())
                } else {
                    Err(format!("{}: expected type {arg}, got {actual:?}", at(path)))
                }
            }
            "$$matchesEntity" => {
                let id = arg
                    .as_str()
                    .ok_or_else(|| format!("{}: $$matchesEntity takes an entity id", at(path)))?;
                let value = self
                    .entities
                    .bson_entity(id)
                    .ok_or_else(|| format!("{}: no BSON entity {id:?}", at(path)))?;
                self.value(&value, actual, root, path)
            }
            "$$matchesHexBytes" => {
                let hex = arg
                    .as_str()
                    .ok_or_else(|| format!("{}: $$matchesHexBytes takes a string", at(path)))?;
                match actual {
                    Some(Bson::Binary(b)) if to_hex(&b.bytes).eq_ignore_ascii_case(hex) => Ok(()),
                    other => Err(format!("{}: expected bytes {hex}, got {other:?}", at(path))),
                }
            }
            "$$lte" => {
                let limit =
                    as_f64(arg).ok_or_else(|| format!("{}: $$lte takes a number", at(path)))?;
                match actual.and_then(as_f64) {
                    Some(v) if v <= limit => Ok(()),
                    _ => Err(format!(
                        "{}: expected a number <= {arg}, got {actual:?}",
                        at(path)
                    )),
                }
            }
            "$$matchAsRoot" => self.value(arg, actual, true, path),
            "$$matchAsDocument" => {
                let text = match actual {
                    Some(Bson::String(s)) => s,
                    other => {
                        return Err(format!(
                            "{}: expected a JSON string, got {other:?}",
                            at(path)
                        ))
                    }
                };
                let json: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| format!("{}: not JSON ({e}): {text}", at(path)))?;
                let parsed = Bson::try_from(json)
                    .map_err(|e| format!("{}: not extended JSON ({e}): {text}", at(path)))?;
                self.value(arg, Some(&parsed), false, path)
            }
            "$$sessionLsid" => Err(format!(
                "{}: $$sessionLsid needs sessions, which the runner does not support",
                at(path)
            )),
            other => Err(format!("{}: unknown special operator {other}", at(path))),
        }
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

/// A number as `f64`, for int32, int64 and double.
fn as_f64(b: &Bson) -> Option<f64> {
    match b {
        Bson::Int32(i) => Some(f64::from(*i)),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(d) => Some(*d),
        _ => None,
    }
}

/// Equality of non-container values, with int32 / int64 / double equal by value.
fn scalar_eq(expected: &Bson, actual: &Bson) -> bool {
    match (expected, actual) {
        (Bson::Int32(a), Bson::Int32(b)) => a == b,
        (Bson::Int64(a), Bson::Int64(b)) => a == b,
        (Bson::Int32(a), Bson::Int64(b)) | (Bson::Int64(b), Bson::Int32(a)) => i64::from(*a) == *b,
        _ => match (as_f64(expected), as_f64(actual)) {
            (Some(a), Some(b)) => a == b,
            _ => expected == actual,
        },
    }
}

/// Whether `v` has the BSON type named `name` (the `$type` query operator's aliases).
fn type_matches(name: &str, v: &Bson) -> bool {
    match name {
        "double" => matches!(v, Bson::Double(_)),
        "string" => matches!(v, Bson::String(_)),
        "object" => matches!(v, Bson::Document(_)),
        "array" => matches!(v, Bson::Array(_)),
        "binData" => matches!(v, Bson::Binary(_)),
        "undefined" => matches!(v, Bson::Undefined),
        "objectId" => matches!(v, Bson::ObjectId(_)),
        "bool" => matches!(v, Bson::Boolean(_)),
        "date" => matches!(v, Bson::DateTime(_)),
        "null" => matches!(v, Bson::Null),
        "regex" => matches!(v, Bson::RegularExpression(_)),
        "dbPointer" => matches!(v, Bson::DbPointer(_)),
        "javascript" => matches!(v, Bson::JavaScriptCode(_)),
        "symbol" => matches!(v, Bson::Symbol(_)),
        "javascriptWithScope" => matches!(v, Bson::JavaScriptCodeWithScope(_)),
        "int" => matches!(v, Bson::Int32(_)),
        "timestamp" => matches!(v, Bson::Timestamp(_)),
        "long" => matches!(v, Bson::Int64(_)),
        "decimal" => matches!(v, Bson::Decimal128(_)),
        "minKey" => matches!(v, Bson::MinKey),
        "maxKey" => matches!(v, Bson::MaxKey),
        "number" => matches!(
            v,
            Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
        ),
        _ => false,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    fn root(e: Bson, a: Bson) -> Result<(), String> {
        match_root(&e, &a, &NoEntities)
    }

    #[test]
    fn extra_fields_only_at_root() {
        assert!(root(bson!({"x": 1}), bson!({"x": 1, "y": 2})).is_ok());
        assert!(root(bson!({"x": {"y": 1}}), bson!({"x": {"y": 1, "z": 1}})).is_err());
        assert!(root(bson!({"x": 1, "y": 1}), bson!({"x": 1})).is_err());
        assert!(root(bson!({"x": [{"a": 1}]}), bson!({"x": [{"a": 1, "b": 2}]})).is_err());
    }

    #[test]
    fn numbers_match_by_value() {
        assert!(root(bson!({"n": 1}), bson!({"n": 1.0})).is_ok());
        assert!(root(bson!({"n": 1_i64}), bson!({"n": 1})).is_ok());
        assert!(root(bson!({"n": 1}), bson!({"n": 1.5})).is_err());
        assert!(root(bson!({"n": 1}), bson!({"n": "1"})).is_err());
    }

    #[test]
    fn arrays_need_the_same_length() {
        assert!(root(bson!([1, 2, 3]), bson!([1, 2, 3, 4])).is_err());
        assert!(root(bson!([1, 2]), bson!([1, 2])).is_ok());
    }

    #[test]
    fn exists_and_unset_or_matches() {
        assert!(root(bson!({"a": {"$$exists": true}}), bson!({"a": null})).is_ok());
        assert!(root(bson!({"a": {"$$exists": true}}), bson!({})).is_err());
        assert!(root(bson!({"a": {"$$exists": false}}), bson!({})).is_ok());
        assert!(root(bson!({"a": {"$$exists": false}}), bson!({"a": 1})).is_err());
        assert!(root(bson!({"a": {"$$unsetOrMatches": 2}}), bson!({})).is_ok());
        assert!(root(bson!({"a": {"$$unsetOrMatches": 2}}), bson!({"a": 2})).is_ok());
        assert!(root(bson!({"a": {"$$unsetOrMatches": 2}}), bson!({"a": 3})).is_err());
        // At the root, the unset case means "no result"; a document result still matches.
        assert!(root(
            bson!({"$$unsetOrMatches": {"x": 1}}),
            bson!({"x": 1, "y": 2})
        )
        .is_ok());
    }

    #[test]
    fn type_operator() {
        assert!(root(bson!({"a": {"$$type": "int"}}), bson!({"a": 1})).is_ok());
        assert!(root(
            bson!({"a": {"$$type": ["long", "int"]}}),
            bson!({"a": 1_i64})
        )
        .is_ok());
        assert!(root(bson!({"a": {"$$type": "string"}}), bson!({"a": 1})).is_err());
        assert!(root(bson!({"a": {"$$type": "objectId"}}), bson!({})).is_err());
    }

    #[test]
    fn lte_and_entities() {
        assert!(root(bson!({"a": {"$$lte": 5}}), bson!({"a": 5})).is_ok());
        assert!(root(bson!({"a": {"$$lte": 5}}), bson!({"a": 6})).is_err());
        struct One;
        impl EntityLookup for One {
            fn bson_entity(&self, id: &str) -> Option<Bson> {
                (id == "x").then(|| bson!({"k": 1}))
            }
        }
        let e = bson!({"v": {"$$matchesEntity": "x"}});
        assert!(match_root(&e, &bson!({"v": {"k": 1}}), &One).is_ok());
        assert!(match_root(&e, &bson!({"v": {"k": 2}}), &One).is_err());
        assert!(match_root(
            &bson!({"v": {"$$matchesEntity": "y"}}),
            &bson!({"v": 1}),
            &One
        )
        .is_err());
    }

    #[test]
    fn root_elements() {
        let e = bson!([{"x": 1}, {"x": 2}]);
        let a = bson!([{"x": 1, "y": 1}, {"x": 2, "y": 2}]);
        assert!(match_root_elements(&e, &a, &NoEntities).is_ok());
        assert!(match_root(&e, &a, &NoEntities).is_err());
        assert!(match_root_elements(&e, &bson!([{"x": 1}]), &NoEntities).is_err());
    }

    #[test]
    fn operator_detection() {
        assert!(operator(&doc! {"$$type": "int"}).is_some());
        assert!(operator(&doc! {"$set": {}}).is_none());
        assert!(operator(&doc! {"$$type": "int", "x": 1}).is_none());
    }
}
