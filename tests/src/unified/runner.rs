//! Runs unified-format test files: one target server per file (the real server at
//! `ANYMONGO_URI`, or the testkit fake server for files that configure fail points), the
//! requirements, `initialData`, each test's entities, operations and assertions.

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anymongo_core::bson::{doc, Bson, Document};
use anymongo_core::client::HandleOptions;
use anymongo_core::event::CommandEvent;
use anymongo_core::options::{Acknowledgment, WriteConcern};
use anymongo_core::rt::{Runtime, RuntimeExt};
use anymongo_core::Client;
use anymongo_testkit::FakeServer;

use super::entities::{Entities, Entity};
use super::matching::{match_root, match_root_elements};
use super::operations::{self, ErrorView, Outcome};
use super::{Flow, Report};

/// The newest schema version this runner understands.
const SUPPORTED_SCHEMA: (u32, u32) = (1, 21);

/// The longest one test may take before it counts as failed.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// nx-27017 ignores `collation`.
const NX_COLLATION: &str =
    "nx-27017 deviation: collation is ignored (a case-insensitive match finds nothing)";
/// nx-27017 does not evaluate `let` variables.
const NX_LET: &str =
    "nx-27017 deviation: let variables ($$var in $expr) are not supported (\"JSON path error\" or no match)";
/// nx-27017 has no pipeline updates.
const NX_PIPELINE: &str = "nx-27017 deviation: update pipelines are not supported (\"'list' object has no attribute 'keys'\")";
/// nx-27017 ignores `arrayFilters`.
const NX_ARRAY_FILTERS: &str = "nx-27017 deviation: arrayFilters are not applied";
/// nx-27017 stores document-valued command fields (e.g. `comment`) as documents.
const NX_DOC_COMMENT: &str =
    "nx-27017 deviation: a document-valued field of insert (comment) is stored as a document";
/// nx-27017 does not take an upsert's `_id` from the equality filter.
const NX_UPSERT_ID: &str =
    "nx-27017 deviation: an upsert does not take _id from the equality filter (generates an ObjectId)";
/// nx-27017 turns a numeric `_id` into a string on findAndModify replacement.
const NX_REPLACE_ID: &str =
    "nx-27017 deviation: findAndModify with a replacement stores the _id 2 as the string \"2\"";
/// nx-27017 accepts fields a 7.0 server rejects.
const NX_UNKNOWN_FIELD: &str =
    "nx-27017 deviation: unknown fields (sort on update for a pre-8.0 server) are accepted, not rejected";
/// nx-27017 has no `$out` stage.
const NX_OUT: &str = "nx-27017 deviation: the $out aggregation stage is not supported";
/// nx-27017 has no database aggregation with `$documents`.
const NX_DOCUMENTS: &str = "nx-27017 deviation: database aggregate with $documents/$merge fails (\"argument of type 'int' is not iterable\")";
/// nx-27017 and null `_id`s.
const NX_NULL_ID: &str =
    "nx-27017 deviation: a null _id is replaced by a generated ObjectId on insert and upsert";
/// nx-27017 returns distinct values unsorted.
const NX_DISTINCT_ORDER: &str =
    "nx-27017 deviation: distinct returns its values in another order than mongod (which sorts them here)";
/// nx-27017 has no views.
const NX_VIEWS: &str = "nx-27017 deviation: count on a view returns 0 (views are not applied)";
/// nx-27017's findAndModify upsert drops the update operators.
const NX_UNIQUE: &str = "nx-27017 deviation: a findAndModify upsert does not apply its $set (so the unique index is never violated: no DuplicateKey)";

/// Tests skipped on purpose: `(substring of "file/test description", reason)`. Checked after
/// `runOnRequirements` and the operations' availability, so those skips are reported as such.
pub const SKIPS: &[(&str, &str)] = &[
    ("aggregate-collation.json/", NX_COLLATION),
    ("bulkWrite-collation.json/", NX_COLLATION),
    ("deleteMany-collation.json/", NX_COLLATION),
    ("deleteOne-collation.json/", NX_COLLATION),
    ("distinct-collation.json/", NX_COLLATION),
    ("find-collation.json/", NX_COLLATION),
    ("findOneAndDelete-collation.json/", NX_COLLATION),
    ("findOneAndReplace-collation.json/", NX_COLLATION),
    ("findOneAndUpdate-collation.json/", NX_COLLATION),
    ("updateMany-collation.json/", NX_COLLATION),
    ("updateOne-collation.json/", NX_COLLATION),
    // count-collation.json: countDocuments with a collation passes on nx-27017.
    ("-let.json/", NX_LET),
    ("-pipeline.json/", NX_PIPELINE),
    ("-dots_and_dollars.json/Updating document to set", NX_PIPELINE),
    ("arrayFilters.json/FindOneAndUpdate when one document matches arrayFilters", NX_ARRAY_FILTERS),
    ("arrayFilters.json/FindOneAndUpdate when multiple documents match arrayFilters", NX_ARRAY_FILTERS),
    ("arrayFilters.json/UpdateOne when one document matches arrayFilters", NX_ARRAY_FILTERS),
    ("arrayFilters.json/UpdateOne when multiple documents match arrayFilters", NX_ARRAY_FILTERS),
    ("arrayFilters.json/UpdateOne when one document matches multiple arrayFilters", NX_ARRAY_FILTERS),
    ("insertOne-comment.json/insertOne with document comment", NX_DOC_COMMENT),
    ("insertMany-comment.json/insertMany with document comment", NX_DOC_COMMENT),
    ("bulkWrite-comment.json/BulkWrite with document comment", NX_DOC_COMMENT),
    ("bulkWrite.json/BulkWrite with replaceOne operations", NX_UPSERT_ID),
    (
        "replaceOne.json/ReplaceOne with upsert when no documents match without an id specified",
        NX_UPSERT_ID,
    ),
    (
        "findOneAndReplace-upsert.json/FindOneAndReplace when no documents match without id specified",
        NX_UPSERT_ID,
    ),
    (
        "findOneAndReplace.json/FindOneAndReplace when one document matches returning the document after",
        NX_REPLACE_ID,
    ),
    (
        "findOneAndReplace.json/FindOneAndReplace when many documents match returning the document after",
        NX_REPLACE_ID,
    ),
    ("-sort.json/replaceOne with sort option unsupported (server-side error)", NX_UNKNOWN_FIELD),
    ("-sort.json/updateOne with sort option unsupported (server-side error)", NX_UNKNOWN_FIELD),
    ("aggregate-out.json/Aggregate with $out", NX_OUT),
    ("bypassDocumentValidation.json/Aggregate with $out", NX_OUT),
    ("aggregate-merge-errorResponse.json/aggregate $merge DuplicateKey error is accessible", NX_DOCUMENTS),
    ("create-null-ids.json/inserting _id with type null via", NX_NULL_ID),
    ("distinct-comment.json/distinct with document comment", NX_DISTINCT_ORDER),
    ("distinct-comment.json/distinct with string comment", NX_DISTINCT_ORDER),
    ("distinct.json/Distinct without a filter", NX_DISTINCT_ORDER),
    ("distinct.json/Distinct with a filter", NX_DISTINCT_ORDER),
    ("estimatedDocumentCount.json/estimatedDocumentCount works correctly on views", NX_VIEWS),
    ("findOneAndUpdate-errorResponse.json/findOneAndUpdate DuplicateKey error is accessible", NX_UNIQUE),
];

/// What to run and where.
#[derive(Clone)]
pub struct Suite {
    /// The folder of `*.json` unified test files.
    pub root: PathBuf,
    /// The real server, if any (`ANYMONGO_URI`).
    pub uri: Option<String>,
    /// The runtime every client runs on.
    pub runtime: Arc<dyn Runtime>,
    /// Only tests whose `file/description` contains one of these (all if empty).
    pub filters: Vec<String>,
    /// Prefix added to every database name of the files (keeps a shared server tidy).
    pub db_prefix: String,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite")
            .field("root", &self.root)
            .field("uri", &self.uri)
            .field("runtime", &self.runtime.name())
            .field("filters", &self.filters)
            .finish()
    }
}

/// A server tests run against, with the runner's own (internal) client.
struct Target {
    name: &'static str,
    uri: String,
    internal: Client,
    version: Vec<u64>,
    /// Keeps the fake server alive.
    _fake: Option<FakeServer>,
}

impl Target {
    async fn connect(
        name: &'static str,
        uri: String,
        runtime: &Arc<dyn Runtime>,
        fake: Option<FakeServer>,
    ) -> Result<Target, String> {
        let internal = Client::with_uri_str_and_runtime(&uri, runtime.clone())
            .map_err(|e| format!("{name}: {e}"))?;
        let admin = internal.database("admin");
        let info = runtime
            .timeout(
                Duration::from_secs(30),
                admin.run_command(doc! { "buildInfo": 1 }).into_future(),
            )
            .await
            .map_err(|_| format!("{name}: buildInfo timed out"))?
            .map_err(|e| format!("{name}: buildInfo: {e}"))?;
        let version = info
            .get_str("version")
            .map(parse_version)
            .map_err(|_| format!("{name}: buildInfo has no version"))?;
        Ok(Target {
            name,
            uri,
            internal,
            version,
            _fake: fake,
        })
    }
}

fn parse_version(s: &str) -> Vec<u64> {
    s.split(['.', '-']).map_while(|p| p.parse().ok()).collect()
}

fn version_cmp(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len()).max(3);
    let get = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    (0..n)
        .map(|i| get(a, i).cmp(&get(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Runs every `*.json` file under `suite.root`, in name order.
pub async fn run_suite(suite: &Suite) -> Report {
    let mut report = Report::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&suite.root) {
        Ok(dir) => dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) => {
            report.record(
                suite.root.display().to_string(),
                Err(Flow::Fail(format!("cannot read the suite folder: {e}"))),
            );
            return report;
        }
    };
    files.sort();
    let mut real: Option<Result<Target, String>> = None;
    let mut fake: Option<Result<Target, String>> = None;
    for path in files {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = match load(&path, &suite.db_prefix) {
            Ok(f) => f,
            Err(e) => {
                report.record(file_name, Err(Flow::Fail(e)));
                continue;
            }
        };
        let tests: Vec<(String, &Document)> = file
            .get_array("tests")
            .map(|a| a.iter().filter_map(Bson::as_document).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let desc = t.get_str("description").unwrap_or("(no description)");
                (format!("{file_name}/{desc}"), t)
            })
            .filter(|(name, _)| {
                suite.filters.is_empty() || suite.filters.iter().any(|f| name.contains(f.as_str()))
            })
            .collect();
        if tests.is_empty() {
            continue;
        }
        if let Err(reason) = check_schema(&file) {
            for (name, _) in tests {
                report.record(name, Err(Flow::Skip(reason.clone())));
            }
            continue;
        }
        for (name, test) in tests {
            // Tests that configure fail points need the fake server; the others use the real one.
            let target = if uses_fail_points(test) {
                if fake.is_none() {
                    fake = Some(start_fake(&suite.runtime).await);
                }
                fake.as_ref()
            } else if let Some(uri) = &suite.uri {
                if real.is_none() {
                    real = Some(Target::connect("server", uri.clone(), &suite.runtime, None).await);
                }
                real.as_ref()
            } else {
                None
            };
            let result = match target {
                Some(Ok(target)) => match requirements(&file, target).await {
                    Err(reason) => Err(Flow::Skip(reason)),
                    Ok(()) => match suite
                        .runtime
                        .timeout(TEST_TIMEOUT, run_test(&name, &file, test, target, suite))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(Flow::Fail(format!("timed out after {TEST_TIMEOUT:?}"))),
                    },
                },
                Some(Err(e)) => Err(Flow::Fail(e.clone())),
                None => Err(Flow::Skip(
                    "needs a server: ANYMONGO_URI is not set (run under ci/with-server)".into(),
                )),
            };
            report.record(name, result);
        }
    }
    report
}

async fn start_fake(runtime: &Arc<dyn Runtime>) -> Result<Target, String> {
    // Wire version 25: the fake server reports 8.0.0 (its version follows the wire version).
    let server = FakeServer::builder()
        .max_wire_version(25)
        .try_start()
        .map_err(|e| format!("starting the fake server: {e}"))?;
    let uri = server.uri();
    Target::connect("fake server", uri, runtime, Some(server)).await
}

/// Reads a test file as BSON (extended JSON), prefixing its database names.
fn load(path: &Path, prefix: &str) -> Result<Document, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut bson = Bson::try_from(json).map_err(|e| format!("invalid extended JSON: {e}"))?;
    if !prefix.is_empty() {
        let names = database_names(&bson);
        rename(&mut bson, &names, prefix);
    }
    match bson {
        Bson::Document(d) => Ok(d),
        _ => Err("the file is not a JSON object".into()),
    }
}

/// The database names a file uses (entities, initialData, outcome).
fn database_names(file: &Bson) -> Vec<String> {
    let mut names = Vec::new();
    let Some(file) = file.as_document() else {
        return names;
    };
    let mut collect = |d: &Document| {
        if let Ok(n) = d.get_str("databaseName") {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        }
    };
    for e in file.get_array("createEntities").into_iter().flatten() {
        if let Some(db) = e
            .as_document()
            .and_then(|e| e.get_document("database").ok())
        {
            collect(db);
        }
    }
    for d in file.get_array("initialData").into_iter().flatten() {
        if let Some(d) = d.as_document() {
            collect(d);
        }
    }
    for t in file.get_array("tests").into_iter().flatten() {
        for d in t
            .as_document()
            .and_then(|t| t.get_array("outcome").ok())
            .into_iter()
            .flatten()
        {
            if let Some(d) = d.as_document() {
                collect(d);
            }
        }
    }
    names
}

/// Replaces every string value equal to one of `names` by `prefix + name`.
fn rename(v: &mut Bson, names: &[String], prefix: &str) {
    match v {
        Bson::String(s) if names.iter().any(|n| n == s) => *s = format!("{prefix}{s}"),
        Bson::Document(d) => {
            for (_, x) in d.iter_mut() {
                rename(x, names, prefix);
            }
        }
        Bson::Array(a) => {
            for x in a.iter_mut() {
                rename(x, names, prefix);
            }
        }
        _ => {}
    }
}

fn check_schema(file: &Document) -> Result<(), String> {
    let v = file
        .get_str("schemaVersion")
        .map_err(|_| "the file has no schemaVersion".to_string())?;
    let parts = parse_version(v);
    let major = parts.first().copied().unwrap_or(0);
    let minor = parts.get(1).copied().unwrap_or(0);
    if major == u64::from(SUPPORTED_SCHEMA.0) && minor <= u64::from(SUPPORTED_SCHEMA.1) {
        Ok(())
    } else {
        Err(format!(
            "schemaVersion {v} is newer than the runner's {}.{}",
            SUPPORTED_SCHEMA.0, SUPPORTED_SCHEMA.1
        ))
    }
}

/// Whether a test configures fail points (the real server has none).
fn uses_fail_points(test: &Document) -> bool {
    test.get_array("operations")
        .into_iter()
        .flatten()
        .any(|op| {
            op.as_document()
                .and_then(|o| o.get_str("name").ok())
                .is_some_and(|n| n == "failPoint" || n == "targetedFailPoint")
        })
}

/// Checks a `runOnRequirements` list (at least one must be met). `Err` is the skip reason.
async fn requirements(holder: &Document, target: &Target) -> Result<(), String> {
    let Ok(list) = holder.get_array("runOnRequirements") else {
        return Ok(());
    };
    let mut reasons = Vec::new();
    for req in list {
        let Some(req) = req.as_document() else {
            continue;
        };
        match requirement(req, target).await {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(reason),
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(format!(
        "runOnRequirements not met by the {}: {}",
        target.name,
        reasons.join("; or ")
    ))
}

async fn requirement(req: &Document, target: &Target) -> Result<(), String> {
    let server = target
        .version
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".");
    for (key, value) in req {
        match (key.as_str(), value) {
            ("minServerVersion", Bson::String(v)) => {
                if version_cmp(&target.version, &parse_version(v)).is_lt() {
                    return Err(format!("minServerVersion {v} (server {server})"));
                }
            }
            ("maxServerVersion", Bson::String(v)) => {
                if version_cmp(&target.version, &parse_version(v)).is_gt() {
                    return Err(format!("maxServerVersion {v} (server {server})"));
                }
            }
            ("topologies", Bson::Array(t)) => {
                if !t.iter().any(|t| t.as_str() == Some("single")) {
                    return Err(format!("topologies {value} (the server is single)"));
                }
            }
            ("serverless", Bson::String(s)) => {
                if s == "require" {
                    return Err("serverless: require".into());
                }
            }
            ("auth", Bson::Boolean(a)) => {
                let has_auth = target.uri.contains('@');
                if *a != has_auth {
                    return Err(format!("auth: {a} (the server runs with auth: {has_auth})"));
                }
            }
            ("authMechanism", _) => return Err(format!("authMechanism {value}")),
            ("csfle", Bson::Boolean(true)) => return Err("csfle: true".into()),
            ("csfle", _) => {}
            ("serverParameters", Bson::Document(params)) => {
                let mut cmd = doc! { "getParameter": 1 };
                for k in params.keys() {
                    cmd.insert(k.clone(), 1);
                }
                let reply = target
                    .internal
                    .database("admin")
                    .run_command(cmd)
                    .await
                    .map_err(|e| format!("serverParameters {params} (getParameter failed: {e})"))?;
                match_root(
                    &Bson::Document(params.clone()),
                    &Bson::Document(reply),
                    &super::matching::NoEntities,
                )
                .map_err(|e| format!("serverParameters {params}: {e}"))?;
            }
            (other, _) => return Err(format!("unknown requirement {other}: {value}")),
        }
    }
    Ok(())
}

async fn run_test(
    name: &str,
    file: &Document,
    test: &Document,
    target: &Target,
    suite: &Suite,
) -> Result<(), Flow> {
    if let Ok(reason) = test.get_str("skipReason") {
        return Err(Flow::Skip(format!("skipReason: {reason}")));
    }
    requirements(test, target).await.map_err(Flow::Skip)?;
    let operations: Vec<&Document> = test
        .get_array("operations")
        .map_err(|_| Flow::Fail("the test has no operations".into()))?
        .iter()
        .filter_map(Bson::as_document)
        .collect();
    for op in &operations {
        let op_name = op.get_str("name").unwrap_or("");
        if !operations::implemented(op_name) {
            return Err(Flow::Skip(format!(
                "operation {op_name} not implemented by the driver"
            )));
        }
    }
    // `UNIFIED_NO_SKIPS` runs the tests of the skip table too (to re-check its entries).
    if std::env::var_os("UNIFIED_NO_SKIPS").is_none() {
        if let Some((_, reason)) = SKIPS.iter().find(|(pat, _)| name.contains(pat)) {
            return Err(Flow::Skip((*reason).to_string()));
        }
    }
    if let Ok(list) = file.get_array("initialData") {
        initial_data(list, target).await?;
    }
    let mut entities = Entities::default();
    let created = match file.get_array("createEntities") {
        Ok(list) => entities.create(list, &target.uri, &suite.runtime),
        Err(_) => Ok(()),
    };
    let mut fail_points = Vec::new();
    let result = match created {
        Ok(()) => run_body(test, &operations, &mut entities, &mut fail_points, target).await,
        Err(e) => Err(e),
    };
    for fp in fail_points {
        // Best effort: a leftover fail point would only affect later tests on this target.
        let _ = target
            .internal
            .database("admin")
            .run_command(doc! { "configureFailPoint": fp, "mode": "off" })
            .await;
    }
    // A failure shows the commands the test sent, when `UNIFIED_VERBOSE` is set.
    let result = match result {
        Err(Flow::Fail(m)) if std::env::var_os("UNIFIED_VERBOSE").is_some() => {
            let sent: Vec<String> = entities
                .clients()
                .flat_map(|c| c.started_commands())
                .map(|d| d.to_string())
                .collect();
            Err(Flow::Fail(format!(
                "{m}\n    sent: {}",
                sent.join("\n          ")
            )))
        }
        other => other,
    };
    entities.close().await;
    result
}

async fn run_body(
    test: &Document,
    operations: &[&Document],
    entities: &mut Entities,
    fail_points: &mut Vec<String>,
    target: &Target,
) -> Result<(), Flow> {
    for (i, op) in operations.iter().enumerate() {
        run_operation(op, entities, fail_points)
            .await
            .map_err(|f| match f {
                Flow::Fail(m) => Flow::Fail(format!(
                    "operation {i} ({}): {m}",
                    op.get_str("name").unwrap_or("?")
                )),
                skip => skip,
            })?;
    }
    if let Ok(list) = test.get_array("expectEvents") {
        for expected in list {
            let expected = expected
                .as_document()
                .ok_or_else(|| Flow::Fail("expectEvents item is not a document".into()))?;
            expect_events(expected, entities)?;
        }
    }
    if let Ok(list) = test.get_array("outcome") {
        for data in list.iter().filter_map(Bson::as_document) {
            check_outcome(data, target).await?;
        }
    }
    Ok(())
}

async fn initial_data(list: &[Bson], target: &Target) -> Result<(), Flow> {
    let majority = HandleOptions {
        write_concern: Some(WriteConcern {
            w: Some(Acknowledgment::Majority),
            ..WriteConcern::default()
        }),
        ..HandleOptions::default()
    };
    for data in list.iter().filter_map(Bson::as_document) {
        let coll_name = data
            .get_str("collectionName")
            .map_err(|_| Flow::Fail("initialData without collectionName".into()))?;
        let db_name = data
            .get_str("databaseName")
            .map_err(|_| Flow::Fail("initialData without databaseName".into()))?;
        let db = target
            .internal
            .database_with_options(db_name, majority.clone());
        let coll = db.collection_with_options::<Document>(coll_name, majority.clone());
        coll.drop()
            .await
            .map_err(|e| Flow::Fail(format!("initialData: dropping {coll_name}: {e}")))?;
        let docs: Vec<Document> = data
            .get_array("documents")
            .map(|a| a.iter().filter_map(Bson::as_document).cloned().collect())
            .unwrap_or_default();
        let create_options = data.get_document("createOptions").ok();
        if docs.is_empty() || create_options.is_some() {
            let mut cmd = doc! { "create": coll_name };
            if let Some(options) = create_options {
                cmd.extend(options.clone());
            }
            cmd.insert("writeConcern", doc! { "w": "majority" });
            db.run_command(cmd)
                .await
                .map_err(|e| Flow::Fail(format!("initialData: creating {coll_name}: {e}")))?;
        }
        if !docs.is_empty() {
            coll.insert_many(docs)
                .await
                .map_err(|e| Flow::Fail(format!("initialData: inserting into {coll_name}: {e}")))?;
        }
    }
    Ok(())
}

async fn run_operation(
    op: &Document,
    entities: &mut Entities,
    fail_points: &mut Vec<String>,
) -> Result<(), Flow> {
    let name = op.get_str("name").unwrap_or("");
    let outcome = if op.get_str("object").ok() == Some("testRunner") {
        test_runner_op(name, op, entities, fail_points).await?;
        Outcome::Value(Bson::Null)
    } else {
        operations::execute(op, entities).await?
    };
    if op.get_bool("ignoreResultAndError").unwrap_or(false) {
        return Ok(());
    }
    match (outcome, op.get_document("expectError")) {
        (Outcome::Error(e), Ok(expected)) => check_error(&e, expected, entities),
        (Outcome::Error(e), Err(_)) => Err(Flow::Fail(format!("unexpected error: {e}"))),
        (Outcome::Value(v), Ok(expected)) => Err(Flow::Fail(format!(
            "expected an error {expected}, got the result {v}"
        ))),
        (Outcome::Value(v), Err(_)) => {
            if let Some(expected) = op.get("expectResult") {
                check_result(name, expected, &v, entities)?;
            }
            if let Ok(id) = op.get_str("saveResultAsEntity") {
                entities.insert(id, Entity::Value(v))?;
            }
            Ok(())
        }
    }
}

fn check_result(
    name: &str,
    expected: &Bson,
    actual: &Bson,
    entities: &Entities,
) -> Result<(), Flow> {
    let r = if operations::elements_are_root(name) {
        match_root_elements(expected, actual, entities)
    } else {
        match_root(expected, actual, entities)
    };
    r.map_err(|e| Flow::Fail(format!("result mismatch: {e}")))
}

async fn test_runner_op(
    name: &str,
    op: &Document,
    entities: &Entities,
    fail_points: &mut Vec<String>,
) -> Result<(), Flow> {
    let empty = Document::new();
    let args = op.get_document("arguments").unwrap_or(&empty);
    match name {
        "failPoint" => {
            let client = args
                .get_str("client")
                .map_err(|_| Flow::Fail("failPoint without a client".into()))?;
            let fp = args
                .get_document("failPoint")
                .map_err(|_| Flow::Fail("failPoint without a failPoint document".into()))?;
            let fp_name = fp
                .get_str("configureFailPoint")
                .map_err(|_| Flow::Fail("failPoint without configureFailPoint".into()))?
                .to_string();
            let client = entities.client(client)?;
            client
                .client
                .database("admin")
                .run_command(fp.clone())
                .await
                .map_err(|e| Flow::Fail(format!("configureFailPoint failed: {e}")))?;
            fail_points.push(fp_name);
            Ok(())
        }
        other => Err(Flow::Skip(format!(
            "test runner operation {other} is not supported by the runner"
        ))),
    }
}

fn check_error(
    e: &anymongo_core::Error,
    expected: &Document,
    entities: &Entities,
) -> Result<(), Flow> {
    let view = ErrorView::of(e);
    let fail = |m: String| Err(Flow::Fail(format!("{m} (error: {e})")));
    for (key, value) in expected {
        match (key.as_str(), value) {
            ("isError", _) => {}
            ("isClientError", Bson::Boolean(b)) => {
                if view.is_client_error != *b {
                    return fail(format!("expected isClientError {b}"));
                }
            }
            ("isTimeoutError", Bson::Boolean(b)) => {
                let is = matches!(e.kind(), anymongo_core::ErrorKind::Timeout { .. });
                if is != *b {
                    return fail(format!("expected isTimeoutError {b}"));
                }
            }
            ("errorContains", Bson::String(s)) => {
                if !view.message.to_lowercase().contains(&s.to_lowercase()) {
                    return fail(format!("expected the message to contain {s:?}"));
                }
            }
            ("errorCode", code) => {
                let want = code
                    .as_i32()
                    .or_else(|| code.as_i64().and_then(|c| i32::try_from(c).ok()));
                if want.is_none() || view.code != want {
                    return fail(format!("expected code {code}, got {:?}", view.code));
                }
            }
            ("errorCodeName", Bson::String(s)) => {
                if !view
                    .code_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(s))
                {
                    return fail(format!("expected codeName {s}, got {:?}", view.code_name));
                }
            }
            ("errorLabelsContain", Bson::Array(labels)) => {
                for l in labels.iter().filter_map(Bson::as_str) {
                    if !e.contains_label(l) {
                        return fail(format!("expected label {l}"));
                    }
                }
            }
            ("errorLabelsOmit", Bson::Array(labels)) => {
                for l in labels.iter().filter_map(Bson::as_str) {
                    if e.contains_label(l) {
                        return fail(format!("unexpected label {l}"));
                    }
                }
            }
            ("errorResponse", Bson::Document(d)) => {
                let Some(response) = &view.response else {
                    return fail("expected an error with a server response".into());
                };
                if let Err(m) = match_root(
                    &Bson::Document(d.clone()),
                    &Bson::Document(response.clone()),
                    entities,
                ) {
                    return fail(format!("errorResponse mismatch: {m}"));
                }
            }
            ("expectResult", expected) => {
                let Some(partial) = operations::partial_result(e) else {
                    return fail("expected the error to carry a partial result".into());
                };
                if let Err(m) = match_root(expected, &partial, entities) {
                    return fail(format!("partial result mismatch: {m}"));
                }
            }
            ("writeErrors" | "writeConcernErrors", _) => {
                return Err(Flow::Skip(format!(
                    "expectError.{key} needs client bulk write results, not offered by the driver"
                )))
            }
            (other, _) => {
                return Err(Flow::Skip(format!(
                    "expectError.{other} is not supported by the runner"
                )))
            }
        }
    }
    Ok(())
}

fn expect_events(expected: &Document, entities: &Entities) -> Result<(), Flow> {
    let client_id = expected
        .get_str("client")
        .map_err(|_| Flow::Fail("expectEvents without a client".into()))?;
    let event_type = expected.get_str("eventType").unwrap_or("command");
    if event_type != "command" {
        return Err(Flow::Skip(format!(
            "{event_type} event assertions are not supported by the runner"
        )));
    }
    let list = expected
        .get_array("events")
        .map_err(|_| Flow::Fail("expectEvents without events".into()))?;
    let ignore_extra = expected.get_bool("ignoreExtraEvents").unwrap_or(false);
    let actual = entities.client(client_id)?.observed_events();
    let names = || actual.iter().map(describe).collect::<Vec<_>>().join(", ");
    if actual.len() < list.len() || (!ignore_extra && actual.len() != list.len()) {
        return Err(Flow::Fail(format!(
            "client {client_id}: expected {} events, observed {}: [{}]",
            list.len(),
            actual.len(),
            names()
        )));
    }
    for (i, (exp, act)) in list.iter().zip(&actual).enumerate() {
        let exp = exp
            .as_document()
            .ok_or_else(|| Flow::Fail("expected event is not a document".into()))?;
        match_event(exp, act, entities).map_err(|m| {
            Flow::Fail(format!(
                "client {client_id} event {i}: {m}; observed [{}]",
                names()
            ))
        })?;
    }
    Ok(())
}

fn describe(e: &CommandEvent) -> String {
    match e {
        CommandEvent::Started(s) => format!("started {}", s.command_name),
        CommandEvent::Succeeded(s) => format!("succeeded {}", s.command_name),
        CommandEvent::Failed(f) => format!("failed {}", f.command_name),
    }
}

fn match_event(
    expected: &Document,
    actual: &CommandEvent,
    entities: &Entities,
) -> Result<(), String> {
    let (kind, fields) = expected
        .iter()
        .next()
        .ok_or_else(|| "empty expected event".to_string())?;
    let empty = Document::new();
    let fields = fields.as_document().unwrap_or(&empty);
    let (actual_kind, command_name, database_name, body) = match actual {
        CommandEvent::Started(s) => (
            "commandStartedEvent",
            &s.command_name,
            &s.database_name,
            Some(("command", &s.command)),
        ),
        CommandEvent::Succeeded(s) => (
            "commandSucceededEvent",
            &s.command_name,
            &s.database_name,
            Some(("reply", &s.reply)),
        ),
        CommandEvent::Failed(f) => (
            "commandFailedEvent",
            &f.command_name,
            &f.database_name,
            None,
        ),
    };
    if kind != actual_kind {
        return Err(format!(
            "expected a {kind}, observed a {actual_kind} of {command_name}"
        ));
    }
    for (key, value) in fields {
        match key.as_str() {
            "commandName" => {
                if value.as_str() != Some(command_name.as_str()) {
                    return Err(format!(
                        "expected commandName {value}, observed {command_name}"
                    ));
                }
            }
            "databaseName" => {
                if value.as_str() != Some(database_name.as_str()) {
                    return Err(format!(
                        "expected databaseName {value}, observed {database_name}"
                    ));
                }
            }
            "command" | "reply" => {
                let Some((body_key, doc)) = body.filter(|(k, _)| *k == key) else {
                    return Err(format!("{kind} has no {key}"));
                };
                match_root(value, &Bson::Document(doc.clone()), entities)
                    .map_err(|m| format!("{body_key} of {command_name}: {m}; observed {doc}"))?;
            }
            "hasServiceId" => {
                if value.as_bool() == Some(true) {
                    return Err("hasServiceId: true (no load balancer here)".into());
                }
            }
            "hasServerConnectionId" => {}
            other => return Err(format!("unknown event field {other}")),
        }
    }
    Ok(())
}

async fn check_outcome(data: &Document, target: &Target) -> Result<(), Flow> {
    let coll_name = data
        .get_str("collectionName")
        .map_err(|_| Flow::Fail("outcome without collectionName".into()))?;
    let db_name = data
        .get_str("databaseName")
        .map_err(|_| Flow::Fail("outcome without databaseName".into()))?;
    let expected: Vec<Bson> = data.get_array("documents").cloned().unwrap_or_default();
    let coll = target
        .internal
        .database(db_name)
        .collection::<Document>(coll_name);
    let mut cursor = coll
        .find(Document::new())
        .sort(doc! { "_id": 1 })
        .read_concern(anymongo_core::options::ReadConcern {
            level: Some(anymongo_core::options::ReadConcernLevel::Local),
        })
        .await
        .map_err(|e| Flow::Fail(format!("outcome: reading {coll_name}: {e}")))?;
    let mut actual = Vec::new();
    while let Some(next) = cursor.next_document().await {
        let d = next.map_err(|e| Flow::Fail(format!("outcome: reading {coll_name}: {e}")))?;
        actual.push(normalize(Bson::Document(d)));
    }
    let expected: Vec<Bson> = expected.into_iter().map(normalize).collect();
    if expected != actual {
        return Err(Flow::Fail(format!(
            "outcome of {db_name}.{coll_name}: expected {}, found {}",
            Bson::Array(expected),
            Bson::Array(actual)
        )));
    }
    Ok(())
}

/// `v` with every document's keys sorted (key order does not matter in outcomes).
fn normalize(v: Bson) -> Bson {
    match v {
        Bson::Document(d) => {
            let mut pairs: Vec<(String, Bson)> =
                d.into_iter().map(|(k, v)| (k, normalize(v))).collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Bson::Document(pairs.into_iter().collect())
        }
        Bson::Array(a) => Bson::Array(a.into_iter().map(normalize).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_padded() {
        assert!(version_cmp(&parse_version("7.0.0"), &parse_version("4.2")).is_gt());
        assert!(version_cmp(&parse_version("7.0.0"), &parse_version("7.0")).is_eq());
        assert!(version_cmp(&parse_version("7.0.0"), &parse_version("8.0")).is_lt());
        assert!(version_cmp(&parse_version("7.0.0"), &parse_version("7.0.99")).is_lt());
    }

    #[test]
    fn database_names_are_prefixed() {
        let mut file = Bson::Document(doc! {
            "createEntities": [{"database": {"id": "d", "client": "c", "databaseName": "crud"}}],
            "tests": [{"x": {"db": "crud", "other": "crudx"}}],
        });
        let names = database_names(&file);
        assert_eq!(names, vec!["crud".to_string()]);
        rename(&mut file, &names, "p_");
        let s = file.to_string();
        assert!(s.contains("\"p_crud\""), "{s}");
        assert!(s.contains("\"crudx\""), "{s}");
    }

    #[test]
    fn schema_versions() {
        assert!(check_schema(&doc! {"schemaVersion": "1.0"}).is_ok());
        assert!(check_schema(&doc! {"schemaVersion": "1.21"}).is_ok());
        assert!(check_schema(&doc! {"schemaVersion": "1.99"}).is_err());
        assert!(check_schema(&doc! {"schemaVersion": "2.0"}).is_err());
        assert!(check_schema(&doc! {}).is_err());
    }

    #[test]
    fn normalize_sorts_keys() {
        assert_eq!(
            normalize(Bson::Document(doc! {"b": 1, "a": {"d": 1, "c": 2}})),
            normalize(Bson::Document(doc! {"a": {"c": 2, "d": 1}, "b": 1}))
        );
    }
}
