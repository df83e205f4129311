//! Idle memory: each contestant in a child process of its own (this binary re-executed with
//! `--rss-child NAME URI`) builds a client with 100 pooled connections (`minPoolSize=100`) to a
//! fresh fake server, says `ready`; the parent waits until the server sees the connections open
//! and steady, then asks the child for its peak RSS (`VmHWM` of `/proc/self/status`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::contestants::{am_runtime, block_on, tokio_runtime, AmRt};
use crate::raw::RawConn;

/// Connections the idle client holds.
pub const POOL: usize = 100;

/// One contestant's idle memory.
#[derive(Debug, Clone)]
pub struct Memory {
    /// The contestant's name in the tables.
    pub name: &'static str,
    /// Peak RSS in KiB, or why it could not be measured.
    pub vm_hwm_kib: Result<u64, String>,
    /// Connections the server saw open when the peak was read.
    pub connections: usize,
}

fn display_name(key: &str) -> &'static str {
    match key {
        "tokio-ct" => AmRt::TokioCt.name(),
        "tokio-mt" => AmRt::TokioMt.name(),
        "async-std" => AmRt::AsyncStd.name(),
        "smol" => AmRt::Smol.name(),
        "official" => "official mongodb",
        _ => "raw floor",
    }
}

/// Measures every contestant in `names` (keys as given to `--contestants`).
pub fn measure(names: &[String]) -> Vec<Memory> {
    names
        .iter()
        .map(|n| {
            let (vm_hwm_kib, connections) = match measure_one(n) {
                Ok((kib, conns)) => (Ok(kib), conns),
                Err(e) => (Err(e), 0),
            };
            eprintln!("[memory] {n}: {vm_hwm_kib:?} KiB with {connections} connections");
            Memory {
                name: display_name(n),
                vm_hwm_kib,
                connections,
            }
        })
        .collect()
}

fn measure_one(name: &str) -> Result<(u64, usize), String> {
    let server = anymongo_testkit::FakeServer::builder().fast_mode().start();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--rss-child", name, &server.uri()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("child said {line:?}"));
    }
    // Wait for the pool to fill: at least POOL connections, unchanged for half a second.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (0, Instant::now());
    let connections = loop {
        let open = server.open_connections();
        if open != last.0 {
            last = (open, Instant::now());
        }
        if open >= POOL && last.1.elapsed() > Duration::from_millis(500) {
            break open;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("only {open} connections opened"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writeln!(stdin, "go").map_err(|e| e.to_string())?;
    line.clear();
    stdout.read_line(&mut line).map_err(|e| e.to_string())?;
    drop(stdin);
    let _ = child.wait();
    let kib = line
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("child said {line:?}"))?;
    Ok((kib, connections))
}

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The child: hold an idle client with POOL connections until the parent says `go`, then
/// print VmHWM in KiB. Returns the process exit code.
pub fn child(name: &str, uri: &str) -> i32 {
    let go = Arc::new(AtomicBool::new(false));
    let flag = go.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        flag.store(true, Ordering::SeqCst);
    });
    let pooled = format!("{uri}&minPoolSize={POOL}&maxPoolSize={POOL}");
    let ready = || {
        println!("ready");
        let _ = std::io::stdout().flush();
    };
    let result: Result<(), String> = match name {
        "raw" => (|| {
            let addr = crate::uri_addr(uri)?;
            let conns = (0..POOL)
                .map(|_| RawConn::connect(addr))
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| e.to_string())?;
            ready();
            while !go.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(conns);
            Ok(())
        })(),
        "official" => {
            let rt = tokio_runtime(true);
            rt.block_on(async {
                let client = mongodb::Client::with_uri_str(&pooled)
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .database("admin")
                    .run_command(bson::doc! { "ping": 1 })
                    .await
                    .map_err(|e| e.to_string())?;
                ready();
                while !go.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(())
            })
        }
        _ => {
            let rt = match name {
                "tokio-ct" => AmRt::TokioCt,
                "tokio-mt" => AmRt::TokioMt,
                "async-std" => AmRt::AsyncStd,
                _ => AmRt::Smol,
            };
            let tokio = match rt {
                AmRt::TokioCt => Some(tokio_runtime(false)),
                AmRt::TokioMt => Some(tokio_runtime(true)),
                _ => None,
            };
            let runtime = am_runtime(rt, tokio.as_ref());
            block_on(rt, tokio.as_ref(), async {
                let client =
                    anymongo_core::Client::with_uri_str_and_runtime(&pooled, runtime.clone())
                        .map_err(|e| e.to_string())?;
                client
                    .database("admin")
                    .run_command(bson::doc! { "ping": 1 })
                    .await
                    .map_err(|e| e.to_string())?;
                ready();
                while !go.load(Ordering::SeqCst) {
                    runtime
                        .sleep_until(Instant::now() + Duration::from_millis(10))
                        .await;
                }
                Ok(())
            })
        }
    };
    match (result, vm_hwm_kib()) {
        (Ok(()), Some(kib)) => {
            println!("{kib}");
            0
        }
        (Err(e), _) => {
            println!("error: {e}");
            1
        }
        (Ok(()), None) => {
            println!("error: no VmHWM in /proc/self/status");
            1
        }
    }
}
