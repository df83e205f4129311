//! # anymongo-bench
//!
//! Measures anymongo on each runtime against the official `mongodb` driver and a raw-socket
//! floor, side by side in one run against the same server, with tasks derived from the MongoDB
//! driver benchmarking spec. Prints (and with `--out`, writes) markdown tables.
//!
//! ```text
//! cargo run --release -p anymongo-bench -- [--quick] [--runs R] [--n N] [--servers fake,real]
//!     [--uri URI] [--tasks a,b] [--contestants a,b] [--no-rss] [--out FILE]
//! ```
//! `--rss-child NAME URI` is internal: the child process of the idle-memory measurement.

#![warn(missing_debug_implementations, rust_2018_idioms)]

mod contestants;
mod data;
mod raw;
mod report;
mod rss;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use bson::{doc, Document};

use contestants::{AmRt, Anymongo, Contestant, Official, Raw};
use raw::RawConn;
use report::{Measurement, Table};

/// The database every task uses (dropped at the start of a server's round).
pub const DB: &str = "anymongo_bench";
/// Seeded with `tweets` tweet documents, `_id` 1..=tweets.
pub const TWEETS: &str = "tweets";
/// Target of the small `insert_one` task.
pub const SMALL: &str = "small_insert";
/// Target of the large `insert_one` task.
pub const LARGE: &str = "large_insert";
/// Target of the small bulk insert.
pub const BULK_SMALL: &str = "bulk_small";
/// Target of the large bulk insert.
pub const BULK_LARGE: &str = "bulk_large";

/// One benchmark task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// `hello` ×N through `run_command`.
    RunCommand,
    /// `find_one({_id})` ×N.
    FindOne,
    /// `insert_one(SMALL_DOC)` ×N.
    SmallInsert,
    /// `insert_one(LARGE_DOC)` ×N_large.
    LargeInsert,
    /// Drain 10,000 tweets, batch size 100.
    FindMany100,
    /// Drain 10,000 tweets, default batch size.
    FindManyDefault,
    /// `insert_many` of SMALL_DOC ×bulk_small.
    BulkSmall,
    /// `insert_many` of LARGE_DOC ×bulk_large.
    BulkLarge,
    /// 64 tasks sharing one client doing `find_one`, pool of the given size.
    Concurrency(u32),
}

impl Task {
    /// Every task, in table order.
    pub const ALL: [Task; 10] = [
        Task::RunCommand,
        Task::FindOne,
        Task::SmallInsert,
        Task::LargeInsert,
        Task::FindMany100,
        Task::FindManyDefault,
        Task::BulkSmall,
        Task::BulkLarge,
        Task::Concurrency(10),
        Task::Concurrency(100),
    ];

    /// Its short name (for `--tasks`) and label.
    pub fn key(self) -> &'static str {
        match self {
            Task::RunCommand => "run-command",
            Task::FindOne => "find-one",
            Task::SmallInsert => "small-insert",
            Task::LargeInsert => "large-insert",
            Task::FindMany100 => "find-many-100",
            Task::FindManyDefault => "find-many-default",
            Task::BulkSmall => "bulk-small",
            Task::BulkLarge => "bulk-large",
            Task::Concurrency(10) => "concurrency-10",
            Task::Concurrency(_) => "concurrency-100",
        }
    }

    /// A description for the table.
    pub fn label(self, p: &Params) -> String {
        match self {
            Task::RunCommand => format!("run command (`hello`) ×{}", p.n),
            Task::FindOne => format!("find one by `_id` ×{}", p.n),
            Task::SmallInsert => format!("small `insert_one` ×{}", p.n),
            Task::LargeInsert => format!("large (2.7 MB) `insert_one` ×{}", p.n_large),
            Task::FindMany100 => format!("find-many drain {} docs, batch 100", p.tweets),
            Task::FindManyDefault => format!("find-many drain {} docs, default batch", p.tweets),
            Task::BulkSmall => format!("bulk `insert_many` {} small docs", p.bulk_small),
            Task::BulkLarge => format!("bulk `insert_many` {} large docs", p.bulk_large),
            Task::Concurrency(pool) => format!(
                "{} tasks × `find_one`, pool {pool} ({} ops)",
                p.conc_tasks, p.n_conc
            ),
        }
    }

    /// What one counted unit is.
    pub fn unit(self) -> &'static str {
        match self {
            Task::FindMany100 | Task::FindManyDefault | Task::BulkSmall | Task::BulkLarge => {
                "docs/s"
            }
            _ => "ops/s",
        }
    }

    /// The pool size the task needs (`None`: the default).
    pub fn pool_size(self) -> Option<u32> {
        match self {
            Task::Concurrency(p) => Some(p),
            _ => None,
        }
    }

    /// The collection to drop before each run, for the insert tasks.
    fn target(self) -> Option<&'static str> {
        match self {
            Task::SmallInsert => Some(SMALL),
            Task::LargeInsert => Some(LARGE),
            Task::BulkSmall => Some(BULK_SMALL),
            Task::BulkLarge => Some(BULK_LARGE),
            _ => None,
        }
    }
}

/// Sizes of the tasks.
#[derive(Clone, Debug)]
pub struct Params {
    /// Operations of the per-op tasks.
    pub n: usize,
    /// Large `insert_one`s.
    pub n_large: usize,
    /// Tweets seeded (and drained).
    pub tweets: usize,
    /// Small documents per bulk insert.
    pub bulk_small: usize,
    /// Large documents per bulk insert.
    pub bulk_large: usize,
    /// Tasks of the concurrency task.
    pub conc_tasks: usize,
    /// Operations of the concurrency task, all tasks together.
    pub n_conc: usize,
}

/// The data and sizes every contestant shares.
#[derive(Debug)]
pub struct Ctx {
    /// The database.
    pub db: String,
    /// Sizes.
    pub p: Params,
    /// SMALL_DOC.
    pub small: Document,
    /// LARGE_DOC.
    pub large: Document,
    /// `bulk_small` SMALL_DOCs.
    pub small_many: Vec<Document>,
    /// `bulk_large` LARGE_DOCs.
    pub large_many: Vec<Document>,
}

impl Params {
    /// These sizes times `f`, with floors that keep every task meaningful (for the slower
    /// end-to-end server; six large documents per run, as two were within the noise).
    fn scaled(&self, f: f64) -> Params {
        let s = |n: usize, min: usize| ((n as f64 * f) as usize).max(min);
        Params {
            n: s(self.n, 100),
            n_large: s(self.n_large, 6),
            tweets: s(self.tweets, 500),
            bulk_small: s(self.bulk_small, 500),
            bulk_large: s(self.bulk_large, 6),
            conc_tasks: self.conc_tasks,
            n_conc: s(self.n_conc, self.conc_tasks * 10),
        }
    }
}

#[derive(Debug)]
struct Args {
    runs: usize,
    p: Params,
    real_scale: f64,
    servers: Vec<String>,
    uri: String,
    tasks: Vec<Task>,
    contestants: Vec<String>,
    rss: bool,
    out: Option<String>,
    command: String,
}

const CONTESTANTS: [&str; 6] = [
    "tokio-ct",
    "tokio-mt",
    "async-std",
    "smol",
    "official",
    "raw",
];

fn usage() -> ! {
    eprintln!(
        "usage: anymongo-bench [--quick] [--runs R] [--n N] [--n-large N] [--tweets N] \
         [--bulk-small N] [--bulk-large N] [--n-conc N] [--real-scale F] [--servers fake,real] [--uri URI] \
         [--tasks {}] [--contestants {}] [--no-rss] [--out FILE]",
        Task::ALL.map(Task::key).join(","),
        CONTESTANTS.join(",")
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let mut a = Args {
        runs: 5,
        p: Params {
            n: 10_000,
            n_large: 10,
            tweets: 10_000,
            bulk_small: 10_000,
            bulk_large: 10,
            conc_tasks: 64,
            n_conc: 12_800,
        },
        real_scale: 0.1,
        servers: vec!["fake".into(), "real".into()],
        uri: std::env::var("ANYMONGO_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27999".into()),
        tasks: Task::ALL.to_vec(),
        contestants: CONTESTANTS.iter().map(|s| s.to_string()).collect(),
        rss: true,
        out: None,
        command: argv.join(" "),
    };
    let mut it = argv.into_iter().skip(1);
    let num =
        |v: Option<String>| -> usize { v.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()) };
    let list = |v: Option<String>| -> Vec<String> {
        v.unwrap_or_else(|| usage())
            .split(',')
            .map(str::to_string)
            .collect()
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {
                a.runs = 5;
                a.p.n = 2_000;
                a.p.n_large = 3;
                a.p.tweets = 2_000;
                a.p.bulk_small = 2_000;
                a.p.bulk_large = 3;
                a.p.n_conc = 2_560;
            }
            "--runs" => a.runs = num(it.next()).max(1),
            "--real-scale" => {
                a.real_scale = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|f: &f64| *f > 0.0)
                    .unwrap_or_else(|| usage())
            }
            "--n" => a.p.n = num(it.next()).max(1),
            "--n-large" => a.p.n_large = num(it.next()).max(1),
            "--tweets" => a.p.tweets = num(it.next()).max(1),
            "--bulk-small" => a.p.bulk_small = num(it.next()).max(1),
            "--bulk-large" => a.p.bulk_large = num(it.next()).max(1),
            "--n-conc" => a.p.n_conc = num(it.next()).max(64),
            "--servers" => a.servers = list(it.next()),
            "--uri" => a.uri = it.next().unwrap_or_else(|| usage()),
            "--tasks" => {
                a.tasks = list(it.next())
                    .iter()
                    .map(|k| {
                        Task::ALL
                            .into_iter()
                            .find(|t| t.key() == k)
                            .unwrap_or_else(|| usage())
                    })
                    .collect()
            }
            "--contestants" => a.contestants = list(it.next()),
            "--no-rss" => a.rss = false,
            "--out" => a.out = Some(it.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    for c in &a.contestants {
        if !CONTESTANTS.contains(&c.as_str()) {
            usage();
        }
    }
    a
}

/// The first socket address of a `mongodb://host:port` URI (the harness's setup channel and the
/// raw floor connect there).
fn uri_addr(uri: &str) -> Result<SocketAddr, String> {
    let rest = uri
        .strip_prefix("mongodb://")
        .ok_or("only mongodb:// URIs")?;
    let host = rest.split(['/', '?', ',']).next().unwrap_or(rest);
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:27017")
    };
    host.to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host} resolves to nothing"))
}

/// Drops the database and seeds the tweets.
fn seed(setup: &mut RawConn, ctx: &Ctx) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    setup
        .command(DB, &doc! { "dropDatabase": 1 }, None)
        .map_err(e)?;
    let tweets: Vec<Document> = (1..=ctx.p.tweets as i32).map(data::tweet).collect();
    for chunk in tweets.chunks(1_000) {
        let reply = setup
            .command(DB, &doc! { "insert": TWEETS }, Some(("documents", chunk)))
            .map_err(e)?;
        if reply.get_i32("n").ok() != Some(chunk.len() as i32) {
            return Err(format!("seeding failed: {reply}"));
        }
    }
    Ok(())
}

fn make_contestants(
    names: &[String],
    uri: &str,
    addr: SocketAddr,
    ctx: &Arc<Ctx>,
) -> Vec<Box<dyn Contestant>> {
    names
        .iter()
        .map(|n| -> Box<dyn Contestant> {
            match n.as_str() {
                "tokio-ct" => Box::new(Anymongo::new(AmRt::TokioCt, uri, ctx.clone())),
                "tokio-mt" => Box::new(Anymongo::new(AmRt::TokioMt, uri, ctx.clone())),
                "async-std" => Box::new(Anymongo::new(AmRt::AsyncStd, uri, ctx.clone())),
                "smol" => Box::new(Anymongo::new(AmRt::Smol, uri, ctx.clone())),
                "official" => Box::new(Official::new(uri, ctx.clone())),
                _ => Box::new(Raw::new(addr, ctx.clone())),
            }
        })
        .collect()
}

/// Runs every task on every contestant against one server: a warm-up run each, then `runs`
/// timed runs, contestants interleaved (order rotated per run) so drift hits all alike.
fn bench_server(
    args: &Args,
    server_name: &str,
    uri: &str,
    ctx: &Arc<Ctx>,
) -> Result<Table, String> {
    let addr = uri_addr(uri)?;
    let mut setup = RawConn::connect(addr).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    seed(&mut setup, ctx)?;
    eprintln!(
        "[{server_name}] seeded {} tweets in {:?}",
        ctx.p.tweets,
        t0.elapsed()
    );
    let mut contestants = make_contestants(&args.contestants, uri, addr, ctx);
    let mut table = Table::new(
        server_name,
        contestants.iter().map(|c| c.name()).collect(),
        ctx.p.clone(),
    );
    for &task in &args.tasks {
        let t0 = Instant::now();
        let k = contestants.len();
        for run in 0..=args.runs {
            for j in 0..k {
                let i = (j + run) % k;
                if let Some(coll) = task.target() {
                    setup
                        .command(DB, &doc! { "drop": coll }, None)
                        .map_err(|e| e.to_string())?;
                }
                let c = &mut contestants[i];
                // A failed run is reported and left out of the table (the cell shows how many
                // runs failed); the other contestants go on.
                match c.run(task) {
                    Ok((ops, elapsed)) if run > 0 => {
                        table.record(task, i, Measurement::new(ops, elapsed))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("[{server_name}] {} {} failed: {e}", c.name(), task.key());
                        table.record_failure(task, i);
                    }
                }
            }
        }
        if let Some(coll) = task.target() {
            setup
                .command(DB, &doc! { "drop": coll }, None)
                .map_err(|e| e.to_string())?;
        }
        eprintln!("[{server_name}] {} done in {:?}", task.key(), t0.elapsed());
        eprintln!("{}", table.task_rows(task));
    }
    drop(contestants);
    setup
        .command(DB, &doc! { "dropDatabase": 1 }, None)
        .map_err(|e| e.to_string())?;
    Ok(table)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--rss-child") {
        let name = argv.get(2).cloned().unwrap_or_else(|| usage());
        let uri = argv.get(3).cloned().unwrap_or_else(|| usage());
        std::process::exit(rss::child(&name, &uri));
    }
    if argv.get(1).map(String::as_str) == Some("--micro-decode") {
        micro_decode();
        return;
    }
    let args = parse_args();
    let started = Instant::now();
    let small = data::small_doc();
    let large = data::large_doc();
    eprintln!(
        "sizes: small {} B, tweet {} B, large {} B",
        data::size(&small),
        data::size(&data::tweet(1)),
        data::size(&large)
    );
    let ctx_for = |p: Params| {
        Arc::new(Ctx {
            db: DB.to_string(),
            small_many: vec![small.clone(); p.bulk_small],
            large_many: vec![large.clone(); p.bulk_large],
            small: small.clone(),
            large: large.clone(),
            p,
        })
    };
    let mut tables = Vec::new();
    for server in &args.servers {
        let result = match server.as_str() {
            "fake" => {
                let fake = anymongo_testkit::FakeServer::builder().fast_mode().start();
                let ctx = ctx_for(args.p.clone());
                let r = bench_server(&args, "fake server (fast mode)", &fake.uri(), &ctx);
                drop(fake);
                r
            }
            "real" => {
                let ctx = ctx_for(args.p.scaled(args.real_scale));
                bench_server(&args, "nx-27017", &args.uri, &ctx)
            }
            _ => usage(),
        };
        match result {
            Ok(t) => tables.push(t),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    let memory = if args.rss {
        Some(rss::measure(&args.contestants))
    } else {
        None
    };
    let md = report::render(
        &tables,
        memory.as_deref(),
        args.runs,
        &args.command,
        started.elapsed(),
    );
    println!("{md}");
    if let Some(path) = &args.out {
        if let Err(e) = std::fs::write(path, &md) {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
}

/// Times the ways to turn a raw tweet into a `Document` (a profiling aid).
fn micro_decode() {
    let raw = bson::RawDocumentBuf::try_from(&data::tweet(1)).expect("encode");
    let n = 50_000;
    let t = Instant::now();
    for _ in 0..n {
        let d: Document = bson::deserialize_from_slice(raw.as_bytes()).expect("serde");
        std::hint::black_box(d);
    }
    eprintln!("serde deserialize_from_slice: {:?}/doc", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        let d = Document::try_from(raw.as_ref()).expect("try_from");
        std::hint::black_box(d);
    }
    eprintln!(
        "Document::try_from(&RawDocument): {:?}/doc",
        t.elapsed() / n
    );
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(anymongo_core::wire::validate_document(raw.as_bytes()).is_ok());
    }
    eprintln!("validate_document: {:?}/doc", t.elapsed() / n);
}
