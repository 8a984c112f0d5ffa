//! Where access log lines go: files (one shared buffer per path), stdout or stderr. Lines are
//! buffered and written by a flush thread every `--file-flush-interval-msec` (Envoy's default
//! 10 s), or at once when the buffer reaches `--file-flush-min-size-kb` (64 KiB), and on exit.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

static INTERVAL_MS: AtomicU64 = AtomicU64::new(10_000);
static MIN_SIZE: AtomicU64 = AtomicU64::new(64 * 1024);

/// The flush interval and minimum flush size from the command line.
pub fn configure(interval: Duration, min_size_bytes: u64) {
    INTERVAL_MS.store(interval.as_millis().max(1) as u64, Relaxed);
    MIN_SIZE.store(min_size_bytes, Relaxed);
}

#[derive(Debug)]
enum Dest {
    File(std::fs::File),
    Stdout,
    Stderr,
}

#[derive(Debug)]
struct State {
    buf: Vec<u8>,
    dest: Dest,
}

/// One destination, shared by every logger that names it.
#[derive(Debug)]
pub struct Sink {
    name: String,
    state: Mutex<State>,
}

impl Sink {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn write(&self, line: &[u8]) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.buf.extend_from_slice(line);
        if st.buf.len() as u64 >= MIN_SIZE.load(Relaxed) {
            flush_state(&mut st);
        }
    }

    fn flush(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        flush_state(&mut st);
    }
}

fn flush_state(st: &mut State) {
    if st.buf.is_empty() {
        return;
    }
    let r = match &mut st.dest {
        Dest::File(f) => f.write_all(&st.buf),
        Dest::Stdout => {
            let mut o = std::io::stdout().lock();
            o.write_all(&st.buf).and_then(|()| o.flush())
        }
        Dest::Stderr => std::io::stderr().lock().write_all(&st.buf),
    };
    if let Err(e) = r {
        tracing::warn!("access log write failed: {e}");
    }
    st.buf.clear();
}

fn sinks() -> &'static Mutex<HashMap<String, Arc<Sink>>> {
    static SINKS: OnceLock<Mutex<HashMap<String, Arc<Sink>>>> = OnceLock::new();
    SINKS.get_or_init(|| {
        std::thread::Builder::new()
            .name("access-log-flush".into())
            .spawn(|| loop {
                std::thread::sleep(Duration::from_millis(INTERVAL_MS.load(Relaxed)));
                flush_all();
            })
            .map_err(|e| tracing::warn!("cannot start the access log flush thread: {e}"))
            .ok();
        Mutex::new(HashMap::new())
    })
}

fn get_or_open(
    key: &str,
    open: impl FnOnce() -> std::io::Result<Dest>,
) -> std::io::Result<Arc<Sink>> {
    let mut map = sinks().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = map.get(key) {
        return Ok(s.clone());
    }
    let sink = Arc::new(Sink {
        name: key.to_string(),
        state: Mutex::new(State {
            buf: Vec::new(),
            dest: open()?,
        }),
    });
    map.insert(key.to_string(), sink.clone());
    Ok(sink)
}

/// The file at `path`, opened for appending (created if missing).
pub fn file(path: &str) -> std::io::Result<Arc<Sink>> {
    get_or_open(path, || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Dest::File)
    })
}

pub fn stdout() -> Arc<Sink> {
    get_or_open("\0stdout", || Ok(Dest::Stdout)).unwrap_or_else(|_| unreachable_sink())
}

pub fn stderr() -> Arc<Sink> {
    get_or_open("\0stderr", || Ok(Dest::Stderr)).unwrap_or_else(|_| unreachable_sink())
}

/// Opening stdout or stderr cannot fail; this keeps the signatures total.
fn unreachable_sink() -> Arc<Sink> {
    Arc::new(Sink {
        name: "stderr".into(),
        state: Mutex::new(State {
            buf: Vec::new(),
            dest: Dest::Stderr,
        }),
    })
}

/// Writes out every buffered line (the flush timer, and shutdown).
pub fn flush_all() {
    let all: Vec<Arc<Sink>> = match sinks().lock() {
        Ok(m) => m.values().cloned().collect(),
        Err(p) => p.into_inner().values().cloned().collect(),
    };
    for s in all {
        s.flush();
    }
}
