//! The engine's `log` records (retries, throttling) for Python's `logging`: a logger that
//! queues them (never taking the GIL on the engine's threads) and a drain the calling
//! thread runs while it waits for a call, handing each record to the package.

use std::collections::VecDeque;
use std::sync::Mutex;

use pyo3::prelude::*;

/// Records waiting for a Python thread; the oldest are dropped past this many.
const LIMIT: usize = 1000;

static QUEUE: Mutex<VecDeque<(u8, String, String)>> = Mutex::new(VecDeque::new());

struct Queued;

impl log::Log for Queued {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("o365_essentials")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Python's numbers: DEBUG 10, INFO 20, WARNING 30, ERROR 40.
        let level = match record.level() {
            log::Level::Error => 40,
            log::Level::Warn => 30,
            log::Level::Info => 20,
            log::Level::Debug | log::Level::Trace => 10,
        };
        let mut q = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= LIMIT {
            q.pop_front();
        }
        q.push_back((
            level,
            record.target().replace("::", "."),
            record.args().to_string(),
        ));
    }

    fn flush(&self) {}
}

static LOGGER: Queued = Queued;

/// Installs the queueing logger (once; a host that installed its own keeps it).
pub(crate) fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// Hands every queued record to `sink(level, logger_name, message)`.
pub(crate) fn drain(py: Python<'_>, sink: &Py<PyAny>) -> PyResult<()> {
    loop {
        let next = QUEUE.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        match next {
            Some((level, target, message)) => {
                sink.call1(py, (level, target, message))?;
            }
            None => return Ok(()),
        }
    }
}

/// The queued records as `(level, logger_name, message)`, oldest first; the queue is
/// left empty.
#[pyfunction]
pub(crate) fn take_log_records() -> Vec<(u8, String, String)> {
    QUEUE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
        .collect()
}
