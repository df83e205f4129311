//! Runs a cmap-format test against the sans-IO [`PoolMachine`] on a virtual clock.
//!
//! The test's threads are simulated: each has a queue of operations and is either runnable or
//! blocked (on a check-out request, or sleeping until a virtual instant). Connections establish
//! as soon as nothing else can make progress. Time moves only when the main thread waits, jumping
//! from one [`PoolMachine::poll_timeout`] (or thread wake-up) to the next.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use crate::cmap::{CmapEvent, PoolAction, PoolMachine, RequestId};
use crate::options::ServerAddress;

use super::cmap_format::{
    check_outcome, classify_failure, count_events, CmapFormatTest, Op, TestError,
    DEFAULT_WAIT_FOR_EVENT,
};

enum Fail {
    /// The pool raised an error (compared with the test's `error`).
    Op(TestError),
    /// The runner could not carry out the test (a failure of the case).
    Runner(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Runner(s)
    }
}

enum Block {
    CheckOut(RequestId, Option<String>),
    Until(Instant),
}

#[derive(Default)]
struct VThread {
    queue: VecDeque<Op>,
    blocked: Option<Block>,
    error: Option<TestError>,
}

struct Runner {
    m: PoolMachine,
    now: Instant,
    events: Vec<CmapEvent>,
    establishing: VecDeque<u64>,
    outcomes: HashMap<RequestId, Result<u64, TestError>>,
    threads: BTreeMap<String, VThread>,
    labels: HashMap<String, u64>,
}

/// Runs `test` against a [`PoolMachine`]; `Err` describes the first mismatch.
pub fn run_cmap_format_machine(test: &CmapFormatTest) -> Result<(), String> {
    let ops = test
        .operations
        .iter()
        .map(|o| Ok((o.thread.clone(), o.op()?)))
        .collect::<Result<Vec<_>, String>>()?;
    let m = PoolMachine::new(
        ServerAddress::tcp("localhost", 27017),
        test.pool_options.to_pool_options(),
    )
    .map_err(|e| format!("pool options rejected: {e}"))?;
    let mut r = Runner {
        m,
        now: Instant::now(),
        events: Vec::new(),
        establishing: VecDeque::new(),
        outcomes: HashMap::new(),
        threads: BTreeMap::new(),
        labels: HashMap::new(),
    };
    r.settle()?;
    let mut main_error = None;
    for (thread, op) in ops {
        let result = match thread {
            Some(t) => match r.threads.get_mut(&t) {
                Some(th) => {
                    th.queue.push_back(op);
                    r.settle().map_err(Fail::Runner)
                }
                None => Err(Fail::Runner(format!("thread {t} was not started"))),
            },
            None => r.main_op(op),
        };
        match result {
            Ok(()) => {}
            Err(Fail::Op(e)) => {
                main_error = Some(e);
                break;
            }
            Err(Fail::Runner(s)) => return Err(s),
        }
    }
    check_outcome(test, &r.events, main_error.as_ref())
}

impl Runner {
    /// Collects events and actions; checks the machine's invariants.
    fn drain(&mut self) -> Result<(), String> {
        while let Some(e) = self.m.poll_event() {
            self.events.push(e);
        }
        while let Some(a) = self.m.poll_action() {
            match a {
                PoolAction::Establish { conn_id, .. } => self.establishing.push_back(conn_id),
                PoolAction::CheckedOut {
                    request, conn_id, ..
                } => {
                    self.outcomes.insert(request, Ok(conn_id));
                }
                PoolAction::CheckOutFailed {
                    request,
                    reason,
                    error,
                } => {
                    self.outcomes
                        .insert(request, Err(classify_failure(reason, &error)));
                }
                PoolAction::Close { conn_id, .. } => self.establishing.retain(|c| *c != conn_id),
                PoolAction::Interrupt { .. } | PoolAction::BackgroundError { .. } => {}
            }
        }
        self.m.check_invariants()
    }

    /// Runs threads and establishes connections until nothing can progress without time passing.
    fn settle(&mut self) -> Result<(), String> {
        for _ in 0..100_000 {
            self.drain()?;
            let names: Vec<String> = self.threads.keys().cloned().collect();
            let mut progressed = false;
            for name in names {
                progressed |= self.run_thread(&name)?;
            }
            if progressed {
                continue;
            }
            match self.establishing.pop_front() {
                Some(id) => {
                    self.m.connection_established(id, self.now);
                }
                None => return Ok(()),
            }
        }
        Err("the pool did not settle".into())
    }

    fn run_thread(&mut self, name: &str) -> Result<bool, String> {
        let mut progressed = false;
        loop {
            let Some(th) = self.threads.get_mut(name) else {
                return Ok(progressed);
            };
            match th.blocked.take() {
                Some(Block::CheckOut(req, label)) => match self.outcomes.remove(&req) {
                    Some(Ok(id)) => {
                        if let Some(l) = label {
                            self.labels.insert(l, id);
                        }
                        progressed = true;
                    }
                    Some(Err(e)) => {
                        th.error.get_or_insert(e);
                        progressed = true;
                    }
                    None => {
                        th.blocked = Some(Block::CheckOut(req, label));
                        return Ok(progressed);
                    }
                },
                Some(Block::Until(t)) => {
                    if self.now < t {
                        th.blocked = Some(Block::Until(t));
                        return Ok(progressed);
                    }
                    progressed = true;
                }
                None => {
                    let Some(op) = th.queue.pop_front() else {
                        return Ok(progressed);
                    };
                    progressed = true;
                    let block = match op {
                        Op::CheckOut { label } => {
                            Some(Block::CheckOut(self.m.check_out(self.now), label))
                        }
                        Op::Wait(d) => Some(Block::Until(self.now + d)),
                        other => {
                            if let Err(e) = self.simple_op(other) {
                                match e {
                                    Fail::Op(e) => {
                                        if let Some(th) = self.threads.get_mut(name) {
                                            th.error.get_or_insert(e);
                                        }
                                    }
                                    Fail::Runner(s) => return Err(s),
                                }
                            }
                            None
                        }
                    };
                    self.drain()?;
                    if let Some(th) = self.threads.get_mut(name) {
                        th.blocked = block;
                    }
                }
            }
        }
    }

    /// Operations that never block.
    fn simple_op(&mut self, op: Op) -> Result<(), Fail> {
        match op {
            Op::CheckIn { label } => {
                let id = self
                    .labels
                    .remove(&label)
                    .ok_or_else(|| format!("no connection labelled {label}"))?;
                self.m
                    .check_in(id, self.now, true)
                    .map_err(|e| format!("checkIn failed: {e}"))?;
            }
            Op::Clear {
                interrupt_in_use_connections,
            } => self.m.clear(self.now, interrupt_in_use_connections),
            Op::Close => self.m.close(self.now),
            Op::Ready => self.m.ready(self.now),
            other => return Err(Fail::Runner(format!("{other:?} cannot run in a thread"))),
        }
        Ok(())
    }

    fn next_wake(&self) -> Option<Instant> {
        let threads = self.threads.values().filter_map(|t| match t.blocked {
            Some(Block::Until(i)) => Some(i),
            _ => None,
        });
        self.m.poll_timeout().into_iter().chain(threads).min()
    }

    /// Moves the clock to `target`, handling every timeout on the way.
    fn advance_to(&mut self, target: Instant) -> Result<(), String> {
        self.settle()?;
        while let Some(next) = self.next_wake().filter(|n| *n <= target) {
            self.now = self.now.max(next);
            self.m.handle_timeout(self.now);
            self.settle()?;
        }
        self.now = self.now.max(target);
        self.m.handle_timeout(self.now);
        self.settle()
    }

    /// Moves to the next wake-up, if there is one no later than `limit`.
    fn step(&mut self, limit: Option<Instant>) -> Result<bool, String> {
        match self.next_wake() {
            Some(next) if limit.is_none_or(|l| next <= l) => {
                self.advance_to(next)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn main_op(&mut self, op: Op) -> Result<(), Fail> {
        match op {
            Op::Start(name) => {
                self.threads.insert(name, VThread::default());
            }
            Op::Wait(d) => self.advance_to(self.now + d)?,
            Op::WaitForThread(name) => loop {
                self.settle()?;
                let th = self
                    .threads
                    .get_mut(&name)
                    .ok_or_else(|| format!("no thread {name}"))?;
                if th.blocked.is_none() && th.queue.is_empty() {
                    if let Some(e) = th.error.take() {
                        return Err(Fail::Op(e));
                    }
                    break;
                }
                if !self.step(None)? {
                    return Err(Fail::Runner(format!("thread {name} never finishes")));
                }
            },
            Op::WaitForEvent {
                event,
                count,
                timeout,
            } => {
                let limit = self.now + timeout.unwrap_or(DEFAULT_WAIT_FOR_EVENT);
                loop {
                    self.settle()?;
                    if count_events(&self.events, &event) >= count {
                        break;
                    }
                    if !self.step(Some(limit))? {
                        return Err(Fail::Runner(format!(
                            "timed out waiting for {count} {event} event(s)"
                        )));
                    }
                }
            }
            Op::CheckOut { label } => {
                let req = self.m.check_out(self.now);
                loop {
                    self.settle()?;
                    match self.outcomes.remove(&req) {
                        Some(Ok(id)) => {
                            if let Some(l) = label {
                                self.labels.insert(l, id);
                            }
                            break;
                        }
                        Some(Err(e)) => return Err(Fail::Op(e)),
                        None => {
                            if !self.step(None)? {
                                return Err(Fail::Runner("checkOut never completes".into()));
                            }
                        }
                    }
                }
            }
            other => {
                self.simple_op(other)?;
                self.settle()?;
            }
        }
        Ok(())
    }
}
