//! Query filters, as mongod's matcher reads them: BSON comparison order, dotted paths that reach
//! into arrays, and the query operators `$eq $ne $gt $gte $lt $lte $in $nin $exists $regex $not
//! $elemMatch $size $type $mod $all $and $or $nor $expr` (plus `$comment`).

use std::cmp::Ordering;

use bson::{Bson, Document, Regex};

use crate::error::CommandError;

/// Numeric value of a BSON number.
pub(crate) fn as_f64(v: &Bson) -> Option<f64> {
    match v {
        Bson::Int32(i) => Some(f64::from(*i)),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(f) => Some(*f),
        _ => None,
    }
}

/// The server's canonical type order, used for sorting and type bracketing.
pub(crate) fn type_rank(v: &Bson) -> u8 {
    match v {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 2,
        Bson::String(_) | Bson::Symbol(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::MaxKey => 13,
        _ => 12,
    }
}

/// BSON comparison order (numbers by value across their types).
pub(crate) fn compare(a: &Bson, b: &Bson) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        _ if ra == 2 => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or_else(|| {
                // NaN sorts before every other number.
                x.is_nan().cmp(&y.is_nan()).reverse()
            }),
            _ => Ordering::Equal,
        },
        (Bson::String(x), Bson::String(y)) => x.cmp(y),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.cmp(y),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .cmp(&y.pattern)
            .then_with(|| x.options.cmp(&y.options)),
        (Bson::Array(x), Bson::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = compare(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Bson::Document(x), Bson::Document(y)) => {
            for ((ka, va), (kb, vb)) in x.iter().zip(y) {
                let o = type_rank(va)
                    .cmp(&type_rank(vb))
                    .then_with(|| ka.cmp(kb))
                    .then_with(|| compare(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => Ordering::Equal,
    }
}

/// Equality as the server sees it (numbers by value, documents field by field in order).
pub(crate) fn values_equal(a: &Bson, b: &Bson) -> bool {
    match (a, b) {
        (Bson::Array(x), Bson::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Bson::Document(x), Bson::Document(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && values_equal(va, vb))
        }
        (Bson::Null | Bson::Undefined, Bson::Null | Bson::Undefined) => true,
        _ => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// The value at a dotted path without reaching into arrays except by a numeric part
/// (sort keys, `distinct`, update targets).
pub(crate) fn get_path<'a>(d: &'a Document, path: &str) -> Option<&'a Bson> {
    let (head, tail) = match path.split_once('.') {
        None => return d.get(path),
        Some(ht) => ht,
    };
    let mut cur = d.get(head)?;
    for part in tail.split('.') {
        cur = match cur {
            Bson::Document(inner) => inner.get(part)?,
            Bson::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The values a dotted path reaches, as the matcher sees them: every array met before the last
/// part is traversed element by element (and indexed, when the next part is a number). `None`
/// is a branch where the path is missing.
pub(crate) fn path_values<'a>(d: &'a Document, path: &str) -> Vec<Option<&'a Bson>> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    match parts.split_first() {
        Some((first, rest)) => match d.get(*first) {
            Some(v) => walk(v, rest, &mut out),
            None => out.push(None),
        },
        None => out.push(None),
    }
    out
}

fn walk<'a>(v: &'a Bson, parts: &[&str], out: &mut Vec<Option<&'a Bson>>) {
    let Some((part, rest)) = parts.split_first() else {
        out.push(Some(v));
        return;
    };
    match v {
        Bson::Document(d) => match d.get(*part) {
            Some(x) => walk(x, rest, out),
            None => out.push(None),
        },
        Bson::Array(items) => {
            let before = out.len();
            if let Ok(i) = part.parse::<usize>() {
                if let Some(x) = items.get(i) {
                    walk(x, rest, out);
                }
            }
            for item in items {
                if matches!(item, Bson::Document(_)) {
                    walk(item, parts, out);
                }
            }
            if out.len() == before {
                out.push(None);
            }
        }
        _ => out.push(None),
    }
}

/// Compiles a regular expression with MongoDB's options (`i`, `m`, `s`, `x`; `u` is implied).
pub(crate) fn compile_regex(pattern: &str, options: &str) -> Result<regex::Regex, CommandError> {
    let mut flags = String::new();
    for c in options.chars() {
        match c {
            'i' | 'm' | 's' | 'x' => flags.push(c),
            'u' | 'l' => {}
            other => {
                return Err(CommandError::new(
                    51108,
                    "Location51108",
                    format!("invalid flag in regex options: {other}"),
                ))
            }
        }
    }
    let full = if flags.is_empty() {
        pattern.to_string()
    } else {
        format!("(?{flags}){pattern}")
    };
    regex::Regex::new(&full).map_err(|e| {
        CommandError::new(
            51091,
            "Location51091",
            format!("Regular expression is invalid: {e}"),
        )
    })
}

fn regex_matches(re: &regex::Regex, v: &Bson) -> bool {
    match v {
        Bson::String(s) | Bson::Symbol(s) => re.is_match(s),
        _ => false,
    }
}

/// The values a predicate on a field is tested against: each reached value, and the elements of
/// those that are arrays.
fn leaves<'a>(vals: &[Option<&'a Bson>]) -> impl Iterator<Item = &'a Bson> + 'a {
    let vals: Vec<Option<&'a Bson>> = vals.to_vec();
    vals.into_iter().flatten().flat_map(|v| {
        let mut items = vec![v];
        if let Bson::Array(a) = v {
            items.extend(a.iter());
        }
        items
    })
}

/// Equality of a field with `v` (a regular expression value matches strings by pattern).
fn field_eq(vals: &[Option<&Bson>], v: &Bson) -> Result<bool, CommandError> {
    if let Bson::RegularExpression(Regex { pattern, options }) = v {
        let re = compile_regex(pattern.as_str(), options.as_str())?;
        return Ok(leaves(vals).any(|x| regex_matches(&re, x) || x == v));
    }
    if matches!(v, Bson::Null) && vals.iter().any(Option::is_none) {
        return Ok(true);
    }
    Ok(leaves(vals).any(|x| values_equal(x, v)))
}

fn field_cmp(vals: &[Option<&Bson>], v: &Bson, want: fn(Ordering) -> bool) -> bool {
    if matches!(v, Bson::Null) && want(Ordering::Equal) && vals.iter().any(Option::is_none) {
        return true;
    }
    leaves(vals).any(|x| {
        // Comparisons stay within a type bracket ($gt: 5 never matches a string), except the
        // MinKey / MaxKey bounds.
        let same = type_rank(x) == type_rank(v) || matches!(v, Bson::MinKey | Bson::MaxKey);
        same && want(compare(x, v))
    })
}

/// Whether `doc` matches the query `filter`.
pub(crate) fn matches(doc: &Document, filter: &Document) -> Result<bool, CommandError> {
    for (k, v) in filter {
        let ok = match k.as_str() {
            "$and" | "$or" | "$nor" => {
                let Bson::Array(subs) = v else {
                    return Err(CommandError::bad_value(format!("{k} must be an array")));
                };
                if subs.is_empty() {
                    return Err(CommandError::bad_value(format!(
                        "{k} argument must be a non-empty array"
                    )));
                }
                let mut results = Vec::with_capacity(subs.len());
                for s in subs {
                    let Bson::Document(sd) = s else {
                        return Err(CommandError::bad_value(format!(
                            "{k} argument's entries must be objects"
                        )));
                    };
                    results.push(matches(doc, sd)?);
                }
                match k.as_str() {
                    "$and" => results.iter().all(|r| *r),
                    "$or" => results.iter().any(|r| *r),
                    _ => !results.iter().any(|r| *r),
                }
            }
            "$expr" => {
                let r = super::expr::evaluate(v, doc)?;
                super::expr::truthy(r.as_ref())
            }
            "$comment" => true,
            op if op.starts_with('$') => {
                return Err(CommandError::bad_value(format!(
                    "unknown top level operator: {op}. If you have a field name that starts \
                     with a '$' symbol, consider using $getField or $setField."
                )))
            }
            path => {
                let vals = path_values(doc, path);
                match v {
                    Bson::Document(ops)
                        if ops.keys().next().is_some_and(|o| o.starts_with('$')) =>
                    {
                        field_ops(&vals, ops)?
                    }
                    other => field_eq(&vals, other)?,
                }
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a single value (an array element, for `$elemMatch` and `$pull`) satisfies `ops`.
pub(crate) fn value_matches_ops(v: &Bson, ops: &Document) -> Result<bool, CommandError> {
    field_ops(&[Some(v)], ops)
}

fn field_ops(vals: &[Option<&Bson>], ops: &Document) -> Result<bool, CommandError> {
    // `$regex` takes its options from a sibling `$options`.
    let options = match ops.get("$options") {
        None => None,
        Some(Bson::String(o)) => Some(o.as_str()),
        Some(_) => return Err(CommandError::bad_value("$options has to be a string")),
    };
    for (op, arg) in ops {
        let ok = match op.as_str() {
            "$eq" => field_eq(vals, arg)?,
            "$ne" => !field_eq(vals, arg)?,
            "$gt" => field_cmp(vals, arg, |o| o == Ordering::Greater),
            "$gte" => field_cmp(vals, arg, |o| o != Ordering::Less),
            "$lt" => field_cmp(vals, arg, |o| o == Ordering::Less),
            "$lte" => field_cmp(vals, arg, |o| o != Ordering::Greater),
            "$in" | "$nin" => {
                let Bson::Array(items) = arg else {
                    return Err(CommandError::bad_value(format!("{op} needs an array")));
                };
                let mut hit = false;
                for i in items {
                    if matches!(i, Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')))
                    {
                        return Err(CommandError::bad_value(format!("cannot nest $ under {op}")));
                    }
                    if field_eq(vals, i)? {
                        hit = true;
                        break;
                    }
                }
                if op == "$in" {
                    hit
                } else {
                    !hit
                }
            }
            "$exists" => {
                let want = match arg {
                    Bson::Boolean(b) => *b,
                    Bson::Null => false,
                    other => as_f64(other).is_none_or(|f| f != 0.0),
                };
                vals.iter().any(Option::is_some) == want
            }
            "$regex" => {
                let (pattern, opts) = match arg {
                    Bson::String(p) => (p.clone(), options.unwrap_or("").to_string()),
                    Bson::RegularExpression(r) => {
                        if options.is_some() && !r.options.is_empty() {
                            return Err(CommandError::bad_value(
                                "options set in both $regex and $options",
                            ));
                        }
                        (
                            r.pattern.as_str().to_string(),
                            options.unwrap_or(r.options.as_str()).to_string(),
                        )
                    }
                    _ => return Err(CommandError::bad_value("$regex has to be a string")),
                };
                let re = compile_regex(&pattern, &opts)?;
                leaves(vals).any(|x| regex_matches(&re, x))
            }
            "$options" => {
                if !ops.contains_key("$regex") {
                    return Err(CommandError::bad_value("$options needs a $regex"));
                }
                true
            }
            "$not" => match arg {
                Bson::Document(inner)
                    if inner.keys().next().is_some_and(|k| k.starts_with('$')) =>
                {
                    !field_ops(vals, inner)?
                }
                Bson::RegularExpression(_) => !field_eq(vals, arg)?,
                _ => return Err(CommandError::bad_value("$not needs a regex or a document")),
            },
            "$elemMatch" => {
                let Bson::Document(cond) = arg else {
                    return Err(CommandError::bad_value("$elemMatch needs an Object"));
                };
                let operator_form = cond.keys().next().is_some_and(|k| {
                    k.starts_with('$') && !matches!(k.as_str(), "$and" | "$or" | "$nor" | "$expr")
                });
                let mut hit = false;
                'outer: for v in vals.iter().flatten() {
                    let Bson::Array(items) = v else { continue };
                    for item in items {
                        let ok = if operator_form {
                            value_matches_ops(item, cond)?
                        } else {
                            match item {
                                Bson::Document(d) => matches(d, cond)?,
                                _ => false,
                            }
                        };
                        if ok {
                            hit = true;
                            break 'outer;
                        }
                    }
                }
                hit
            }
            "$size" => {
                let n = match arg {
                    Bson::Int32(_) | Bson::Int64(_) => as_f64(arg).unwrap_or(-1.0),
                    Bson::Double(f) if f.fract() == 0.0 => *f,
                    _ => return Err(CommandError::bad_value("$size needs a number")),
                };
                if n < 0.0 {
                    return Err(CommandError::bad_value("$size may not be negative"));
                }
                vals.iter()
                    .flatten()
                    .any(|v| matches!(v, Bson::Array(a) if a.len() as f64 == n))
            }
            "$all" => {
                let Bson::Array(items) = arg else {
                    return Err(CommandError::bad_value("$all needs an array"));
                };
                if items.is_empty() {
                    false
                } else {
                    let mut all = true;
                    for i in items {
                        let ok = match i {
                            Bson::Document(d) if d.contains_key("$elemMatch") => {
                                field_ops(vals, d)?
                            }
                            other => field_eq(vals, other)?,
                        };
                        if !ok {
                            all = false;
                            break;
                        }
                    }
                    all
                }
            }
            "$type" => {
                let wanted: Vec<&Bson> = match arg {
                    Bson::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                let mut types = Vec::with_capacity(wanted.len());
                for w in wanted {
                    types.push(TypeSpec::parse(w)?);
                }
                vals.iter().flatten().any(|v| {
                    types.iter().any(|t| t.matches(v))
                        || matches!(v, Bson::Array(a) if a.iter().any(|e| types.iter().any(|t| t.matches(e))))
                })
            }
            "$mod" => {
                let Bson::Array(a) = arg else {
                    return Err(CommandError::bad_value(
                        "malformed mod, needs to be an array",
                    ));
                };
                let (Some(d), Some(r), 2) = (
                    a.first().and_then(as_f64),
                    a.get(1).and_then(as_f64),
                    a.len(),
                ) else {
                    return Err(CommandError::bad_value(
                        "malformed mod, not enough elements",
                    ));
                };
                let (d, r) = (d.trunc() as i64, r.trunc() as i64);
                if d == 0 {
                    return Err(CommandError::bad_value("divisor cannot be 0"));
                }
                leaves(vals).any(|x| {
                    as_f64(x)
                        .is_some_and(|f| f.is_finite() && (f.trunc() as i64).wrapping_rem(d) == r)
                })
            }
            "$comment" => true,
            other => {
                return Err(CommandError::bad_value(format!(
                    "unknown operator: {other}"
                )))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A `$type` argument: a BSON type number or alias, or `"number"`.
enum TypeSpec {
    Code(i32),
    Number,
}

impl TypeSpec {
    fn parse(v: &Bson) -> Result<Self, CommandError> {
        if let Some(f) = as_f64(v) {
            return Ok(TypeSpec::Code(f as i32));
        }
        let Bson::String(s) = v else {
            return Err(CommandError::type_mismatch(
                "type must be represented as a number or a string",
            ));
        };
        let code = match s.as_str() {
            "number" => return Ok(TypeSpec::Number),
            "double" => 1,
            "string" => 2,
            "object" => 3,
            "array" => 4,
            "binData" => 5,
            "undefined" => 6,
            "objectId" => 7,
            "bool" => 8,
            "date" => 9,
            "null" => 10,
            "regex" => 11,
            "dbPointer" => 12,
            "javascript" => 13,
            "symbol" => 14,
            "javascriptWithScope" => 15,
            "int" => 16,
            "timestamp" => 17,
            "long" => 18,
            "decimal" => 19,
            "minKey" => -1,
            "maxKey" => 127,
            other => {
                return Err(CommandError::bad_value(format!(
                    "Unknown type name alias: {other}"
                )))
            }
        };
        Ok(TypeSpec::Code(code))
    }

    fn matches(&self, v: &Bson) -> bool {
        match self {
            TypeSpec::Number => matches!(
                v,
                Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
            ),
            TypeSpec::Code(c) => type_code(v) == *c,
        }
    }
}

/// The BSON type number of a value.
pub(crate) fn type_code(v: &Bson) -> i32 {
    match v {
        Bson::MinKey => -1,
        Bson::MaxKey => 127,
        other => i32::from(other.element_type() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn paths_reach_into_arrays() {
        let d = doc! { "a": [ { "b": 1 }, { "b": [2, 3] }, { "c": 4 }, 5 ] };
        let got: Vec<Option<Bson>> = path_values(&d, "a.b")
            .into_iter()
            .map(|v| v.cloned())
            .collect();
        assert_eq!(
            got,
            vec![
                Some(Bson::Int32(1)),
                Some(Bson::Array(vec![2.into(), 3.into()])),
                None
            ]
        );
        // "a.1.b": element 1's b, and the b of a field "1" of each element (none here).
        let by_index: Vec<_> = path_values(&d, "a.1.b").into_iter().flatten().collect();
        assert_eq!(by_index, vec![&Bson::Array(vec![2.into(), 3.into()])]);
        assert!(matches(&d, &doc! { "a.b": 3 }).unwrap());
        assert!(matches(&d, &doc! { "a.b": null }).unwrap());
        assert!(matches(&d, &doc! { "a.c": { "$gt": 3 } }).unwrap());
        assert!(!matches(&d, &doc! { "a.b": { "$gt": 3 } }).unwrap());
        assert_eq!(get_path(&d, "a.0.b"), Some(&Bson::Int32(1)));
    }

    #[test]
    fn operators_follow_the_manual() {
        let d = doc! { "s": "Hello", "n": 7, "arr": [1, 5, 9], "docs": [ { "k": 1, "v": "a" } ] };
        let yes = |f: Document| assert!(matches(&d, &f).unwrap(), "{f}");
        let no = |f: Document| assert!(!matches(&d, &f).unwrap(), "{f}");
        yes(doc! { "s": { "$regex": "^h", "$options": "i" } });
        no(doc! { "s": { "$regex": "^h" } });
        yes(doc! { "s": { "$not": { "$regex": "^h" } } });
        yes(doc! { "arr": { "$elemMatch": { "$gt": 4, "$lt": 6 } } });
        no(doc! { "arr": { "$elemMatch": { "$gt": 5, "$lt": 9 } } });
        yes(doc! { "docs": { "$elemMatch": { "k": 1, "v": "a" } } });
        yes(doc! { "arr": { "$size": 3 } });
        yes(doc! { "n": { "$type": "int" } });
        yes(doc! { "arr": { "$type": "array" } });
        yes(doc! { "n": { "$mod": [4, 3] } });
        yes(doc! { "arr": { "$all": [9, 1] } });
        yes(doc! { "$expr": { "$lt": ["$n", 10] } });
        no(doc! { "missing": { "$exists": true } });
        assert_eq!(
            matches(&d, &doc! { "s": { "$regex": "(" } })
                .unwrap_err()
                .code,
            51091
        );
        assert_eq!(
            matches(&d, &doc! { "s": { "$nope": 1 } }).unwrap_err().code,
            2
        );
    }
}
