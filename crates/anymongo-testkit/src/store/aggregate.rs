//! Aggregation pipelines: `$match $sort $skip $limit $project $addFields $set $unset $count
//! $group $unwind $lookup $replaceRoot $replaceWith $sortByCount`.

use std::collections::HashMap;
use std::sync::Arc;

use bson::{doc, Bson, Document, RawDocumentBuf};

use super::expr::{self, Accumulator};
use super::filter::{as_f64, matches, path_values, values_equal};
use super::project::Projection;
use super::update::{set_path, unset_path};
use super::{encoded, sort_by_spec, Store, Stored};
use crate::error::CommandError;

/// A document flowing through a pipeline.
pub(crate) enum Item<'a> {
    /// A stored document, unchanged so far (served as its stored bytes).
    Stored(&'a Stored),
    /// A document made by a stage.
    Made(Document),
}

impl Item<'_> {
    pub(crate) fn doc(&self) -> &Document {
        match self {
            Item::Stored(s) => s.doc(),
            Item::Made(d) => d,
        }
    }

    fn into_doc(self) -> Document {
        match self {
            Item::Stored(s) => s.doc().clone(),
            Item::Made(d) => d,
        }
    }

    pub(crate) fn into_raw(self) -> Result<Arc<RawDocumentBuf>, CommandError> {
        match self {
            Item::Stored(s) => Ok(s.raw.clone()),
            Item::Made(d) => encoded(&d),
        }
    }
}

fn unrecognized(name: &str) -> CommandError {
    CommandError::new(
        40324,
        "Location40324",
        format!("Unrecognized pipeline stage name: '{name}'"),
    )
}

/// The stages a pipeline may hold here (others are refused before any runs, like mongod).
const STAGES: &[&str] = &[
    "$match",
    "$sort",
    "$skip",
    "$limit",
    "$project",
    "$addFields",
    "$set",
    "$unset",
    "$count",
    "$group",
    "$unwind",
    "$lookup",
    "$replaceRoot",
    "$replaceWith",
    "$sortByCount",
];

/// Checks the shape of every stage: one field each, a known name.
pub(crate) fn validate(pipeline: &[Document]) -> Result<(), CommandError> {
    for stage in pipeline {
        if stage.len() != 1 {
            return Err(CommandError::new(
                40323,
                "Location40323",
                "A pipeline stage specification object must contain exactly one field.",
            ));
        }
        if let Some(name) = stage.keys().next() {
            if !STAGES.contains(&name.as_str()) {
                return Err(unrecognized(name));
            }
        }
    }
    Ok(())
}

/// Runs `pipeline` over `docs`; `$lookup` reads other collections of `db` in `store`.
pub(crate) fn run<'a>(
    store: &'a Store,
    db: &str,
    mut docs: Vec<Item<'a>>,
    pipeline: &[Document],
) -> Result<Vec<Item<'a>>, CommandError> {
    validate(pipeline)?;
    for stage in pipeline {
        let Some((name, arg)) = stage.iter().next() else {
            continue;
        };
        docs = match name.as_str() {
            "$match" => {
                let Bson::Document(f) = arg else {
                    return Err(CommandError::new(
                        15959,
                        "Location15959",
                        "the match filter must be an expression in an object",
                    ));
                };
                let mut out = Vec::with_capacity(docs.len());
                for d in docs {
                    if matches(d.doc(), f)? {
                        out.push(d);
                    }
                }
                out
            }
            "$sort" => {
                let Bson::Document(s) = arg else {
                    return Err(CommandError::new(
                        15973,
                        "Location15973",
                        "the $sort key specification must be an object",
                    ));
                };
                if s.is_empty() {
                    return Err(CommandError::new(
                        15976,
                        "Location15976",
                        "$sort stage must have at least one sort key",
                    ));
                }
                sort_by_spec(&mut docs, s, Item::doc)?;
                docs
            }
            "$skip" => match as_f64(arg) {
                Some(k) if k >= 0.0 => docs.into_iter().skip(k as usize).collect(),
                _ => {
                    return Err(CommandError::new(
                        5107200,
                        "Location5107200",
                        "invalid argument to $skip stage: Expected a non-negative number",
                    ))
                }
            },
            "$limit" => match as_f64(arg) {
                Some(k) if k > 0.0 => docs.into_iter().take(k as usize).collect(),
                _ => {
                    return Err(CommandError::new(
                        15958,
                        "Location15958",
                        "the limit must be positive",
                    ))
                }
            },
            "$project" => {
                let Bson::Document(p) = arg else {
                    return Err(CommandError::new(
                        15969,
                        "Location15969",
                        "$project specification must be an object",
                    ));
                };
                if p.is_empty() {
                    return Err(CommandError::new(
                        51272,
                        "Location51272",
                        "$project requires at least one output field",
                    ));
                }
                let Some(p) = Projection::parse(p)? else {
                    continue;
                };
                docs.iter()
                    .map(|d| p.apply(d.doc()).map(Item::Made))
                    .collect::<Result<_, _>>()?
            }
            "$addFields" | "$set" => {
                let Bson::Document(fields) = arg else {
                    return Err(CommandError::new(
                        40272,
                        "Location40272",
                        format!("{name} specification stage must be an object"),
                    ));
                };
                let mut out = Vec::with_capacity(docs.len());
                for d in docs {
                    let mut nd = d.into_doc();
                    let root = nd.clone();
                    for (k, e) in fields {
                        match expr::evaluate(e, &root)? {
                            Some(v) => set_path(&mut nd, k, v)?,
                            None => unset_path(&mut nd, k),
                        }
                    }
                    out.push(Item::Made(nd));
                }
                out
            }
            "$unset" => {
                let fields: Vec<String> = match arg {
                    Bson::String(s) => vec![s.clone()],
                    Bson::Array(a) if a.iter().all(|v| matches!(v, Bson::String(_))) => a
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                    _ => {
                        return Err(CommandError::new(
                            31002,
                            "Location31002",
                            "$unset specification must be a string or an array",
                        ))
                    }
                };
                docs.into_iter()
                    .map(|d| {
                        let mut nd = d.into_doc();
                        for f in &fields {
                            unset_path(&mut nd, f);
                        }
                        Item::Made(nd)
                    })
                    .collect()
            }
            "$count" => {
                let Bson::String(field) = arg else {
                    return Err(CommandError::new(
                        40156,
                        "Location40156",
                        "the count field must be a non-empty string",
                    ));
                };
                if field.is_empty() || field.starts_with('$') || field.contains('.') {
                    return Err(CommandError::new(
                        40158,
                        "Location40158",
                        "the count field cannot be empty, start with '$' or contain '.'",
                    ));
                }
                if docs.is_empty() {
                    Vec::new()
                } else {
                    vec![Item::Made(doc! { field.clone(): docs.len() as i32 })]
                }
            }
            "$group" => group(docs, arg)?,
            "$sortByCount" => {
                let grouped = group(
                    docs,
                    &Bson::Document(doc! { "_id": arg.clone(), "count": { "$sum": 1 } }),
                )?;
                let mut grouped = grouped;
                sort_by_spec(&mut grouped, &doc! { "count": -1 }, Item::doc)?;
                grouped
            }
            "$unwind" => unwind(docs, arg)?,
            "$lookup" => lookup(store, db, docs, arg)?,
            "$replaceRoot" | "$replaceWith" => {
                let e = if name == "$replaceRoot" {
                    match arg {
                        Bson::Document(d) => d.get("newRoot").cloned().ok_or_else(|| {
                            CommandError::new(
                                40231,
                                "Location40231",
                                "no newRoot specified for the $replaceRoot stage",
                            )
                        })?,
                        _ => {
                            return Err(CommandError::new(
                                40229,
                                "Location40229",
                                "expected an object as specification for $replaceRoot stage",
                            ))
                        }
                    }
                } else {
                    arg.clone()
                };
                let mut out = Vec::with_capacity(docs.len());
                for d in docs {
                    match expr::evaluate(&e, d.doc())? {
                        Some(Bson::Document(nd)) => out.push(Item::Made(nd)),
                        other => {
                            return Err(CommandError::new(
                                40228,
                                "Location40228",
                                format!("'newRoot' expression must evaluate to an object, but resulting value was: {}", other.map_or("MISSING".to_string(), |v| v.to_string())),
                            ))
                        }
                    }
                }
                out
            }
            other => return Err(unrecognized(other)),
        };
    }
    Ok(docs)
}

fn group<'a>(docs: Vec<Item<'a>>, arg: &Bson) -> Result<Vec<Item<'a>>, CommandError> {
    let Bson::Document(spec) = arg else {
        return Err(CommandError::new(
            15947,
            "Location15947",
            "a group's fields must be specified in an object",
        ));
    };
    let Some(id_expr) = spec.get("_id") else {
        return Err(CommandError::new(
            15955,
            "Location15955",
            "a group specification must include an _id",
        ));
    };
    let mut accs: Vec<(String, String, Bson)> = Vec::new();
    for (field, a) in spec {
        if field == "_id" {
            continue;
        }
        let Bson::Document(ad) = a else {
            return Err(CommandError::new(
                40234,
                "Location40234",
                format!("The field '{field}' must be an accumulator object"),
            ));
        };
        let (op, e) = match ad.iter().next() {
            Some(kv) if ad.len() == 1 => kv,
            _ => {
                return Err(CommandError::new(
                    40238,
                    "Location40238",
                    format!("The field '{field}' must specify one accumulator"),
                ))
            }
        };
        if !Accumulator::known(op) {
            return Err(CommandError::new(
                15952,
                "Location15952",
                format!("unknown group operator '{op}'"),
            ));
        }
        accs.push((field.clone(), op[1..].to_string(), e.clone()));
    }
    let mut order: Vec<Bson> = Vec::new();
    let mut groups: HashMap<Vec<u8>, (usize, Vec<Accumulator>)> = HashMap::new();
    for d in &docs {
        let d = d.doc();
        let id = expr::evaluate(id_expr, d)?.unwrap_or(Bson::Null);
        let key = group_key(&id);
        let entry = groups.entry(key).or_insert_with(|| {
            order.push(id.clone());
            (
                order.len() - 1,
                accs.iter().map(|(_, op, _)| Accumulator::new(op)).collect(),
            )
        });
        for ((_, _, e), acc) in accs.iter().zip(entry.1.iter_mut()) {
            let v = expr::evaluate(e, d)?;
            acc.add(v.as_ref());
        }
    }
    let mut out: Vec<(usize, Document)> = groups
        .into_values()
        .map(|(i, values)| {
            let mut g = doc! { "_id": order.get(i).cloned().unwrap_or(Bson::Null) };
            for ((field, _, _), acc) in accs.iter().zip(values) {
                g.insert(field.clone(), acc.finish());
            }
            (i, g)
        })
        .collect();
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, d)| Item::Made(d)).collect())
}

/// Equal `_id`s (numbers by value, documents field by field) share one key.
fn group_key(v: &Bson) -> Vec<u8> {
    match v {
        Bson::Array(items) => {
            let mut out = vec![b'['];
            for i in items {
                let k = group_key(i);
                out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                out.extend_from_slice(&k);
            }
            out
        }
        Bson::Document(d) => {
            let mut out = vec![b'{'];
            for (k, x) in d {
                out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                out.extend_from_slice(k.as_bytes());
                let kx = group_key(x);
                out.extend_from_slice(&(kx.len() as u32).to_le_bytes());
                out.extend_from_slice(&kx);
            }
            out
        }
        Bson::Undefined => super::id_key(&Bson::Null).0,
        other => super::id_key(other).0,
    }
}

fn unwind<'a>(docs: Vec<Item<'a>>, arg: &Bson) -> Result<Vec<Item<'a>>, CommandError> {
    let (path, index_field, preserve) = match arg {
        Bson::String(p) => (p.clone(), None, false),
        Bson::Document(d) => {
            let p = match d.get("path") {
                Some(Bson::String(p)) => p.clone(),
                _ => {
                    return Err(CommandError::new(
                        28812,
                        "Location28812",
                        "no path specified to $unwind stage",
                    ))
                }
            };
            let idx = match d.get("includeArrayIndex") {
                None => None,
                Some(Bson::String(s)) => Some(s.clone()),
                Some(_) => return Err(CommandError::new(
                    28810,
                    "Location28810",
                    "expected a non-empty string for the includeArrayIndex option to $unwind stage",
                )),
            };
            let preserve = d.get_bool("preserveNullAndEmptyArrays").unwrap_or(false);
            (p, idx, preserve)
        }
        _ => {
            return Err(CommandError::new(
                15981,
                "Location15981",
                "expected either a string or an object as specification for $unwind stage",
            ))
        }
    };
    let Some(path) = path.strip_prefix('$') else {
        return Err(CommandError::new(
            28818,
            "Location28818",
            "path option to $unwind stage should be prefixed with a '$'",
        ));
    };
    let path = path.to_string();
    let mut out = Vec::new();
    for d in docs {
        let value = super::filter::get_path(d.doc(), &path).cloned();
        match value {
            Some(Bson::Array(items)) if !items.is_empty() => {
                let base = d.into_doc();
                for (i, item) in items.into_iter().enumerate() {
                    let mut nd = base.clone();
                    set_path(&mut nd, &path, item)?;
                    if let Some(f) = &index_field {
                        set_path(&mut nd, f, Bson::Int64(i as i64))?;
                    }
                    out.push(Item::Made(nd));
                }
            }
            Some(Bson::Array(_)) | None | Some(Bson::Null) => {
                if preserve {
                    let mut nd = d.into_doc();
                    if matches!(super::filter::get_path(&nd, &path), Some(Bson::Array(_))) {
                        unset_path(&mut nd, &path);
                    }
                    if let Some(f) = &index_field {
                        set_path(&mut nd, f, Bson::Null)?;
                    }
                    out.push(Item::Made(nd));
                }
            }
            Some(_) => {
                // A non-array value is treated as an array of that one value.
                if let Some(f) = &index_field {
                    let mut nd = d.into_doc();
                    set_path(&mut nd, f, Bson::Null)?;
                    out.push(Item::Made(nd));
                } else {
                    out.push(d);
                }
            }
        }
    }
    Ok(out)
}

fn lookup<'a>(
    store: &'a Store,
    db: &str,
    docs: Vec<Item<'a>>,
    arg: &Bson,
) -> Result<Vec<Item<'a>>, CommandError> {
    let Bson::Document(spec) = arg else {
        return Err(CommandError::new(
            9,
            "FailedToParse",
            "the $lookup specification must be an Object",
        ));
    };
    let field = |k: &str| match spec.get(k) {
        Some(Bson::String(s)) => Ok(s.clone()),
        _ => Err(CommandError::new(
            9,
            "FailedToParse",
            format!("$lookup argument '{k}' must be a string"),
        )),
    };
    let (from, local, foreign, as_field) = (
        field("from")?,
        field("localField")?,
        field("foreignField")?,
        field("as")?,
    );
    let foreign_docs: Vec<&Document> = store
        .coll(db, &from)
        .map(|c| c.docs.values().map(Stored::doc).collect())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        let mut locals: Vec<Bson> = Vec::new();
        for v in path_values(d.doc(), &local) {
            match v {
                None => locals.push(Bson::Null),
                Some(Bson::Array(items)) => locals.extend(items.iter().cloned()),
                Some(other) => locals.push(other.clone()),
            }
        }
        let mut joined = Vec::new();
        for f in &foreign_docs {
            let theirs = path_values(f, &foreign);
            let hit = locals.iter().any(|l| {
                theirs.iter().any(|t| match t {
                    None => matches!(l, Bson::Null),
                    Some(Bson::Array(items)) => items.iter().any(|i| values_equal(i, l)),
                    Some(x) => values_equal(x, l),
                })
            });
            if hit {
                joined.push(Bson::Document((*f).clone()));
            }
        }
        let mut nd = d.into_doc();
        set_path(&mut nd, &as_field, Bson::Array(joined))?;
        out.push(Item::Made(nd));
    }
    Ok(out)
}
