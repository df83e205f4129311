//! Conformance of the `Runtime`/`Stream` adapters: tasks, timers, sockets, resolution and the
//! `current()` constructors. Every test runs on every harness.
//!
//! Timing: no test asserts how long something took. Tests assert orderings, clock
//! consistency (`now() >= deadline` after a sleep) and outcomes; the runner's timeout only
//! guards against hangs.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::pin::Pin;
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use anymongo_core::rt::{deadline_after, Elapsed, RuntimeExt, Sleep, Stream, StreamExt};
use futures::channel::oneshot;
use futures::future::{pending, poll_fn};

use crate::{CurrentOutside, Env, Outcome};

/// Generous bound for things that should happen promptly; exceeding it is a failure (a hang),
/// not a timing measurement.
const PROMPTLY: Duration = Duration::from_secs(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `f` once with the current task's waker.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}

/// A timer with the deadline it was armed for.
type Timed = (Instant, Pin<Box<dyn Sleep>>);

/// Awaits all `sleeps` and returns the groups of indices seen completing together, in the
/// order they were seen. Each round polls the latest deadline first, so a later timer can
/// never be observed before an earlier one merely because of polling order.
async fn completion_groups(sleeps: Vec<Timed>) -> Vec<Vec<usize>> {
    let mut sleeps: Vec<Option<Timed>> = sleeps.into_iter().map(Some).collect();
    let mut by_deadline_desc: Vec<usize> = (0..sleeps.len()).collect();
    by_deadline_desc.sort_by_key(|&i| std::cmp::Reverse(sleeps[i].as_ref().map(|s| s.0)));
    let mut groups = Vec::new();
    poll_fn(|cx| {
        let mut group = Vec::new();
        for &i in &by_deadline_desc {
            if let Some((_, sleep)) = sleeps[i].as_mut() {
                if sleep.as_mut().poll(cx).is_ready() {
                    sleeps[i] = None;
                    group.push(i);
                }
            }
        }
        if !group.is_empty() {
            group.sort_unstable();
            groups.push(group);
        }
        if sleeps.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    groups
}

/// Asserts that `groups` (from [`completion_groups`]) complete in the order `expected`:
/// each group is the next run of `expected`, in any order within the group.
fn assert_completion_order(groups: &[Vec<usize>], expected: &[usize]) {
    let mut rest = expected;
    for group in groups {
        assert!(
            group.len() <= rest.len(),
            "groups {groups:?}, expected {expected:?}"
        );
        let (head, tail) = rest.split_at(group.len());
        let mut head = head.to_vec();
        head.sort_unstable();
        assert_eq!(
            &head, group,
            "completion groups {groups:?}, expected order {expected:?}"
        );
        rest = tail;
    }
    assert!(rest.is_empty(), "not all completed: {groups:?}");
}

/// `Runtime::name()` is the adapter's documented name.
pub async fn name_matches(env: Env) -> Outcome {
    assert_eq!(env.rt.name(), env.harness.runtime_name);
    Outcome::Pass
}

/// A detached task runs to completion, including across its own await points.
pub async fn spawn_detached_runs(env: Env) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let rt = env.rt.clone();
    env.rt.spawn(Box::pin(async move {
        rt.sleep(ms(1)).await;
        let _ = tx.send(5u32);
    }));
    let got = env.rt.timeout(PROMPTLY, rx).await;
    assert_eq!(got, Ok(Ok(5)), "the detached task did not run");
    Outcome::Pass
}

/// `spawn` works when called from a thread outside the runtime (e.g. a drop path).
pub async fn spawn_from_foreign_thread(env: Env) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let rt = env.rt.clone();
    thread::spawn(move || {
        rt.spawn(Box::pin(async move {
            let _ = tx.send("from a foreign thread");
        }))
    })
    .join()
    .expect("spawning from a foreign thread panicked");
    let got = env.rt.timeout(PROMPTLY, rx).await;
    assert_eq!(got, Ok(Ok("from a foreign thread")));
    Outcome::Pass
}

/// `spawn_with_handle` resolves to the task's output.
pub async fn spawn_with_handle_returns_value(env: Env) -> Outcome {
    let rt = env.rt.clone();
    let handle = env.rt.spawn_with_handle(async move {
        rt.sleep(ms(1)).await;
        String::from("forty-two")
    });
    let got = env.rt.timeout(PROMPTLY, handle).await;
    assert_eq!(got.as_deref(), Ok("forty-two"));
    Outcome::Pass
}

/// `JoinHandle::detach` lets the task finish without anyone awaiting it.
pub async fn join_handle_detach_runs(env: Env) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let rt = env.rt.clone();
    env.rt
        .spawn_with_handle(async move {
            rt.sleep(ms(2)).await;
            let _ = tx.send(());
        })
        .detach();
    assert_eq!(env.rt.timeout(PROMPTLY, rx).await, Ok(Ok(())));
    Outcome::Pass
}

/// Dropping a `JoinHandle` cancels the task: its future is dropped without completing.
pub async fn dropping_join_handle_cancels(env: Env) -> Outcome {
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let (alive_tx, alive_rx) = oneshot::channel::<()>();
    let handle = env.rt.spawn_with_handle(async move {
        let _alive = alive_tx; // dropped only when the task's future is dropped
        let _ = started_tx.send(());
        pending::<()>().await;
    });
    let started = env.rt.timeout(PROMPTLY, started_rx).await;
    assert_eq!(started, Ok(Ok(())), "the task never started");
    drop(handle);
    match env.rt.timeout(PROMPTLY, alive_rx).await {
        Ok(Err(oneshot::Canceled)) => Outcome::Pass,
        Ok(Ok(())) => panic!("the task sent on a channel it never sends on"),
        Err(Elapsed) => panic!("dropping the JoinHandle did not cancel the task"),
    }
}

/// Three sleeps created out of order complete in deadline order.
pub async fn sleeps_complete_in_deadline_order(env: Env) -> Outcome {
    let now = env.rt.now();
    let deadlines = [now + ms(60), now + ms(20), now + ms(100)];
    let sleeps = deadlines
        .iter()
        .map(|&d| (d, env.rt.sleep_until(d)))
        .collect();
    let groups = completion_groups(sleeps).await;
    assert_completion_order(&groups, &[1, 0, 2]);
    assert!(env.rt.now() >= deadlines[2]);
    Outcome::Pass
}

/// A reset to an earlier deadline completes earlier; a reset to a later one completes later.
pub async fn sleep_reset_earlier_and_later(env: Env) -> Outcome {
    let now = env.rt.now();
    let mut earlier = env.rt.sleep_until(now + Duration::from_secs(3600));
    earlier.as_mut().reset(now + ms(20));
    let reference = env.rt.sleep_until(now + ms(60));
    let mut later = env.rt.sleep_until(now + ms(5));
    // Poll once before moving it, so an already-armed timer is re-armed, not just replaced.
    assert!(poll_once(&mut later).await.is_pending() || env.rt.now() >= now + ms(5));
    later.as_mut().reset(now + ms(100));
    let groups = completion_groups(vec![
        (now + ms(20), earlier),
        (now + ms(60), reference),
        (now + ms(100), later),
    ])
    .await;
    assert_completion_order(&groups, &[0, 1, 2]);
    assert!(
        env.rt.now() >= now + ms(100),
        "the timer reset to later completed before its new deadline"
    );
    Outcome::Pass
}

/// A completed sleep stays ready until reset; reset re-arms it.
pub async fn sleep_stays_ready_until_reset(env: Env) -> Outcome {
    let mut sleep = env.rt.sleep(ms(1));
    (&mut sleep).await;
    assert!(poll_once(&mut sleep).await.is_ready(), "not ready again");
    sleep
        .as_mut()
        .reset(deadline_after(env.rt.now(), Duration::from_secs(3600)));
    assert!(
        poll_once(&mut sleep).await.is_pending(),
        "reset did not re-arm"
    );
    let deadline = env.rt.now() + ms(3);
    sleep.as_mut().reset(deadline);
    (&mut sleep).await;
    assert!(env.rt.now() >= deadline);
    Outcome::Pass
}

/// A timer created on a thread outside the runtime works when awaited inside it.
pub async fn timer_from_foreign_thread(env: Env) -> Outcome {
    let rt = env.rt.clone();
    let (deadline, sleep) = thread::spawn(move || {
        let deadline = rt.now() + ms(5);
        (deadline, rt.sleep_until(deadline))
    })
    .join()
    .expect("creating a timer on a foreign thread panicked");
    assert_eq!(env.rt.timeout(PROMPTLY, sleep).await, Ok(()));
    assert!(env.rt.now() >= deadline);
    Outcome::Pass
}

/// After `sleep_until(d)` completes, `now() >= d`; a past deadline completes.
pub async fn now_agrees_with_sleep(env: Env) -> Outcome {
    for dur in [0, 1, 7, 25] {
        let deadline = env.rt.now() + ms(dur);
        env.rt.sleep_until(deadline).await;
        let now = env.rt.now();
        assert!(
            now >= deadline,
            "sleep({dur}ms) ended at {now:?} < {deadline:?}"
        );
    }
    let t0 = env.rt.now();
    let past = t0.checked_sub(ms(50)).unwrap_or(t0);
    assert_eq!(
        env.rt.timeout(PROMPTLY, env.rt.sleep_until(past)).await,
        Ok(())
    );
    assert!(env.rt.now() >= t0, "now() went backwards");
    Outcome::Pass
}

/// A timeout fires on a future that never completes, and `timeout_at` a past deadline too.
pub async fn timeout_fires(env: Env) -> Outcome {
    let start = env.rt.now();
    assert_eq!(env.rt.timeout(ms(20), pending::<()>()).await, Err(Elapsed));
    assert!(env.rt.now() >= start + ms(20));
    let past = env.rt.now();
    assert_eq!(env.rt.timeout_at(past, pending::<u8>()).await, Err(Elapsed));
    // The deadline is checked on every poll, first: a passed one wins even over a future
    // that would complete now (a read loop that keeps making progress cannot outlive it).
    assert_eq!(env.rt.timeout_at(past, async { 7 }).await, Err(Elapsed));
    Outcome::Pass
}

/// A timeout does not fire when the future finishes first.
pub async fn timeout_does_not_fire(env: Env) -> Outcome {
    assert_eq!(
        env.rt
            .timeout(Duration::from_secs(3600), async { 42 })
            .await,
        Ok(42)
    );
    let short = env.rt.sleep(ms(5));
    assert_eq!(
        env.rt.timeout(Duration::from_secs(3600), short).await,
        Ok(())
    );
    assert_eq!(
        env.rt.timeout(Duration::MAX, async { "max" }).await,
        Ok("max")
    );
    Outcome::Pass
}

/// `sleep(Duration::MAX)` and other far-future deadlines are pending and safe to drop.
pub async fn sleep_max_is_safe(env: Env) -> Outcome {
    let mut max = env.rt.sleep(Duration::MAX);
    assert!(poll_once(&mut max).await.is_pending());
    drop(max);

    let far = deadline_after(env.rt.now(), Duration::MAX);
    let mut sleep = env.rt.sleep_until(far);
    assert!(poll_once(&mut sleep).await.is_pending());
    sleep
        .as_mut()
        .reset(deadline_after(env.rt.now(), Duration::MAX));
    assert!(poll_once(&mut sleep).await.is_pending());
    // A raw instant far beyond MAX_SLEEP, not produced by deadline_after.
    if let Some(very_far) = env.rt.now().checked_add(Duration::from_secs(1 << 40)) {
        sleep.as_mut().reset(very_far);
        assert!(poll_once(&mut sleep).await.is_pending());
        let mut raw = env.rt.sleep_until(very_far);
        assert!(poll_once(&mut raw).await.is_pending());
    }
    let deadline = env.rt.now() + ms(1);
    sleep.as_mut().reset(deadline);
    assert_eq!(env.rt.timeout(PROMPTLY, sleep).await, Ok(()));

    let mut t = Box::pin(env.rt.timeout(Duration::MAX, pending::<()>()));
    assert!(poll_once(&mut t).await.is_pending());
    Outcome::Pass
}

/// Connecting to a port nobody listens on is an error.
pub async fn connect_refused_is_error(env: Env) -> Outcome {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local_addr")
    }; // listener dropped: the port is now closed
    let result = env.rt.timeout(PROMPTLY, env.rt.connect(addr)).await;
    match result {
        Ok(Err(_refused)) => Outcome::Pass,
        Ok(Ok(_)) => panic!("connected to closed port {addr}"),
        Err(Elapsed) => panic!("connect to closed port {addr} hung"),
    }
}

const ONE_MIB: usize = 1 << 20;

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// A std-thread echo server for one connection; the thread returns the bytes echoed.
fn echo_server() -> (SocketAddr, thread::JoinHandle<io::Result<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo listener");
    let addr = listener.local_addr().expect("local_addr");
    let server = thread::spawn(move || {
        let (mut sock, _) = listener.accept()?;
        // Without this, Nagle + delayed ACKs stall every request/response round trip.
        sock.set_nodelay(true)?;
        let mut buf = [0u8; 8192];
        let mut total = 0;
        loop {
            let n = sock.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sock.write_all(&buf[..n])?;
            total += n;
        }
        sock.shutdown(Shutdown::Write)?;
        Ok(total)
    });
    (addr, server)
}

/// 1 MiB echoed through `Stream::poll_*` directly: writing and reading interleaved, with
/// partial writes (capped slices) and partial reads (a small odd-sized buffer).
pub async fn echo_1mib_poll(env: Env) -> Outcome {
    let (addr, server) = echo_server();
    let mut stream = env.rt.connect(addr).await.expect("connect to echo server");
    let data = pattern(ONE_MIB);
    let mut echoed = Vec::with_capacity(ONE_MIB);
    let mut buf = vec![0u8; 7919];
    let (mut sent, mut shut) = (0, false);
    let pump = poll_fn(|cx| loop {
        let mut progress = false;
        if sent < data.len() {
            let end = (sent + 100_003).min(data.len());
            match Pin::new(&mut stream).poll_write(cx, &data[sent..end]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    sent += n;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        } else if !shut {
            let flushed = Pin::new(&mut stream).poll_flush(cx);
            if let Poll::Ready(r) = flushed {
                if let Err(e) = r {
                    return Poll::Ready(Err(e));
                }
                if let Poll::Ready(r) = Pin::new(&mut stream).poll_shutdown(cx) {
                    if let Err(e) = r {
                        return Poll::Ready(Err(e));
                    }
                    shut = true;
                    progress = true;
                }
            }
        }
        match Pin::new(&mut stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
            Poll::Ready(Ok(n)) => {
                echoed.extend_from_slice(&buf[..n]);
                progress = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        if !progress {
            return Poll::Pending;
        }
    });
    let pumped = env.rt.timeout(PROMPTLY, pump).await;
    assert!(matches!(pumped, Ok(Ok(()))), "echo pump: {pumped:?}");
    assert!(shut, "end of stream before the write half was shut down");
    assert_eq!(echoed.len(), ONE_MIB);
    assert!(echoed == data, "echoed bytes differ");
    let served = server.join().expect("echo thread panicked");
    assert_eq!(served.expect("echo server io"), ONE_MIB);
    Outcome::Pass
}

/// 1 MiB echoed with `StreamExt`: `write_all` in odd-sized chunks, each read back with as many
/// `read` calls as it takes, then `shutdown` and end of stream.
pub async fn echo_1mib_stream_ext(env: Env) -> Outcome {
    let (addr, server) = echo_server();
    let mut stream = env.rt.connect(addr).await.expect("connect to echo server");
    let data = pattern(ONE_MIB);
    let mut echoed = Vec::with_capacity(ONE_MIB);
    let mut buf = vec![0u8; 4093];
    let io = async {
        for chunk in data.chunks(10_007) {
            stream.write_all(chunk).await?;
            stream.flush().await?;
            let want = echoed.len() + chunk.len();
            while echoed.len() < want {
                let room = (want - echoed.len()).min(buf.len());
                let n = stream.read(&mut buf[..room]).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                echoed.extend_from_slice(&buf[..n]);
            }
        }
        stream.shutdown().await?;
        let eof = stream.read(&mut buf).await?;
        Ok::<usize, io::Error>(eof)
    };
    let result = env.rt.timeout(PROMPTLY, io).await;
    assert!(
        matches!(result, Ok(Ok(0))),
        "echo: {result:?} (expected end of stream)"
    );
    assert!(echoed == data, "echoed bytes differ");
    let served = server.join().expect("echo thread panicked");
    assert_eq!(served.expect("echo server io"), ONE_MIB);
    Outcome::Pass
}

/// `resolve("localhost", port)` gives loopback addresses with that port.
pub async fn resolve_localhost_is_loopback(env: Env) -> Outcome {
    let addrs = env
        .rt
        .timeout(PROMPTLY, env.rt.resolve("localhost", 27017))
        .await;
    let addrs = addrs.expect("resolve hung").expect("resolve localhost");
    assert!(!addrs.is_empty(), "localhost resolved to nothing");
    for addr in &addrs {
        assert!(addr.ip().is_loopback(), "{addr} is not loopback");
        assert_eq!(addr.port(), 27017);
    }
    Outcome::Pass
}

/// IP literals resolve to themselves.
pub async fn resolve_ip_literal(env: Env) -> Outcome {
    for (host, expected) in [("127.0.0.1", "127.0.0.1:9"), ("::1", "[::1]:9")] {
        let addrs = env.rt.timeout(PROMPTLY, env.rt.resolve(host, 9)).await;
        let addrs = addrs.expect("resolve hung").expect("resolve an IP literal");
        let expected: SocketAddr = expected.parse().expect("valid socket address");
        assert_eq!(addrs, vec![expected]);
    }
    Outcome::Pass
}

/// The adapter's `current()` works inside its runtime, and outside any runtime it either
/// returns an error (tokio, async-std) or, for runtimes that start on demand (smol), a
/// runtime that actually runs tasks.
pub async fn current_inside_and_outside(env: Env) -> Outcome {
    let harness = env.harness;
    let inside = (harness.current)().expect("current() inside the runtime");
    assert_eq!(inside.name(), harness.runtime_name);

    let outside = thread::spawn(move || (harness.current)())
        .join()
        .expect("current() panicked outside a runtime");
    match (harness.current_outside, outside) {
        (CurrentOutside::Errors, Err(e)) => {
            assert!(!e.to_string().is_empty(), "the error has no message");
        }
        (CurrentOutside::Errors, Ok(_)) => panic!("current() outside a runtime succeeded"),
        (CurrentOutside::Works, Err(e)) => panic!("current() outside a runtime failed: {e}"),
        (CurrentOutside::Works, Ok(rt)) => {
            let (tx, rx) = oneshot::channel();
            rt.spawn(Box::pin(async move {
                let _ = tx.send(());
            }));
            let ran = env.rt.timeout(PROMPTLY, rx).await;
            assert_eq!(
                ran,
                Ok(Ok(())),
                "the runtime from current() did not run a task"
            );
        }
    }
    Outcome::Pass
}

/// The first `host:port` of a `mongodb://` URI as `ci/with-server` writes it.
fn first_host(uri: &str) -> Option<(String, u16)> {
    let rest = uri.strip_prefix("mongodb://")?;
    let hosts = rest.split(['/', '?']).next()?;
    let host = hosts.split(',').next()?;
    let host = host.rsplit('@').next()?;
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, port.parse().ok()?),
        None => (host, 27017),
    };
    Some((name.trim_matches(['[', ']']).to_owned(), port))
}

/// Against the real server (`ANYMONGO_URI`): resolve its host, connect, send an OP_MSG `hello`
/// through the `Stream` trait and read back a reply document with `ok: 1`.
pub async fn server_hello_roundtrip(env: Env) -> Outcome {
    let Some(uri) = crate::server_uri() else {
        return Outcome::Skip("ANYMONGO_URI not set (run under ci/with-server)");
    };
    let (host, port) = first_host(&uri).expect("ANYMONGO_URI is a mongodb:// URI");
    let addrs = env.rt.timeout(PROMPTLY, env.rt.resolve(&host, port)).await;
    let addrs = addrs
        .expect("resolve hung")
        .expect("resolve the server host");
    let addr = *addrs.first().expect("the server host resolved to nothing");
    let mut stream = env.rt.connect(addr).await.expect("connect to the server");

    let hello = bson::doc! { "hello": 1, "$db": "admin" };
    let body = hello.to_vec().expect("encode hello");
    let mut msg = Vec::with_capacity(21 + body.len());
    let len = i32::try_from(21 + body.len()).expect("small message");
    for field in [len, 7, 0, 2013] {
        msg.extend_from_slice(&field.to_le_bytes()); // length, requestID, responseTo, OP_MSG
    }
    msg.extend_from_slice(&0u32.to_le_bytes()); // flagBits
    msg.push(0); // section kind 0: the body document
    msg.extend_from_slice(&body);

    let exchange = async {
        stream.write_all(&msg).await?;
        stream.flush().await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            if reply.len() >= 4 {
                let want = i32::from_le_bytes([reply[0], reply[1], reply[2], reply[3]]);
                let want = usize::try_from(want).map_err(|_| io::ErrorKind::InvalidData)?;
                if reply.len() >= want {
                    reply.truncate(want);
                    return Ok::<Vec<u8>, io::Error>(reply);
                }
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            reply.extend_from_slice(&buf[..n]);
        }
    };
    let reply = env.rt.timeout(PROMPTLY, exchange).await;
    let reply = reply
        .expect("the server did not answer")
        .expect("read the reply");
    assert!(reply.len() > 21, "reply too short: {} bytes", reply.len());
    let response_to = i32::from_le_bytes([reply[8], reply[9], reply[10], reply[11]]);
    let op_code = i32::from_le_bytes([reply[12], reply[13], reply[14], reply[15]]);
    assert_eq!(
        (response_to, op_code),
        (7, 2013),
        "not an OP_MSG reply to our request"
    );
    assert_eq!(
        reply[20], 0,
        "the reply's first section is not a body document"
    );
    let doc = bson::Document::from_reader(&reply[21..]).expect("reply body is a BSON document");
    let ok = doc.get("ok").and_then(|ok| match ok {
        bson::Bson::Double(v) => Some(*v),
        bson::Bson::Int32(v) => Some(f64::from(*v)),
        bson::Bson::Int64(v) => Some(*v as f64),
        _ => None,
    });
    assert_eq!(ok, Some(1.0), "hello failed: {doc}");
    Outcome::Pass
}

#[cfg(test)]
mod tests {
    use super::first_host;

    #[test]
    fn first_host_of_uris() {
        let host = |uri| first_host(uri);
        assert_eq!(
            host("mongodb://127.0.0.1:4567"),
            Some(("127.0.0.1".into(), 4567))
        );
        assert_eq!(host("mongodb://a:1,b:2/db?x=y"), Some(("a".into(), 1)));
        assert_eq!(host("mongodb://u:p@h"), Some(("h".into(), 27017)));
        assert_eq!(host("mongodb://[::1]:9/"), Some(("::1".into(), 9)));
        assert_eq!(host("mongodb://h:notaport"), None);
        assert_eq!(host("http://h"), None);
    }
}
