//! Update documents: replacements and the update operators `$set $unset $inc $mul $min $max
//! $rename $currentDate $setOnInsert $push $addToSet $pull $pullAll $pop`, with dotted paths
//! (numeric parts index arrays), as the MongoDB manual's update operator reference describes them.

use std::cmp::Ordering;

use bson::{Bson, DateTime, Document};

use super::filter::{as_f64, compare, matches, value_matches_ops, values_equal};
use crate::error::CommandError;

fn failed_to_parse(msg: impl Into<String>) -> CommandError {
    CommandError::new(9, "FailedToParse", msg)
}

fn type_name(v: &Bson) -> &'static str {
    match v {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Boolean(_) => "bool",
        Bson::Null => "null",
        Bson::Int32(_) => "int",
        Bson::Int64(_) => "long",
        Bson::DateTime(_) => "date",
        Bson::ObjectId(_) => "objectId",
        Bson::Timestamp(_) => "timestamp",
        Bson::Binary(_) => "binData",
        _ => "other",
    }
}

const OPERATORS: &[&str] = &[
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$currentDate",
    "$setOnInsert",
    "$push",
    "$addToSet",
    "$pull",
    "$pullAll",
    "$pop",
];

/// Checks an operator-style update before it is applied to any document: known operators,
/// documents as their arguments, no path changed twice (ConflictingUpdateOperators, 40).
pub(crate) fn validate(spec: &Document) -> Result<(), CommandError> {
    let mut paths: Vec<String> = Vec::new();
    for (op, arg) in spec {
        if !OPERATORS.contains(&op.as_str()) {
            return Err(failed_to_parse(format!(
                "Unknown modifier: {op}. Expected a valid update modifier or pipeline-style \
                 update specified as an array"
            )));
        }
        let Bson::Document(fields) = arg else {
            return Err(failed_to_parse(format!(
                "Modifiers operate on fields but we found type {} instead. For example: \
                 {{$mod: {{<field>: ...}}}} not {{{op}: {}}}",
                type_name(arg),
                arg
            )));
        };
        for (path, v) in fields {
            let mut touched = vec![path.clone()];
            if op == "$rename" {
                let Bson::String(to) = v else {
                    return Err(CommandError::bad_value(format!(
                        "The 'to' field for $rename must be a string: {path}: {v}"
                    )));
                };
                if to == path {
                    return Err(CommandError::bad_value(format!(
                        "The source and target field for $rename must differ: {path}: \"{to}\""
                    )));
                }
                touched.push(to.clone());
            }
            for t in touched {
                if t.is_empty() || t.split('.').any(str::is_empty) {
                    return Err(CommandError::new(
                        56,
                        "EmptyFieldName",
                        "An update path cannot contain an empty field name",
                    ));
                }
                if t == "_id" && matches!(op.as_str(), "$unset" | "$rename") {
                    return Err(CommandError::new(
                        66,
                        "ImmutableField",
                        "Performing an update on the path '_id' would modify the immutable field '_id'",
                    ));
                }
                if let Some(other) = paths.iter().find(|p| conflicts(p, &t)) {
                    return Err(CommandError::new(
                        40,
                        "ConflictingUpdateOperators",
                        format!("Updating the path '{t}' would create a conflict at '{other}'"),
                    ));
                }
                paths.push(t);
            }
        }
    }
    Ok(())
}

/// Whether two update paths are the same or one contains the other.
fn conflicts(a: &str, b: &str) -> bool {
    a == b
        || b.strip_prefix(a).is_some_and(|r| r.starts_with('.'))
        || a.strip_prefix(b).is_some_and(|r| r.starts_with('.'))
}

/// Applies an operator-style update to a copy of `base`. `inserting` is true for the document
/// an upsert creates (`$setOnInsert` applies only then).
pub(crate) fn apply(
    base: &Document,
    spec: &Document,
    inserting: bool,
) -> Result<Document, CommandError> {
    let mut d = base.clone();
    for (op, arg) in spec {
        let Bson::Document(fields) = arg else {
            continue;
        };
        for (path, v) in fields {
            apply_one(&mut d, op, path, v, inserting)?;
        }
    }
    Ok(d)
}

fn non_numeric(what: &str, path: &str, v: &Bson) -> CommandError {
    CommandError::type_mismatch(format!(
        "Cannot {what} with non-numeric argument: {{{path}: {v}}}"
    ))
}

fn apply_one(
    d: &mut Document,
    op: &str,
    path: &str,
    v: &Bson,
    inserting: bool,
) -> Result<(), CommandError> {
    match op {
        "$set" => set_path(d, path, v.clone()),
        "$setOnInsert" => {
            if inserting {
                set_path(d, path, v.clone())
            } else {
                Ok(())
            }
        }
        "$unset" => {
            unset_path(d, path);
            Ok(())
        }
        "$inc" | "$mul" => {
            if as_f64(v).is_none() {
                return Err(non_numeric(
                    if op == "$inc" {
                        "increment"
                    } else {
                        "multiply"
                    },
                    path,
                    v,
                ));
            }
            let cur = get_path(d, path).cloned();
            let new = match cur {
                // A missing field is set to the increment, or to 0 of the multiplier's type.
                None => {
                    if op == "$inc" {
                        v.clone()
                    } else {
                        match v {
                            Bson::Int32(_) => Bson::Int32(0),
                            Bson::Int64(_) => Bson::Int64(0),
                            _ => Bson::Double(0.0),
                        }
                    }
                }
                Some(c) => {
                    let r = if op == "$inc" { add(&c, v) } else { mul(&c, v) };
                    r.ok_or_else(|| {
                        CommandError::type_mismatch(format!(
                            "Cannot apply {op} to a value of non-numeric type. {{_id: {}}} has the \
                             field '{path}' of non-numeric type {}",
                            d.get("_id").cloned().unwrap_or(Bson::Null),
                            type_name(&c)
                        ))
                    })?
                }
            };
            set_path(d, path, new)
        }
        "$min" | "$max" => {
            let want = if op == "$min" {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            match get_path(d, path) {
                Some(c) if compare(v, c) != want => Ok(()),
                _ => set_path(d, path, v.clone()),
            }
        }
        "$rename" => {
            let Bson::String(to) = v else { return Ok(()) };
            match get_path(d, path).cloned() {
                None => Ok(()),
                Some(val) => {
                    unset_path(d, path);
                    set_path(d, to, val)
                }
            }
        }
        "$currentDate" => {
            let ts =
                match v {
                    Bson::Boolean(true) => false,
                    Bson::Document(t) => match t.get_str("$type") {
                        Ok("date") => false,
                        Ok("timestamp") => true,
                        _ => return Err(CommandError::bad_value(
                            "The '$type' string field is required to be 'date' or 'timestamp': \
                             {$currentDate: {field : {$type: 'date'}}}",
                        )),
                    },
                    _ => {
                        return Err(CommandError::bad_value(format!(
                        "{v} is not valid type for $currentDate. Please use a boolean ('true') \
                         or a $type expression ({{$type: 'timestamp/date'}})."
                    )))
                    }
                };
            let now = if ts {
                Bson::Timestamp(crate::replset::cluster_time())
            } else {
                Bson::DateTime(DateTime::now())
            };
            set_path(d, path, now)
        }
        "$push" | "$addToSet" => {
            let mut items = match get_path(d, path) {
                None => Vec::new(),
                Some(Bson::Array(a)) => a.clone(),
                Some(other) => {
                    return Err(CommandError::bad_value(format!(
                        "The field '{path}' must be an array but is of type {} in document \
                         {{_id: {}}}",
                        type_name(other),
                        d.get("_id").cloned().unwrap_or(Bson::Null)
                    )))
                }
            };
            let modifiers = match v {
                Bson::Document(m) if m.contains_key("$each") => Some(m),
                _ => None,
            };
            let values: Vec<Bson> = match modifiers {
                Some(m) => match m.get("$each") {
                    Some(Bson::Array(each)) => each.clone(),
                    _ => {
                        return Err(CommandError::bad_value(format!(
                            "The argument to $each in {op} must be an array"
                        )))
                    }
                },
                None => vec![v.clone()],
            };
            if op == "$addToSet" {
                for val in values {
                    if !items.iter().any(|i| values_equal(i, &val)) {
                        items.push(val);
                    }
                }
            } else {
                let m = modifiers.cloned().unwrap_or_default();
                push_with(&mut items, values, &m)?;
            }
            set_path(d, path, Bson::Array(items))
        }
        "$pull" | "$pullAll" => {
            let Some(cur) = get_path(d, path) else {
                return Ok(());
            };
            let Bson::Array(items) = cur else {
                return Err(CommandError::bad_value(format!(
                    "Cannot apply {op} to a non-array value"
                )));
            };
            let mut kept = Vec::with_capacity(items.len());
            for i in items {
                let remove = if op == "$pullAll" {
                    let Bson::Array(values) = v else {
                        return Err(CommandError::bad_value(format!(
                            "$pullAll requires an array argument but was given a {}",
                            type_name(v)
                        )));
                    };
                    values.iter().any(|x| values_equal(x, i))
                } else {
                    pull_matches(i, v)?
                };
                if !remove {
                    kept.push(i.clone());
                }
            }
            set_path(d, path, Bson::Array(kept))
        }
        "$pop" => {
            let first = match as_f64(v) {
                Some(1.0) => false,
                Some(-1.0) => true,
                _ => {
                    return Err(failed_to_parse(format!(
                        "Expected a number in: {path}: {v}"
                    )))
                }
            };
            let Some(cur) = get_path(d, path) else {
                return Ok(());
            };
            let Bson::Array(items) = cur else {
                return Err(CommandError::type_mismatch(format!(
                    "Path '{path}' contains an element of non-array type '{}'",
                    type_name(cur)
                )));
            };
            let mut items = items.clone();
            if !items.is_empty() {
                if first {
                    items.remove(0);
                } else {
                    items.pop();
                }
            }
            set_path(d, path, Bson::Array(items))
        }
        _ => Ok(()),
    }
}

/// `$push` with its modifiers `$position`, `$sort`, `$slice` (applied in that order).
fn push_with(items: &mut Vec<Bson>, values: Vec<Bson>, m: &Document) -> Result<(), CommandError> {
    for k in m.keys() {
        if !matches!(k.as_str(), "$each" | "$position" | "$sort" | "$slice") {
            return Err(CommandError::bad_value(format!(
                "Unrecognized clause in $push: {k}"
            )));
        }
    }
    let at = match m.get("$position").map(as_f64) {
        None => items.len(),
        Some(Some(p)) if p >= 0.0 => (p as usize).min(items.len()),
        Some(Some(p)) => items.len().saturating_sub((-p) as usize),
        Some(None) => {
            return Err(CommandError::bad_value(
                "The value for $position must be an integer value",
            ))
        }
    };
    for (i, v) in values.into_iter().enumerate() {
        items.insert(at + i, v);
    }
    match m.get("$sort") {
        None => {}
        Some(Bson::Document(spec)) => {
            let keys: Vec<(String, bool)> = spec
                .iter()
                .map(|(k, v)| (k.clone(), as_f64(v).is_some_and(|f| f < 0.0)))
                .collect();
            items.sort_by(|a, b| {
                for (k, desc) in &keys {
                    let va = match a {
                        Bson::Document(d) => get_path(d, k).cloned().unwrap_or(Bson::Null),
                        _ => Bson::Null,
                    };
                    let vb = match b {
                        Bson::Document(d) => get_path(d, k).cloned().unwrap_or(Bson::Null),
                        _ => Bson::Null,
                    };
                    let o = compare(&va, &vb);
                    if o != Ordering::Equal {
                        return if *desc { o.reverse() } else { o };
                    }
                }
                Ordering::Equal
            });
        }
        Some(dir) => {
            match as_f64(dir) {
                Some(f) if f == 1.0 || f == -1.0 => {
                    items.sort_by(|a, b| {
                        if f < 0.0 {
                            compare(b, a)
                        } else {
                            compare(a, b)
                        }
                    });
                }
                _ => return Err(CommandError::bad_value(
                    "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to \
                     sort embedded fields",
                )),
            }
        }
    }
    if let Some(s) = m.get("$slice") {
        let n = as_f64(s).ok_or_else(|| {
            CommandError::bad_value("The value for $slice must be an integer value")
        })? as i64;
        if n >= 0 {
            items.truncate(n as usize);
        } else {
            let keep = (-n) as usize;
            if items.len() > keep {
                items.drain(..items.len() - keep);
            }
        }
    }
    Ok(())
}

/// Whether `$pull`'s condition `cond` removes the element `item`.
fn pull_matches(item: &Bson, cond: &Bson) -> Result<bool, CommandError> {
    match cond {
        Bson::Document(c) if c.keys().next().is_some_and(|k| k.starts_with('$')) => {
            value_matches_ops(item, c)
        }
        Bson::Document(c) => match item {
            Bson::Document(d) => matches(d, c),
            _ => Ok(false),
        },
        other => Ok(values_equal(item, other)),
    }
}

fn add(a: &Bson, b: &Bson) -> Option<Bson> {
    Some(match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => match x.checked_add(*y) {
            Some(s) => Bson::Int32(s),
            None => Bson::Int64(i64::from(*x) + i64::from(*y)),
        },
        (Bson::Int32(x), Bson::Int64(y)) | (Bson::Int64(y), Bson::Int32(x)) => {
            Bson::Int64(y.wrapping_add(i64::from(*x)))
        }
        (Bson::Int64(x), Bson::Int64(y)) => Bson::Int64(x.wrapping_add(*y)),
        _ => Bson::Double(as_f64(a)? + as_f64(b)?),
    })
}

fn mul(a: &Bson, b: &Bson) -> Option<Bson> {
    Some(match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => match x.checked_mul(*y) {
            Some(s) => Bson::Int32(s),
            None => Bson::Int64(i64::from(*x) * i64::from(*y)),
        },
        (Bson::Int32(x), Bson::Int64(y)) | (Bson::Int64(y), Bson::Int32(x)) => {
            Bson::Int64(y.wrapping_mul(i64::from(*x)))
        }
        (Bson::Int64(x), Bson::Int64(y)) => Bson::Int64(x.wrapping_mul(*y)),
        _ => Bson::Double(as_f64(a)? * as_f64(b)?),
    })
}

/// The value at a dotted path (numeric parts index arrays).
pub(crate) fn get_path<'a>(d: &'a Document, path: &str) -> Option<&'a Bson> {
    super::filter::get_path(d, path)
}

fn not_viable(part: &str, parent: &Bson) -> CommandError {
    CommandError::new(
        28,
        "PathNotViable",
        format!("Cannot create field '{part}' in element {{{parent}}}"),
    )
}

/// Sets the value at a dotted path, creating documents on the way and padding arrays with nulls.
pub(crate) fn set_path(d: &mut Document, path: &str, v: Bson) -> Result<(), CommandError> {
    match path.split_once('.') {
        None => {
            d.insert(path, v);
            Ok(())
        }
        Some((head, tail)) => {
            if !d.contains_key(head) {
                d.insert(head, Document::new());
            }
            match d.get_mut(head) {
                Some(inner) => set_in(inner, tail, v),
                None => Ok(()),
            }
        }
    }
}

fn set_in(cur: &mut Bson, path: &str, v: Bson) -> Result<(), CommandError> {
    let (part, rest) = match path.split_once('.') {
        None => (path, None),
        Some((p, r)) => (p, Some(r)),
    };
    match cur {
        Bson::Document(d) => match rest {
            None => {
                d.insert(part, v);
                Ok(())
            }
            Some(r) => {
                if !d.contains_key(part) {
                    d.insert(part, Document::new());
                }
                match d.get_mut(part) {
                    Some(inner) => set_in(inner, r, v),
                    None => Ok(()),
                }
            }
        },
        Bson::Array(items) => {
            let Ok(i) = part.parse::<usize>() else {
                return Err(not_viable(part, cur));
            };
            while items.len() <= i {
                items.push(Bson::Null);
            }
            match rest {
                None => {
                    items[i] = v;
                    Ok(())
                }
                Some(r) => {
                    if matches!(items[i], Bson::Null) {
                        items[i] = Bson::Document(Document::new());
                    }
                    set_in(&mut items[i], r, v)
                }
            }
        }
        other => Err(not_viable(part, other)),
    }
}

/// Removes the value at a dotted path (an array element becomes null, as `$unset` does).
pub(crate) fn unset_path(d: &mut Document, path: &str) {
    match path.split_once('.') {
        None => {
            d.remove(path);
        }
        Some((head, tail)) => {
            if let Some(inner) = d.get_mut(head) {
                unset_in(inner, tail);
            }
        }
    }
}

fn unset_in(cur: &mut Bson, path: &str) {
    let (part, rest) = match path.split_once('.') {
        None => (path, None),
        Some((p, r)) => (p, Some(r)),
    };
    match cur {
        Bson::Document(d) => match rest {
            None => {
                d.remove(part);
            }
            Some(r) => {
                if let Some(inner) = d.get_mut(part) {
                    unset_in(inner, r);
                }
            }
        },
        Bson::Array(items) => {
            if let Ok(i) = part.parse::<usize>() {
                if let Some(item) = items.get_mut(i) {
                    match rest {
                        None => *item = Bson::Null,
                        Some(r) => unset_in(item, r),
                    }
                }
            }
        }
        _ => {}
    }
}

/// The document an upsert starts from: the query's equality conditions (top-level, dotted and
/// inside `$and`), without operators.
pub(crate) fn upsert_base(q: &Document) -> Result<Document, CommandError> {
    let mut base = Document::new();
    add_equalities(&mut base, q)?;
    Ok(base)
}

fn add_equalities(base: &mut Document, q: &Document) -> Result<(), CommandError> {
    for (k, v) in q {
        if k == "$and" {
            if let Bson::Array(subs) = v {
                for s in subs {
                    if let Bson::Document(sd) = s {
                        add_equalities(base, sd)?;
                    }
                }
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let value = match v {
            Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                match (d.len(), d.get("$eq")) {
                    (1, Some(eq)) => eq.clone(),
                    _ => continue,
                }
            }
            Bson::RegularExpression(_) => continue,
            other => other.clone(),
        };
        set_path(base, k, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn up(d: Document, spec: Document) -> Document {
        validate(&spec).unwrap();
        apply(&d, &spec, false).unwrap()
    }

    #[test]
    fn operators_follow_the_manual() {
        let d = doc! { "_id": 1, "a": [1, 2, 3], "n": 5, "s": { "x": 1 } };
        assert_eq!(
            up(d.clone(), doc! { "$push": { "a": 4 } })
                .get_array("a")
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            up(
                d.clone(),
                doc! { "$push": { "a": { "$each": [9, 0], "$sort": 1, "$slice": -3 } } }
            ),
            doc! { "_id": 1, "a": [2, 3, 9], "n": 5, "s": { "x": 1 } }
        );
        assert_eq!(
            up(
                d.clone(),
                doc! { "$addToSet": { "a": { "$each": [3, 4] } } }
            )
            .get_array("a")
            .unwrap()
            .len(),
            4
        );
        assert_eq!(
            up(d.clone(), doc! { "$pull": { "a": { "$gte": 2 } } })
                .get_array("a")
                .unwrap(),
            &vec![Bson::Int32(1)]
        );
        assert_eq!(
            up(d.clone(), doc! { "$pop": { "a": -1 } })
                .get_array("a")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            up(d.clone(), doc! { "$mul": { "n": 2 } })
                .get_i32("n")
                .unwrap(),
            10
        );
        assert_eq!(
            up(d.clone(), doc! { "$min": { "n": 3 } })
                .get_i32("n")
                .unwrap(),
            3
        );
        assert_eq!(
            up(d.clone(), doc! { "$max": { "n": 3 } })
                .get_i32("n")
                .unwrap(),
            5
        );
        assert_eq!(
            up(d.clone(), doc! { "$rename": { "s.x": "y" } }),
            doc! { "_id": 1, "a": [1, 2, 3], "n": 5, "s": {}, "y": 1 }
        );
        assert_eq!(
            up(d.clone(), doc! { "$set": { "a.1": 7 } })
                .get_array("a")
                .unwrap()[1],
            Bson::Int32(7)
        );
        assert_eq!(
            validate(&doc! { "$set": { "a": 1 }, "$inc": { "a.b": 1 } })
                .unwrap_err()
                .code,
            40
        );
        assert_eq!(validate(&doc! { "$frob": { "a": 1 } }).unwrap_err().code, 9);
        assert_eq!(
            apply(&d, &doc! { "$push": { "n": 1 } }, false)
                .unwrap_err()
                .code,
            2
        );
        assert_eq!(
            apply(&d, &doc! { "$inc": { "a": 1 } }, false)
                .unwrap_err()
                .code,
            14
        );
        assert_eq!(
            apply(&d, &doc! { "$set": { "n.x": 1 } }, false)
                .unwrap_err()
                .code,
            28
        );
        assert_eq!(
            upsert_base(&doc! { "a.b": 1, "c": { "$gt": 1 }, "$and": [ { "d": 2 } ] }).unwrap(),
            doc! { "a": { "b": 1 }, "d": 2 }
        );
    }
}
