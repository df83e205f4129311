//! The contestants: anymongo on four runtimes, the official `mongodb` driver on tokio, and the
//! raw-socket floor. Each owns its runtime and clients and runs one task per call, timing only
//! the task's loop (clients, pools and data are ready before the clock starts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use futures::future::BoxFuture;
use futures::TryStreamExt;

use crate::raw::{op_msg, RawConn};
use crate::{Ctx, Task};

/// What one timed run gives: operations (or documents) done, and the time they took.
pub type Outcome = Result<(u64, Duration), String>;

/// Spawns a future as a task of the contestant's runtime; the returned future is its join.
pub type Spawn =
    fn(BoxFuture<'static, Result<(), String>>) -> BoxFuture<'static, Result<(), String>>;

/// One contestant.
pub trait Contestant {
    /// Its name in the tables.
    fn name(&self) -> &'static str;
    /// Runs `task` once and times it.
    fn run(&mut self, task: Task) -> Outcome;
}

/// The URI with a pool size for `task` (the concurrency task sets it; others keep the default).
fn uri_for(base: &str, pool: Option<u32>) -> String {
    match pool {
        None => base.to_string(),
        Some(p) => {
            let sep = if base.contains('?') { '&' } else { '?' };
            let base = if base.contains('?') || base.ends_with('/') {
                base.to_string()
            } else {
                format!("{base}/")
            };
            format!("{base}{sep}maxPoolSize={p}")
        }
    }
}

/// The body of every task, for either driver: `$client` is a client of that driver (pool size as
/// the task wants), `$spawn` runs a future as a task. The two drivers share their API shape, so
/// one text serves both and both do exactly the same calls.
macro_rules! task_body {
    ($client:expr, $ctx:expr, $task:expr, $spawn:expr) => {{
        let ctx: &Arc<Ctx> = $ctx;
        let client = $client;
        let db = client.database(&ctx.db);
        let map = |e: &dyn std::fmt::Display| e.to_string();
        match $task {
            Task::RunCommand => {
                let start = Instant::now();
                for _ in 0..ctx.p.n {
                    db.run_command(doc! { "hello": 1 })
                        .await
                        .map_err(|e| map(&e))?;
                }
                Ok((ctx.p.n as u64, start.elapsed()))
            }
            Task::FindOne => {
                let coll = db.collection::<Document>(crate::TWEETS);
                let start = Instant::now();
                for i in 0..ctx.p.n {
                    let id = (i % ctx.p.tweets) as i32 + 1;
                    let found = coll
                        .find_one(doc! { "_id": id })
                        .await
                        .map_err(|e| map(&e))?;
                    if found.is_none() {
                        return Err(format!("tweet {id} not found"));
                    }
                }
                Ok((ctx.p.n as u64, start.elapsed()))
            }
            Task::SmallInsert | Task::LargeInsert => {
                let (coll, d, n) = if $task == Task::SmallInsert {
                    (crate::SMALL, &ctx.small, ctx.p.n)
                } else {
                    (crate::LARGE, &ctx.large, ctx.p.n_large)
                };
                let coll = db.collection::<Document>(coll);
                let start = Instant::now();
                for _ in 0..n {
                    coll.insert_one(d).await.map_err(|e| map(&e))?;
                }
                Ok((n as u64, start.elapsed()))
            }
            Task::FindMany100 | Task::FindManyDefault => {
                let coll = db.collection::<Document>(crate::TWEETS);
                let start = Instant::now();
                let mut cursor = if $task == Task::FindMany100 {
                    coll.find(doc! {}).batch_size(100u32).await
                } else {
                    coll.find(doc! {}).await
                }
                .map_err(|e| map(&e))?;
                let mut docs = 0u64;
                while let Some(_d) = cursor.try_next().await.map_err(|e| map(&e))? {
                    docs += 1;
                }
                let elapsed = start.elapsed();
                if docs != ctx.p.tweets as u64 {
                    return Err(format!("drained {docs} of {} documents", ctx.p.tweets));
                }
                Ok((docs, elapsed))
            }
            Task::BulkSmall | Task::BulkLarge => {
                let (coll, docs) = if $task == Task::BulkSmall {
                    (crate::BULK_SMALL, &ctx.small_many)
                } else {
                    (crate::BULK_LARGE, &ctx.large_many)
                };
                let coll = db.collection::<Document>(coll);
                let start = Instant::now();
                coll.insert_many(docs).await.map_err(|e| map(&e))?;
                Ok((docs.len() as u64, start.elapsed()))
            }
            Task::Concurrency(_) => {
                let coll = db.collection::<Document>(crate::TWEETS);
                let per_task = ctx.p.n_conc / ctx.p.conc_tasks;
                let tweets = ctx.p.tweets;
                let start = Instant::now();
                let mut joins = Vec::with_capacity(ctx.p.conc_tasks);
                for t in 0..ctx.p.conc_tasks {
                    let coll = coll.clone();
                    joins.push($spawn(Box::pin(async move {
                        for i in 0..per_task {
                            let id = ((t * per_task + i) % tweets) as i32 + 1;
                            let found = coll
                                .find_one(doc! { "_id": id })
                                .await
                                .map_err(|e| e.to_string())?;
                            if found.is_none() {
                                return Err(format!("tweet {id} not found"));
                            }
                        }
                        Ok(())
                    })));
                }
                for j in joins {
                    j.await?;
                }
                Ok(((per_task * ctx.p.conc_tasks) as u64, start.elapsed()))
            }
        }
    }};
}

async fn anymongo_task(
    client: &anymongo_core::Client,
    ctx: &Arc<Ctx>,
    task: Task,
    spawn: Spawn,
) -> Outcome {
    task_body!(client, ctx, task, spawn)
}

async fn official_task(
    client: &mongodb::Client,
    ctx: &Arc<Ctx>,
    task: Task,
    spawn: Spawn,
) -> Outcome {
    task_body!(client, ctx, task, spawn)
}

fn tokio_spawn(
    f: BoxFuture<'static, Result<(), String>>,
) -> BoxFuture<'static, Result<(), String>> {
    let h = tokio::spawn(f);
    Box::pin(async move { h.await.map_err(|e| e.to_string())? })
}

fn async_std_spawn(
    f: BoxFuture<'static, Result<(), String>>,
) -> BoxFuture<'static, Result<(), String>> {
    Box::pin(async_std::task::spawn(f))
}

fn smol_spawn(f: BoxFuture<'static, Result<(), String>>) -> BoxFuture<'static, Result<(), String>> {
    Box::pin(smol::spawn(f))
}

/// The runtimes anymongo runs on here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmRt {
    /// tokio, current-thread scheduler.
    TokioCt,
    /// tokio, multi-thread scheduler (one worker per core).
    TokioMt,
    /// async-std's global runtime.
    AsyncStd,
    /// smol's global executor.
    Smol,
}

impl AmRt {
    /// The contestant's name.
    pub fn name(self) -> &'static str {
        match self {
            AmRt::TokioCt => "anymongo tokio-ct",
            AmRt::TokioMt => "anymongo tokio-mt",
            AmRt::AsyncStd => "anymongo async-std",
            AmRt::Smol => "anymongo smol",
        }
    }
}

/// Runs `fut` to completion on `rt` (`tokio` is the runtime for the tokio flavours).
pub fn block_on<F: std::future::Future>(
    rt: AmRt,
    tokio: Option<&tokio::runtime::Runtime>,
    fut: F,
) -> F::Output {
    match (rt, tokio) {
        (AmRt::TokioCt | AmRt::TokioMt, Some(t)) => t.block_on(fut),
        (AmRt::AsyncStd, _) => async_std::task::block_on(fut),
        _ => smol::block_on(fut),
    }
}

/// Builds a tokio runtime of the flavour `rt` names.
pub fn tokio_runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut b = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().expect("tokio runtime")
}

/// The `Runtime` anymongo gets on `rt`.
pub fn am_runtime(
    rt: AmRt,
    tokio: Option<&tokio::runtime::Runtime>,
) -> Arc<dyn anymongo_core::rt::Runtime> {
    match (rt, tokio) {
        (AmRt::TokioCt | AmRt::TokioMt, Some(t)) => {
            Arc::new(anymongo_tokio::TokioRuntime::new(t.handle().clone()))
        }
        (AmRt::AsyncStd, _) => Arc::new(anymongo_async_std::AsyncStdRuntime::new()),
        _ => Arc::new(anymongo_smol::SmolRuntime::global()),
    }
}

/// anymongo on one runtime.
pub struct Anymongo {
    rt: AmRt,
    tokio: Option<tokio::runtime::Runtime>,
    uri: String,
    ctx: Arc<Ctx>,
    clients: HashMap<Option<u32>, anymongo_core::Client>,
}

impl Anymongo {
    /// A contestant on `rt` against `uri`.
    pub fn new(rt: AmRt, uri: &str, ctx: Arc<Ctx>) -> Self {
        let tokio = match rt {
            AmRt::TokioCt => Some(tokio_runtime(false)),
            AmRt::TokioMt => Some(tokio_runtime(true)),
            _ => None,
        };
        Anymongo {
            rt,
            tokio,
            uri: uri.to_string(),
            ctx,
            clients: HashMap::new(),
        }
    }
}

impl Contestant for Anymongo {
    fn name(&self) -> &'static str {
        self.rt.name()
    }

    fn run(&mut self, task: Task) -> Outcome {
        let pool = task.pool_size();
        let rt = self.rt;
        let runtime = am_runtime(rt, self.tokio.as_ref());
        let client = match self.clients.get(&pool) {
            Some(c) => c.clone(),
            None => {
                let uri = uri_for(&self.uri, pool);
                let _guard = self.tokio.as_ref().map(|t| t.enter());
                let c = anymongo_core::Client::with_uri_str_and_runtime(&uri, runtime)
                    .map_err(|e| e.to_string())?;
                self.clients.insert(pool, c.clone());
                c
            }
        };
        let spawn: Spawn = match rt {
            AmRt::TokioCt | AmRt::TokioMt => tokio_spawn,
            AmRt::AsyncStd => async_std_spawn,
            AmRt::Smol => smol_spawn,
        };
        let ctx = self.ctx.clone();
        let body = async move { anymongo_task(&client, &ctx, task, spawn).await };
        match (rt, self.tokio.as_ref()) {
            // On the multi-thread scheduler the loop runs as a task on a worker (as request
            // handlers do), not on the thread blocked in `block_on`.
            (AmRt::TokioMt, Some(t)) => {
                t.block_on(async move { tokio::spawn(body).await.map_err(|e| e.to_string())? })
            }
            _ => block_on(rt, self.tokio.as_ref(), body),
        }
    }
}

impl Drop for Anymongo {
    fn drop(&mut self) {
        let clients: Vec<_> = self.clients.drain().map(|(_, c)| c).collect();
        block_on(self.rt, self.tokio.as_ref(), async move {
            for c in clients {
                c.shutdown().await;
            }
        });
    }
}

/// The official `mongodb` driver on tokio's multi-thread runtime.
pub struct Official {
    tokio: tokio::runtime::Runtime,
    uri: String,
    ctx: Arc<Ctx>,
    clients: HashMap<Option<u32>, mongodb::Client>,
}

impl Official {
    /// The official driver against `uri`.
    pub fn new(uri: &str, ctx: Arc<Ctx>) -> Self {
        Official {
            tokio: tokio_runtime(true),
            uri: uri.to_string(),
            ctx,
            clients: HashMap::new(),
        }
    }
}

impl Contestant for Official {
    fn name(&self) -> &'static str {
        "official mongodb"
    }

    fn run(&mut self, task: Task) -> Outcome {
        let pool = task.pool_size();
        let client = match self.clients.get(&pool) {
            Some(c) => c.clone(),
            None => {
                let uri = uri_for(&self.uri, pool);
                let c = self
                    .tokio
                    .block_on(mongodb::Client::with_uri_str(&uri))
                    .map_err(|e| e.to_string())?;
                self.clients.insert(pool, c.clone());
                c
            }
        };
        let ctx = self.ctx.clone();
        // As for anymongo on tokio-mt: the loop runs as a task on a worker.
        self.tokio.block_on(async move {
            tokio::spawn(async move { official_task(&client, &ctx, task, tokio_spawn).await })
                .await
                .map_err(|e| e.to_string())?
        })
    }
}

impl Drop for Official {
    fn drop(&mut self) {
        let clients: Vec<_> = self.clients.drain().map(|(_, c)| c).collect();
        self.tokio.block_on(async move {
            for c in clients {
                c.shutdown().await;
            }
        });
    }
}

/// The floor: pre-encoded requests on blocking sockets.
pub struct Raw {
    addr: SocketAddr,
    ctx: Arc<Ctx>,
    conn: Option<RawConn>,
    pools: HashMap<u32, Vec<RawConn>>,
    encoded: HashMap<Task, Vec<Vec<u8>>>,
}

impl Raw {
    /// The floor against `addr`.
    pub fn new(addr: SocketAddr, ctx: Arc<Ctx>) -> Self {
        Raw {
            addr,
            ctx,
            conn: None,
            pools: HashMap::new(),
            encoded: HashMap::new(),
        }
    }

    /// Every request `task` sends, encoded (getMores excepted: they carry the cursor id).
    fn encode(&self, task: Task) -> Vec<Vec<u8>> {
        let ctx = &self.ctx;
        let db = ctx.db.as_str();
        let find_one = |i: usize| {
            let id = (i % ctx.p.tweets) as i32 + 1;
            let body = doc! { "find": crate::TWEETS, "filter": { "_id": id }, "limit": 1i64, "singleBatch": true };
            op_msg(i as i32 + 1, db, &body, None)
        };
        // Inserts carry an `_id` made before the clock starts, as the drivers add one
        // client-side (so the server does the same work for every contestant).
        let with_id = |d: &Document| {
            let mut out = doc! { "_id": bson::oid::ObjectId::new() };
            out.extend(d.clone());
            out
        };
        let insert = |coll: &str, docs: &[Document]| {
            let docs: Vec<Document> = docs.iter().map(with_id).collect();
            op_msg(1, db, &doc! { "insert": coll }, Some(("documents", &docs)))
        };
        match task {
            Task::RunCommand => vec![op_msg(1, db, &doc! { "hello": 1 }, None)],
            Task::FindOne => (0..ctx.p.n).map(find_one).collect(),
            Task::Concurrency(_) => (0..ctx.p.n_conc).map(find_one).collect(),
            Task::SmallInsert => (0..ctx.p.n)
                .map(|_| insert(crate::SMALL, std::slice::from_ref(&ctx.small)))
                .collect(),
            Task::LargeInsert => (0..ctx.p.n_large)
                .map(|_| insert(crate::LARGE, std::slice::from_ref(&ctx.large)))
                .collect(),
            Task::BulkSmall => vec![insert(crate::BULK_SMALL, &ctx.small_many)],
            Task::BulkLarge => vec![insert(crate::BULK_LARGE, &ctx.large_many)],
            Task::FindMany100 => vec![op_msg(
                1,
                db,
                &doc! { "find": crate::TWEETS, "filter": {}, "batchSize": 100 },
                None,
            )],
            Task::FindManyDefault => vec![op_msg(
                1,
                db,
                &doc! { "find": crate::TWEETS, "filter": {} },
                None,
            )],
        }
    }
}

impl Contestant for Raw {
    fn name(&self) -> &'static str {
        "raw floor"
    }

    fn run(&mut self, task: Task) -> Outcome {
        let err = |e: std::io::Error| e.to_string();
        if !self.encoded.contains_key(&task) {
            let reqs = self.encode(task);
            self.encoded.insert(task, reqs);
        }
        if self.conn.is_none() {
            self.conn = Some(RawConn::connect(self.addr).map_err(err)?);
        }
        let reqs = &self.encoded[&task];
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let p = &self.ctx.p;
        match task {
            Task::RunCommand | Task::SmallInsert | Task::LargeInsert => {
                let n = if task == Task::LargeInsert {
                    p.n_large
                } else {
                    p.n
                };
                let req = &reqs[0];
                let start = Instant::now();
                for _ in 0..n {
                    conn.round_trip(req).map_err(err)?;
                }
                let elapsed = start.elapsed();
                conn.check_ok().map_err(err)?;
                Ok((n as u64, elapsed))
            }
            Task::FindOne => {
                let start = Instant::now();
                for req in reqs {
                    conn.round_trip(req).map_err(err)?;
                }
                let elapsed = start.elapsed();
                conn.check_ok().map_err(err)?;
                Ok((reqs.len() as u64, elapsed))
            }
            Task::BulkSmall | Task::BulkLarge => {
                let start = Instant::now();
                conn.round_trip(&reqs[0]).map_err(err)?;
                let elapsed = start.elapsed();
                conn.check_ok().map_err(err)?;
                let n = if task == Task::BulkSmall {
                    p.bulk_small
                } else {
                    p.bulk_large
                };
                Ok((n as u64, elapsed))
            }
            Task::FindMany100 | Task::FindManyDefault => {
                let batch = (task == Task::FindMany100).then_some(100);
                let start = Instant::now();
                let docs = conn
                    .drain(&reqs[0], &self.ctx.db, crate::TWEETS, batch)
                    .map_err(err)?;
                let elapsed = start.elapsed();
                if docs != p.tweets as u64 {
                    return Err(format!("drained {docs} of {} documents", p.tweets));
                }
                Ok((docs, elapsed))
            }
            Task::Concurrency(pool) => {
                // The floor for a pool of P connections: P threads, one socket each, sharing
                // the requests.
                let threads = (pool as usize).min(p.conc_tasks).max(1);
                let conns = self.pools.entry(pool).or_default();
                while conns.len() < threads {
                    conns.push(RawConn::connect(self.addr).map_err(err)?);
                }
                let chunk = reqs.len().div_ceil(threads);
                let start = Instant::now();
                let results: Vec<std::io::Result<()>> = std::thread::scope(|s| {
                    let handles: Vec<_> = conns
                        .iter_mut()
                        .zip(reqs.chunks(chunk))
                        .map(|(c, part)| {
                            s.spawn(move || {
                                for r in part {
                                    c.round_trip(r)?;
                                }
                                c.check_ok()
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(std::io::Error::other("panic")))
                        })
                        .collect()
                });
                let elapsed = start.elapsed();
                for r in results {
                    r.map_err(err)?;
                }
                Ok((reqs.len() as u64, elapsed))
            }
        }
    }
}
