//! Projections (`find`'s `projection`, `findAndModify`'s `fields`, `$project`): inclusion or
//! exclusion of (dotted) fields, and computed fields from aggregation expressions.

use bson::{Bson, Document};

use super::expr;
use super::filter::as_f64;
use crate::error::CommandError;

/// One node of a projection: keep, drop, compute, or descend.
#[derive(Debug, Clone)]
enum Node {
    Include,
    Exclude,
    Computed(Bson),
    Sub(Vec<(String, Node)>),
}

/// A parsed projection.
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    fields: Vec<(String, Node)>,
    /// Inclusion mode (only the named and computed fields, and `_id`).
    inclusion: bool,
    id: Option<Node>,
}

fn mixed() -> CommandError {
    CommandError::new(
        31254,
        "Location31254",
        "Cannot do exclusion on field in inclusion projection",
    )
}

fn insert_path(
    fields: &mut Vec<(String, Node)>,
    path: &str,
    node: Node,
) -> Result<(), CommandError> {
    let (head, tail) = match path.split_once('.') {
        None => (path, None),
        Some((h, t)) => (h, Some(t)),
    };
    if head.is_empty() {
        return Err(CommandError::bad_value(
            "FieldPath field names may not be empty strings.",
        ));
    }
    let pos = fields.iter().position(|(k, _)| k == head);
    match tail {
        None => {
            if pos.is_some() {
                return Err(CommandError::new(
                    31250,
                    "Location31250",
                    format!("Path collision at {path}"),
                ));
            }
            fields.push((head.to_string(), node));
            Ok(())
        }
        Some(rest) => {
            let idx = match pos {
                Some(i) => i,
                None => {
                    fields.push((head.to_string(), Node::Sub(Vec::new())));
                    fields.len() - 1
                }
            };
            match fields.get_mut(idx) {
                Some((_, Node::Sub(children))) => insert_path(children, rest, node),
                _ => Err(CommandError::new(
                    31250,
                    "Location31250",
                    format!("Path collision at {path}"),
                )),
            }
        }
    }
}

impl Projection {
    /// Parses a projection document; `None` for an empty one (everything is kept).
    pub(crate) fn parse(spec: &Document) -> Result<Option<Projection>, CommandError> {
        if spec.is_empty() {
            return Ok(None);
        }
        let mut fields = Vec::new();
        let mut id = None;
        let mut mode: Option<bool> = None;
        for (k, v) in spec {
            if k.starts_with('$') {
                return Err(CommandError::bad_value(format!(
                    "FieldPath field names may not start with '$'. Consider using $getField or \
                     $setField. ({k})"
                )));
            }
            let node = match v {
                Bson::Boolean(b) => {
                    if *b {
                        Node::Include
                    } else {
                        Node::Exclude
                    }
                }
                Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => {
                    if as_f64(v).is_some_and(|f| f != 0.0) {
                        Node::Include
                    } else {
                        Node::Exclude
                    }
                }
                other => Node::Computed(other.clone()),
            };
            if k == "_id" {
                id = Some(node);
                continue;
            }
            let incl = !matches!(node, Node::Exclude);
            match mode {
                None => mode = Some(incl),
                Some(m) if m != incl => return Err(mixed()),
                _ => {}
            }
            insert_path(&mut fields, k, node)?;
        }
        let inclusion = match (mode, &id) {
            (Some(m), _) => m,
            // Only `_id`: {_id: 0} excludes it, {_id: 1} keeps only it.
            (None, Some(Node::Exclude)) => false,
            (None, _) => true,
        };
        Ok(Some(Projection {
            fields,
            inclusion,
            id,
        }))
    }

    /// Applies the projection to `d`; `root` is the document computed fields see.
    pub(crate) fn apply(&self, d: &Document) -> Result<Document, CommandError> {
        let mut out = Document::new();
        match &self.id {
            Some(Node::Exclude) => {}
            Some(Node::Computed(e)) => {
                if let Some(v) = expr::evaluate(e, d)? {
                    out.insert("_id", v);
                }
            }
            _ => {
                if let Some(v) = d.get("_id") {
                    out.insert("_id", v.clone());
                }
            }
        }
        let body = if self.inclusion {
            include(d, &self.fields, d)?
        } else {
            exclude(d, &self.fields)
        };
        for (k, v) in body {
            if k != "_id" {
                out.insert(k, v);
            }
        }
        Ok(out)
    }
}

fn include(
    d: &Document,
    fields: &[(String, Node)],
    root: &Document,
) -> Result<Document, CommandError> {
    let mut out = Document::new();
    // Kept fields come in the document's order, computed ones after them in the spec's.
    for (k, v) in d {
        let Some((_, node)) = fields.iter().find(|(f, _)| f == k) else {
            continue;
        };
        match node {
            Node::Include => {
                out.insert(k.clone(), v.clone());
            }
            Node::Sub(children) => {
                if let Some(x) = include_value(v, children, root)? {
                    out.insert(k.clone(), x);
                }
            }
            _ => {}
        }
    }
    for (k, node) in fields {
        match node {
            Node::Computed(e) => {
                if let Some(v) = expr::evaluate(e, root)? {
                    out.insert(k.clone(), v);
                }
            }
            Node::Sub(children) if !d.contains_key(k) => {
                let sub = include(&Document::new(), children, root)?;
                if !sub.is_empty() {
                    out.insert(k.clone(), sub);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn include_value(
    v: &Bson,
    children: &[(String, Node)],
    root: &Document,
) -> Result<Option<Bson>, CommandError> {
    Ok(match v {
        Bson::Document(sub) => Some(Bson::Document(include(sub, children, root)?)),
        Bson::Array(items) => {
            let mut out = Vec::new();
            for i in items {
                if let Some(x) = match i {
                    Bson::Document(_) | Bson::Array(_) => include_value(i, children, root)?,
                    _ => None,
                } {
                    out.push(x);
                }
            }
            Some(Bson::Array(out))
        }
        _ => None,
    })
}

fn exclude(d: &Document, fields: &[(String, Node)]) -> Document {
    let mut out = Document::new();
    for (k, v) in d {
        match fields.iter().find(|(f, _)| f == k).map(|(_, n)| n) {
            Some(Node::Exclude) => {}
            Some(Node::Sub(children)) => {
                out.insert(k.clone(), exclude_value(v, children));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn exclude_value(v: &Bson, children: &[(String, Node)]) -> Bson {
    match v {
        Bson::Document(sub) => Bson::Document(exclude(sub, children)),
        Bson::Array(items) => {
            Bson::Array(items.iter().map(|i| exclude_value(i, children)).collect())
        }
        other => other.clone(),
    }
}

/// Applies `spec` to `d` (an empty spec keeps everything).
pub(crate) fn project(d: &Document, spec: &Document) -> Result<Document, CommandError> {
    match Projection::parse(spec)? {
        None => Ok(d.clone()),
        Some(p) => p.apply(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn projections_follow_the_manual() {
        let d = doc! { "_id": 1, "a": 1, "b": { "c": 2, "d": 3 }, "e": [ { "c": 1, "x": 2 }, 5 ] };
        assert_eq!(
            project(&d, &doc! { "a": 1 }).unwrap(),
            doc! { "_id": 1, "a": 1 }
        );
        assert_eq!(
            project(&d, &doc! { "b.c": 1, "_id": 0 }).unwrap(),
            doc! { "b": { "c": 2 } }
        );
        assert_eq!(
            project(&d, &doc! { "e.c": 1, "_id": 0 }).unwrap(),
            doc! { "e": [ { "c": 1 } ] }
        );
        assert_eq!(
            project(&d, &doc! { "b.c": 0, "e": 0 }).unwrap(),
            doc! { "_id": 1, "a": 1, "b": { "d": 3 } }
        );
        assert_eq!(
            project(&d, &doc! { "sum": { "$add": ["$a", "$b.c"] } }).unwrap(),
            doc! { "_id": 1, "sum": 3 }
        );
        assert_eq!(project(&d, &doc! { "_id": 0 }).unwrap().get("_id"), None);
        assert_eq!(
            project(&d, &doc! { "a": 1, "b": 0 }).unwrap_err().code,
            31254
        );
    }
}
