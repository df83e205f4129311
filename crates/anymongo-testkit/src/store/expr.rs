//! Aggregation expressions (`$expr`, `$addFields`, `$project`, `$group`): field paths, `$$ROOT`,
//! literals and the common operators. A missing value is `None`, as mongod tells it from null.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::filter::{as_f64, compare, compile_regex, type_code, values_equal};
use crate::error::CommandError;

type Value = Option<Bson>;

fn invalid(msg: impl Into<String>) -> CommandError {
    CommandError::new(168, "InvalidPipelineOperator", msg)
}

/// Evaluates `expr` against the document `root` (`$$ROOT` and `$$CURRENT`).
pub(crate) fn evaluate(expr: &Bson, root: &Document) -> Result<Value, CommandError> {
    eval(expr, root)
}

/// Whether a value counts as true (`$expr`, `$cond`, `$and`, ...): not missing, null, false, 0.
pub(crate) fn truthy(v: Option<&Bson>) -> bool {
    match v {
        None | Some(Bson::Null | Bson::Undefined) => false,
        Some(Bson::Boolean(b)) => *b,
        Some(other) => as_f64(other).is_none_or(|f| f != 0.0),
    }
}

/// A `$field.path` of `root`: arrays along the way give arrays of what their documents hold.
pub(crate) fn field_path(root: &Document, path: &str) -> Value {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut cur = root.get(first)?.clone();
    for part in parts {
        cur = step(&cur, part)?;
    }
    Some(cur)
}

fn step(v: &Bson, part: &str) -> Value {
    match v {
        Bson::Document(d) => d.get(part).cloned(),
        Bson::Array(items) => Some(Bson::Array(
            items.iter().filter_map(|i| step(i, part)).collect(),
        )),
        _ => None,
    }
}

fn eval(expr: &Bson, root: &Document) -> Result<Value, CommandError> {
    match expr {
        Bson::String(s) if s.starts_with("$$") => {
            let var = &s[2..];
            let (name, rest) = match var.split_once('.') {
                Some((n, r)) => (n, Some(r)),
                None => (var, None),
            };
            match name {
                "ROOT" | "CURRENT" => Ok(match rest {
                    None => Some(Bson::Document(root.clone())),
                    Some(p) => field_path(root, p),
                }),
                "REMOVE" => Ok(None),
                "NOW" => Ok(Some(Bson::DateTime(bson::DateTime::now()))),
                other => Err(CommandError::new(
                    17276,
                    "Location17276",
                    format!("Use of undefined variable: {other}"),
                )),
            }
        }
        Bson::String(s) if s.starts_with('$') => Ok(field_path(root, &s[1..])),
        Bson::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(eval(i, root)?.unwrap_or(Bson::Null));
            }
            Ok(Some(Bson::Array(out)))
        }
        Bson::Document(d) => match d.iter().next() {
            Some((k, arg)) if k.starts_with('$') => {
                if d.len() != 1 {
                    return Err(invalid(format!(
                        "an expression specification must contain exactly one field, the name of \
                         the expression. Found {} fields",
                        d.len()
                    )));
                }
                operator(k, arg, root)
            }
            _ => {
                let mut out = Document::new();
                for (k, v) in d {
                    if let Some(x) = eval(v, root)? {
                        out.insert(k.clone(), x);
                    }
                }
                Ok(Some(Bson::Document(out)))
            }
        },
        other => Ok(Some(other.clone())),
    }
}

/// The arguments of an operator: an array's elements, or the one argument.
fn args(arg: &Bson, root: &Document) -> Result<Vec<Value>, CommandError> {
    match arg {
        Bson::Array(items) => items.iter().map(|i| eval(i, root)).collect(),
        other => Ok(vec![eval(other, root)?]),
    }
}

fn nullish(v: &Value) -> bool {
    matches!(v, None | Some(Bson::Null | Bson::Undefined))
}

/// Missing sorts below null in aggregation comparisons.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => compare(x, y),
    }
}

fn arith(name: &str, vals: &[Value]) -> Result<Value, CommandError> {
    if vals.iter().any(nullish) {
        return Ok(Some(Bson::Null));
    }
    let nums: Vec<&Bson> = vals.iter().flatten().collect();
    for n in &nums {
        if as_f64(n).is_none() && !matches!(n, Bson::DateTime(_)) {
            return Err(CommandError::type_mismatch(format!(
                "{name} only supports numeric types, not {:?}",
                n.element_type()
            )));
        }
    }
    let all_int = nums
        .iter()
        .all(|n| matches!(n, Bson::Int32(_) | Bson::Int64(_)));
    let ints = |f: fn(i64, i64) -> Option<i64>, init: i64| -> Option<Bson> {
        let mut acc = init;
        for n in &nums {
            let v = match n {
                Bson::Int32(i) => i64::from(*i),
                Bson::Int64(i) => *i,
                _ => return None,
            };
            acc = f(acc, v)?;
        }
        let wide = nums.iter().any(|n| matches!(n, Bson::Int64(_)));
        Some(match i32::try_from(acc) {
            Ok(small) if !wide => Bson::Int32(small),
            _ => Bson::Int64(acc),
        })
    };
    let float = |v: f64| Some(Bson::Double(v));
    Ok(match name {
        "$add" => {
            if let Some(Bson::DateTime(base)) = nums
                .iter()
                .find(|n| matches!(n, Bson::DateTime(_)))
                .copied()
            {
                let ms: f64 = nums.iter().filter_map(|n| as_f64(n)).sum();
                return Ok(Some(Bson::DateTime(bson::DateTime::from_millis(
                    base.timestamp_millis() + ms as i64,
                ))));
            }
            if all_int {
                ints(i64::checked_add, 0)
                    .or_else(|| float(nums.iter().filter_map(|n| as_f64(n)).sum()))
            } else {
                float(nums.iter().filter_map(|n| as_f64(n)).sum())
            }
        }
        "$multiply" => {
            if all_int {
                ints(i64::checked_mul, 1)
                    .or_else(|| float(nums.iter().filter_map(|n| as_f64(n)).product()))
            } else {
                float(nums.iter().filter_map(|n| as_f64(n)).product())
            }
        }
        _ => {
            let [a, b] = nums.as_slice() else {
                return Err(invalid(format!(
                    "Expression {name} takes exactly 2 arguments"
                )));
            };
            let (x, y) = (as_f64(a).unwrap_or(0.0), as_f64(b).unwrap_or(0.0));
            match name {
                "$subtract" => {
                    if all_int {
                        let (p, q) = (x as i64, y as i64);
                        match p.checked_sub(q) {
                            Some(r) if matches!((a, b), (Bson::Int32(_), Bson::Int32(_))) => {
                                Some(i32::try_from(r).map_or(Bson::Int64(r), Bson::Int32))
                            }
                            Some(r) => Some(Bson::Int64(r)),
                            None => float(x - y),
                        }
                    } else {
                        float(x - y)
                    }
                }
                "$divide" => {
                    if y == 0.0 {
                        return Err(CommandError::bad_value("can't $divide by zero"));
                    }
                    float(x / y)
                }
                _ => {
                    if y == 0.0 {
                        return Err(CommandError::bad_value("can't $mod by zero"));
                    }
                    if all_int {
                        let r = (x as i64) % (y as i64);
                        if matches!((a, b), (Bson::Int32(_), Bson::Int32(_))) {
                            Some(Bson::Int32(r as i32))
                        } else {
                            Some(Bson::Int64(r))
                        }
                    } else {
                        float(x % y)
                    }
                }
            }
        }
    })
}

fn operator(name: &str, arg: &Bson, root: &Document) -> Result<Value, CommandError> {
    match name {
        "$literal" => Ok(Some(arg.clone())),
        "$add" | "$multiply" | "$subtract" | "$divide" | "$mod" => {
            let vals = args(arg, root)?;
            arith(name, &vals)
        }
        "$abs" => {
            let v = args(arg, root)?.into_iter().next().flatten();
            Ok(match v {
                None | Some(Bson::Null) => Some(Bson::Null),
                Some(Bson::Int32(i)) => Some(Bson::Int32(i.wrapping_abs())),
                Some(Bson::Int64(i)) => Some(Bson::Int64(i.wrapping_abs())),
                Some(Bson::Double(f)) => Some(Bson::Double(f.abs())),
                Some(_) => {
                    return Err(CommandError::type_mismatch(
                        "$abs only supports numeric types",
                    ))
                }
            })
        }
        "$concat" => {
            let vals = args(arg, root)?;
            let mut out = String::new();
            for v in &vals {
                match v {
                    None | Some(Bson::Null) => return Ok(Some(Bson::Null)),
                    Some(Bson::String(s)) => out.push_str(s),
                    Some(other) => {
                        return Err(CommandError::new(
                            16702,
                            "Location16702",
                            format!(
                                "$concat only supports strings, not {:?}",
                                other.element_type()
                            ),
                        ))
                    }
                }
            }
            Ok(Some(Bson::String(out)))
        }
        "$toUpper" | "$toLower" => {
            let v = args(arg, root)?.into_iter().next().flatten();
            let s = match v {
                None | Some(Bson::Null) => String::new(),
                Some(Bson::String(s)) => s,
                Some(other) => other.to_string(),
            };
            Ok(Some(Bson::String(if name == "$toUpper" {
                s.to_uppercase()
            } else {
                s.to_lowercase()
            })))
        }
        "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$cmp" => {
            let vals = args(arg, root)?;
            let [a, b] = vals.as_slice() else {
                return Err(invalid(format!(
                    "Expression {name} takes exactly 2 arguments"
                )));
            };
            let o = cmp_values(a, b);
            let eq = match (a, b) {
                (Some(x), Some(y)) => values_equal(x, y),
                (None, None) => true,
                _ => false,
            };
            Ok(Some(match name {
                "$eq" => Bson::Boolean(eq),
                "$ne" => Bson::Boolean(!eq),
                "$gt" => Bson::Boolean(o == Ordering::Greater && !eq),
                "$gte" => Bson::Boolean(o != Ordering::Less || eq),
                "$lt" => Bson::Boolean(o == Ordering::Less && !eq),
                "$lte" => Bson::Boolean(o != Ordering::Greater || eq),
                _ => Bson::Int32(match o {
                    _ if eq => 0,
                    Ordering::Less => -1,
                    Ordering::Equal => 0,
                    Ordering::Greater => 1,
                }),
            }))
        }
        "$and" => {
            let Bson::Array(items) = arg else {
                return Ok(Some(Bson::Boolean(truthy(eval(arg, root)?.as_ref()))));
            };
            for i in items {
                if !truthy(eval(i, root)?.as_ref()) {
                    return Ok(Some(Bson::Boolean(false)));
                }
            }
            Ok(Some(Bson::Boolean(true)))
        }
        "$or" => {
            let Bson::Array(items) = arg else {
                return Ok(Some(Bson::Boolean(truthy(eval(arg, root)?.as_ref()))));
            };
            for i in items {
                if truthy(eval(i, root)?.as_ref()) {
                    return Ok(Some(Bson::Boolean(true)));
                }
            }
            Ok(Some(Bson::Boolean(false)))
        }
        "$not" => {
            let v = args(arg, root)?.into_iter().next().flatten();
            Ok(Some(Bson::Boolean(!truthy(v.as_ref()))))
        }
        "$cond" => {
            let (c, t, e) = match arg {
                Bson::Array(a) if a.len() == 3 => (&a[0], &a[1], &a[2]),
                Bson::Document(d) => match (d.get("if"), d.get("then"), d.get("else")) {
                    (Some(c), Some(t), Some(e)) => (c, t, e),
                    _ => return Err(invalid("$cond needs if, then and else")),
                },
                _ => return Err(invalid("Expression $cond takes exactly 3 arguments")),
            };
            if truthy(eval(c, root)?.as_ref()) {
                eval(t, root)
            } else {
                eval(e, root)
            }
        }
        "$ifNull" => {
            let Bson::Array(items) = arg else {
                return Err(invalid("$ifNull needs at least two arguments"));
            };
            if items.len() < 2 {
                return Err(invalid("$ifNull needs at least two arguments"));
            }
            let last = items.len() - 1;
            for (i, item) in items.iter().enumerate() {
                let v = eval(item, root)?;
                if i == last || !nullish(&v) {
                    return Ok(v);
                }
            }
            Ok(Some(Bson::Null))
        }
        "$size" => match args(arg, root)?.into_iter().next().flatten() {
            Some(Bson::Array(a)) => Ok(Some(Bson::Int32(a.len() as i32))),
            other => Err(CommandError::new(
                17124,
                "Location17124",
                format!(
                    "The argument to $size must be an array. Type of argument: {}",
                    type_name(other.as_ref())
                ),
            )),
        },
        "$isArray" => {
            let v = args(arg, root)?.into_iter().next().flatten();
            Ok(Some(Bson::Boolean(matches!(v, Some(Bson::Array(_))))))
        }
        "$in" => {
            let vals = args(arg, root)?;
            let [needle, hay] = vals.as_slice() else {
                return Err(invalid("Expression $in takes exactly 2 arguments"));
            };
            let Some(Bson::Array(hay)) = hay else {
                return Err(CommandError::new(
                    40081,
                    "Location40081",
                    "$in requires an array as a second argument",
                ));
            };
            let needle = needle.clone().unwrap_or(Bson::Null);
            Ok(Some(Bson::Boolean(
                hay.iter().any(|h| values_equal(h, &needle)),
            )))
        }
        "$arrayElemAt" => {
            let vals = args(arg, root)?;
            let [arr, idx] = vals.as_slice() else {
                return Err(invalid("Expression $arrayElemAt takes exactly 2 arguments"));
            };
            if nullish(arr) || nullish(idx) {
                return Ok(Some(Bson::Null));
            }
            let (Some(Bson::Array(a)), Some(i)) = (arr, idx.as_ref().and_then(as_f64)) else {
                return Err(CommandError::new(
                    28689,
                    "Location28689",
                    "$arrayElemAt's first argument must be an array",
                ));
            };
            let i = i as i64;
            let pos = if i < 0 { a.len() as i64 + i } else { i };
            Ok(usize::try_from(pos).ok().and_then(|p| a.get(p)).cloned())
        }
        "$concatArrays" => {
            let mut out = Vec::new();
            for v in args(arg, root)? {
                match v {
                    None | Some(Bson::Null) => return Ok(Some(Bson::Null)),
                    Some(Bson::Array(a)) => out.extend(a),
                    Some(_) => {
                        return Err(CommandError::new(
                            28664,
                            "Location28664",
                            "$concatArrays only supports arrays",
                        ))
                    }
                }
            }
            Ok(Some(Bson::Array(out)))
        }
        "$type" => {
            let v = args(arg, root)?.into_iter().next().flatten();
            Ok(Some(Bson::String(type_name(v.as_ref()).to_string())))
        }
        "$sum" | "$avg" | "$min" | "$max" => {
            let vals = args(arg, root)?;
            // One array argument: the operator applies to its elements.
            let items: Vec<Bson> = match vals.as_slice() {
                [Some(Bson::Array(a))] => a.clone(),
                _ => vals.into_iter().flatten().collect(),
            };
            let mut acc = Accumulator::new(&name[1..]);
            for i in &items {
                acc.add(Some(i));
            }
            Ok(Some(acc.finish()))
        }
        "$toString" => {
            let v = args(arg, root)?.into_iter().next().flatten();
            Ok(match v {
                None | Some(Bson::Null) => Some(Bson::Null),
                Some(Bson::String(s)) => Some(Bson::String(s)),
                Some(Bson::ObjectId(o)) => Some(Bson::String(o.to_hex())),
                Some(Bson::Int32(i)) => Some(Bson::String(i.to_string())),
                Some(Bson::Int64(i)) => Some(Bson::String(i.to_string())),
                Some(Bson::Double(f)) => Some(Bson::String(f.to_string())),
                Some(Bson::Boolean(b)) => Some(Bson::String(b.to_string())),
                Some(other) => Some(Bson::String(other.to_string())),
            })
        }
        "$regexMatch" => {
            let Bson::Document(d) = arg else {
                return Err(invalid("$regexMatch expects an object of named arguments"));
            };
            let input = eval(d.get("input").unwrap_or(&Bson::Null), root)?;
            let regex = eval(d.get("regex").unwrap_or(&Bson::Null), root)?;
            let options = match d.get("options") {
                Some(o) => match eval(o, root)? {
                    Some(Bson::String(s)) => s,
                    _ => String::new(),
                },
                None => String::new(),
            };
            let (pattern, opts) = match regex {
                Some(Bson::String(p)) => (p, options),
                Some(Bson::RegularExpression(r)) => (
                    r.pattern.as_str().to_string(),
                    format!("{}{options}", r.options.as_str()),
                ),
                _ => return Ok(Some(Bson::Boolean(false))),
            };
            let re = compile_regex(&pattern, &opts)?;
            Ok(Some(Bson::Boolean(
                matches!(input, Some(Bson::String(s)) if re.is_match(&s)),
            )))
        }
        other => Err(invalid(format!("Unrecognized expression '{other}'"))),
    }
}

/// `$type`'s names.
fn type_name(v: Option<&Bson>) -> &'static str {
    let Some(v) = v else { return "missing" };
    match type_code(v) {
        1 => "double",
        2 => "string",
        3 => "object",
        4 => "array",
        5 => "binData",
        6 => "undefined",
        7 => "objectId",
        8 => "bool",
        9 => "date",
        10 => "null",
        11 => "regex",
        13 => "javascript",
        14 => "symbol",
        16 => "int",
        17 => "timestamp",
        18 => "long",
        19 => "decimal",
        -1 => "minKey",
        127 => "maxKey",
        _ => "unknown",
    }
}

/// A `$group` accumulator (also the array form of `$sum $avg $min $max`).
#[derive(Debug, Clone)]
pub(crate) enum Accumulator {
    Sum { int: i64, float: f64, kind: u8 },
    Avg { total: f64, n: u64 },
    Min(Option<Bson>),
    Max(Option<Bson>),
    First(Option<Option<Bson>>),
    Last(Option<Bson>),
    Push(Vec<Bson>),
    AddToSet(Vec<Bson>),
    Count(i64),
}

impl Accumulator {
    /// The accumulator for an operator name (without `$`); `sum` for unknown names is never used
    /// (callers check [`Accumulator::known`]).
    pub(crate) fn new(op: &str) -> Self {
        match op {
            "avg" => Accumulator::Avg { total: 0.0, n: 0 },
            "min" => Accumulator::Min(None),
            "max" => Accumulator::Max(None),
            "first" => Accumulator::First(None),
            "last" => Accumulator::Last(None),
            "push" => Accumulator::Push(Vec::new()),
            "addToSet" => Accumulator::AddToSet(Vec::new()),
            "count" => Accumulator::Count(0),
            _ => Accumulator::Sum {
                int: 0,
                float: 0.0,
                kind: 0,
            },
        }
    }

    pub(crate) fn known(op: &str) -> bool {
        matches!(
            op,
            "$sum"
                | "$avg"
                | "$min"
                | "$max"
                | "$first"
                | "$last"
                | "$push"
                | "$addToSet"
                | "$count"
        )
    }

    pub(crate) fn add(&mut self, v: Option<&Bson>) {
        match self {
            Accumulator::Sum { int, float, kind } => match v {
                Some(Bson::Int32(i)) => {
                    *int = int.wrapping_add(i64::from(*i));
                    *float += f64::from(*i);
                }
                Some(Bson::Int64(i)) => {
                    *int = int.wrapping_add(*i);
                    *float += *i as f64;
                    *kind = (*kind).max(1);
                }
                Some(Bson::Double(f)) => {
                    *float += f;
                    *kind = 2;
                }
                _ => {}
            },
            Accumulator::Avg { total, n } => {
                if let Some(f) = v.and_then(as_f64) {
                    *total += f;
                    *n += 1;
                }
            }
            Accumulator::Min(_) | Accumulator::Max(_) => {
                let Some(v) = v.filter(|v| !matches!(v, Bson::Null | Bson::Undefined)) else {
                    return;
                };
                let want = if matches!(self, Accumulator::Min(_)) {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                let (Accumulator::Min(cur) | Accumulator::Max(cur)) = self else {
                    return;
                };
                if cur.as_ref().is_none_or(|c| compare(v, c) == want) {
                    *cur = Some(v.clone());
                }
            }
            Accumulator::First(cur) => {
                if cur.is_none() {
                    *cur = Some(v.cloned());
                }
            }
            Accumulator::Last(cur) => *cur = Some(v.cloned().unwrap_or(Bson::Null)),
            Accumulator::Push(items) => {
                if let Some(v) = v {
                    items.push(v.clone());
                }
            }
            Accumulator::AddToSet(items) => {
                if let Some(v) = v {
                    if !items.iter().any(|i| values_equal(i, v)) {
                        items.push(v.clone());
                    }
                }
            }
            Accumulator::Count(n) => *n += 1,
        }
    }

    pub(crate) fn finish(self) -> Bson {
        match self {
            Accumulator::Sum { int, float, kind } => match kind {
                0 => i32::try_from(int).map_or(Bson::Int64(int), Bson::Int32),
                1 => Bson::Int64(int),
                _ => Bson::Double(float),
            },
            Accumulator::Avg { total, n } => {
                if n == 0 {
                    Bson::Null
                } else {
                    Bson::Double(total / n as f64)
                }
            }
            Accumulator::Min(v) | Accumulator::Max(v) | Accumulator::Last(v) => {
                v.unwrap_or(Bson::Null)
            }
            Accumulator::First(v) => v.flatten().unwrap_or(Bson::Null),
            Accumulator::Push(items) | Accumulator::AddToSet(items) => Bson::Array(items),
            Accumulator::Count(n) => i32::try_from(n).map_or(Bson::Int64(n), Bson::Int32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn expressions_evaluate() {
        let d = doc! { "a": 2, "b": 3.5, "s": "x", "arr": [1, 2, 3], "sub": { "k": "v" } };
        let e = |x: Bson| evaluate(&x, &d).unwrap();
        assert_eq!(
            e(Bson::String("$sub.k".into())),
            Some(Bson::String("v".into()))
        );
        assert_eq!(e(Bson::String("$nope".into())), None);
        assert_eq!(e(doc! { "$add": ["$a", 1] }.into()), Some(Bson::Int32(3)));
        assert_eq!(
            e(doc! { "$multiply": ["$a", "$b"] }.into()),
            Some(Bson::Double(7.0))
        );
        assert_eq!(
            e(doc! { "$concat": ["$s", "-", "$s"] }.into()),
            Some(Bson::String("x-x".into()))
        );
        assert_eq!(e(doc! { "$size": "$arr" }.into()), Some(Bson::Int32(3)));
        assert_eq!(e(doc! { "$sum": "$arr" }.into()), Some(Bson::Int32(6)));
        assert_eq!(
            e(doc! { "$cond": [{ "$gt": ["$a", 1] }, "big", "small"] }.into()),
            Some(Bson::String("big".into()))
        );
        assert_eq!(
            e(doc! { "$ifNull": ["$nope", "dflt"] }.into()),
            Some(Bson::String("dflt".into()))
        );
        assert_eq!(
            e(doc! { "$eq": ["$nope", null] }.into()),
            Some(Bson::Boolean(false))
        );
        assert_eq!(
            evaluate(&doc! { "$frob": 1 }.into(), &d).unwrap_err().code,
            168
        );
    }
}
