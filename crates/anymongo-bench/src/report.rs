//! Collecting measurements and rendering the markdown report.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use crate::rss::{Memory, POOL};
use crate::{Params, Task};

/// One timed run.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// Units (operations or documents) per second.
    pub rate: f64,
}

impl Measurement {
    /// `ops` units in `elapsed`.
    pub fn new(ops: u64, elapsed: Duration) -> Self {
        Measurement {
            rate: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        }
    }
}

/// Median, min and max of some runs.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// The median rate.
    pub median: f64,
    /// The slowest run.
    pub min: f64,
    /// The fastest run.
    pub max: f64,
}

fn summarize(runs: &[Measurement]) -> Option<Summary> {
    let mut r: Vec<f64> = runs.iter().map(|m| m.rate).collect();
    if r.is_empty() {
        return None;
    }
    r.sort_by(|a, b| a.total_cmp(b));
    let mid = r.len() / 2;
    let median = if r.len() % 2 == 1 {
        r[mid]
    } else {
        (r[mid - 1] + r[mid]) / 2.0
    };
    Some(Summary {
        median,
        min: r[0],
        max: r[r.len() - 1],
    })
}

/// All measurements against one server.
#[derive(Debug)]
pub struct Table {
    server: String,
    contestants: Vec<&'static str>,
    runs: HashMap<(Task, usize), Vec<Measurement>>,
    tasks: Vec<Task>,
    failures: HashMap<(Task, usize), usize>,
    p: Params,
}

impl Table {
    /// An empty table for `contestants` against `server`.
    pub fn new(server: &str, contestants: Vec<&'static str>, p: Params) -> Self {
        Table {
            server: server.to_string(),
            contestants,
            runs: HashMap::new(),
            tasks: Vec::new(),
            failures: HashMap::new(),
            p,
        }
    }

    /// Adds a run of contestant `i` on `task`.
    pub fn record(&mut self, task: Task, i: usize, m: Measurement) {
        if !self.tasks.contains(&task) {
            self.tasks.push(task);
        }
        self.runs.entry((task, i)).or_default().push(m);
    }

    /// Notes a failed run of contestant `i` on `task`.
    pub fn record_failure(&mut self, task: Task, i: usize) {
        if !self.tasks.contains(&task) {
            self.tasks.push(task);
        }
        *self.failures.entry((task, i)).or_default() += 1;
    }

    fn summary(&self, task: Task, i: usize) -> Option<Summary> {
        self.runs.get(&(task, i)).and_then(|r| summarize(r))
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.contestants.iter().position(|c| *c == name)
    }

    /// A plain-text progress line per contestant for `task`.
    pub fn task_rows(&self, task: Task) -> String {
        let mut s = format!("  {}:", task.label(&self.p));
        for (i, c) in self.contestants.iter().enumerate() {
            if let Some(sum) = self.summary(task, i) {
                let _ = write!(
                    s,
                    "\n    {c:<20} {:>10} {}",
                    fmt_rate(sum.median),
                    task.unit()
                );
            }
        }
        s
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 100_000.0 {
        format!("{:.0}k", r / 1000.0)
    } else if r >= 10_000.0 {
        format!("{:.1}k", r / 1000.0)
    } else if r >= 100.0 {
        format!("{:.0}", r)
    } else {
        format!("{:.1}", r)
    }
}

fn fmt_ratio(a: Option<Summary>, b: Option<Summary>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}×", a.median / b.median),
        _ => "–".into(),
    }
}

/// What this machine is: nproc, CPU model, memory, rustc.
pub fn machine() -> String {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("?")
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into());
    format!("- nproc: {nproc}\n- CPU: {cpu}\n- memory: {mem}\n- {rustc}\n")
}

/// The whole report.
pub fn render(
    tables: &[Table],
    memory: Option<&[Memory]>,
    runs: usize,
    command: &str,
    took: Duration,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### Machine\n\n{}", machine());
    let _ = writeln!(
        s,
        "Command: `{command}` (took {:.0} s; {runs} timed runs per cell after one warm-up run, \
         contestants interleaved; median, min–max in parentheses).\n",
        took.as_secs_f64()
    );
    for t in tables {
        let _ = writeln!(s, "### {}: throughput\n\nSizes: {:?}.\n", t.server, t.p);
        let _ = write!(s, "| task | unit |");
        for c in &t.contestants {
            let _ = write!(s, " {c} |");
        }
        let _ = write!(s, "\n|---|---|");
        for _ in &t.contestants {
            let _ = write!(s, "---:|");
        }
        s.push('\n');
        for &task in &t.tasks {
            let _ = write!(s, "| {} | {} |", task.label(&t.p), task.unit());
            for i in 0..t.contestants.len() {
                match t.summary(task, i) {
                    Some(sum) => {
                        let _ = write!(
                            s,
                            " **{}** ({}–{})",
                            fmt_rate(sum.median),
                            fmt_rate(sum.min),
                            fmt_rate(sum.max)
                        );
                    }
                    None => s.push_str(" –"),
                }
                if let Some(n) = t.failures.get(&(task, i)) {
                    let _ = write!(s, " ({n} failed)");
                }
                s.push_str(" |");
            }
            s.push('\n');
        }
        let official = t.index_of("official mongodb");
        let raw = t.index_of("raw floor");
        let _ = writeln!(
            s,
            "\n### {}: ratios (median ÷ official driver's median / ÷ raw floor's median)\n",
            t.server
        );
        let others: Vec<usize> = (0..t.contestants.len())
            .filter(|&i| Some(i) != raw)
            .collect();
        let _ = write!(s, "| task |");
        for &i in &others {
            let _ = write!(s, " {} |", t.contestants[i]);
        }
        let _ = write!(s, "\n|---|");
        for _ in &others {
            let _ = write!(s, "---:|");
        }
        s.push('\n');
        for &task in &t.tasks {
            let _ = write!(s, "| {} |", task.key());
            for &i in &others {
                let me = t.summary(task, i);
                let off = official.and_then(|o| t.summary(task, o));
                let fl = raw.and_then(|r| t.summary(task, r));
                let _ = write!(s, " {} / {} |", fmt_ratio(me, off), fmt_ratio(me, fl));
            }
            s.push('\n');
        }
        s.push('\n');
    }
    if let Some(mem) = memory {
        let _ = writeln!(
            s,
            "### Idle memory: peak RSS (VmHWM) of a process holding a client with {POOL} pooled \
             connections to the fake server\n\n| contestant | VmHWM | connections open at the server when read | ÷ official |\n|---|---:|---:|---:|"
        );
        let official = mem
            .iter()
            .find(|m| m.name == "official mongodb")
            .and_then(|m| m.vm_hwm_kib.as_ref().ok().copied());
        for m in mem {
            match &m.vm_hwm_kib {
                Ok(kib) => {
                    let ratio = official
                        .map(|o| format!("{:.2}×", *kib as f64 / o as f64))
                        .unwrap_or_else(|| "–".into());
                    let _ = writeln!(
                        s,
                        "| {} | {:.1} MiB | {} | {ratio} |",
                        m.name,
                        *kib as f64 / 1024.0,
                        m.connections
                    );
                }
                Err(e) => {
                    let _ = writeln!(s, "| {} | failed: {e} | – | – |", m.name);
                }
            }
        }
    }
    s
}
