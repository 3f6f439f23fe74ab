//! What every blocking front door (the C ABI, the Python package, the command line)
//! needs to run the table's operations from a thread of its own: one runtime per
//! process that notices `fork()` and refuses calls from its own threads, and a call that
//! runs on that runtime while its events and its result come back to the calling thread.
//!
//! The front door loops over [`BlockingCall::next`] on the thread that made the call,
//! hands each event to its caller there, and stops the call through
//! [`BlockingCall::cancel`] when the caller asks (a callback returning "stop", a
//! callback's exception, Ctrl-C). Every event of the call is delivered before its
//! result.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::engine::{CancelToken, Control, Event, Integration};
use crate::error::{Error, ErrorCode, Result};

struct Runtime {
    rt: tokio::runtime::Runtime,
    pid: u32,
}

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The process's one runtime for the front doors (two workers), started on first use.
///
/// # Errors
/// [`ErrorCode::RuntimeContext`] when called from a thread of a tokio runtime (a
/// blocking call there would stall it); [`ErrorCode::ForkedProcess`] in a child forked
/// after the runtime started (its threads did not survive the fork);
/// [`ErrorCode::Internal`] when it cannot start.
pub fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::new(
            ErrorCode::RuntimeContext,
            "a blocking o365 call was made from an async runtime's thread (an event \
             callback's async work, or a tokio program's worker); call from a thread of \
             your own, or use the async interface",
        ));
    }
    let r = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("o365-runtime")
            .enable_all()
            .build()
            .map(|rt| Runtime {
                rt,
                pid: std::process::id(),
            })
            .map_err(|e| e.to_string())
    });
    match r {
        Ok(r) if r.pid != std::process::id() => Err(Error::new(
            ErrorCode::ForkedProcess,
            format!(
                "this process was forked from process {} after the library started its \
                 threads, which do not survive fork(); start a new program in the child \
                 (exec, or Python's \"spawn\" start method), or make the calls in the parent",
                r.pid
            ),
        )),
        Ok(r) => Ok(&r.rt),
        Err(e) => Err(Error::internal(format!("cannot start the runtime: {e}"))),
    }
}

/// What a front door asks of one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Stops the call when triggered (by the caller's own token, from any thread).
    pub cancel: Option<CancelToken>,
    /// Whether the caller wants the call's events.
    pub events: bool,
    /// Work held by another process is waited for this long.
    pub lease_wait: Option<Duration>,
}

/// One step of a call as seen from the calling thread.
#[derive(Debug)]
pub enum Step {
    /// An event, as JSON (`{"event": "progress", ...}`).
    Event(String),
    /// The operation ended: its result as JSON, or its error.
    Done(Result<String>),
}

enum Msg {
    Event(String),
    Done(Result<String>),
}

/// An operation running on the front doors' runtime for a caller blocked on another
/// thread.
pub struct BlockingCall {
    rx: Mutex<Receiver<Msg>>,
    token: CancelToken,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for BlockingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingCall").finish_non_exhaustive()
    }
}

impl BlockingCall {
    /// Starts `operation` with `params` (JSON text; empty for `{}`).
    ///
    /// # Errors
    /// As [`runtime`]; [`ErrorCode::Internal`] when the event thread cannot start.
    pub fn start(
        integration: Arc<Integration>,
        operation: &str,
        params: &str,
        options: CallOptions,
    ) -> Result<BlockingCall> {
        let rt = runtime()?;
        let token = CancelToken::new();
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let mut ctl = if options.events {
            let tx = Mutex::new(tx.clone());
            Control::with_observer(
                token.clone(),
                Arc::new(move |e: &Event| {
                    if let (Ok(json), Ok(tx)) = (serde_json::to_string(e), tx.lock()) {
                        let _ = tx.send(Msg::Event(json));
                    }
                }),
            )?
        } else {
            Control::with_cancel(token.clone())
        };
        if let Some(w) = options.lease_wait {
            ctl = ctl.with_lease_wait(w);
        }
        let watcher = options.cancel.map(|user| {
            let call = token.clone();
            rt.spawn(async move {
                user.cancelled().await;
                call.cancel();
            })
        });
        let (operation, params) = (operation.to_string(), params.to_string());
        rt.spawn(async move {
            let r = integration.call_json(&operation, &params, &ctl).await;
            // The control's event thread drains into the channel as it ends, so every
            // event is there before the result.
            drop(ctl);
            let _ = tx.send(Msg::Done(r));
        });
        Ok(BlockingCall {
            rx: Mutex::new(rx),
            token,
            watcher,
        })
    }

    /// The next step, waiting up to `timeout` (`None` when nothing came in that time).
    pub fn next(&self, timeout: Duration) -> Option<Step> {
        let rx = match self.rx.lock() {
            Ok(rx) => rx,
            Err(_) => {
                return Some(Step::Done(Err(Error::internal(
                    "the call's channel lock was poisoned",
                ))));
            }
        };
        match rx.recv_timeout(timeout) {
            Ok(Msg::Event(json)) => Some(Step::Event(json)),
            Ok(Msg::Done(r)) => Some(Step::Done(r)),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Step::Done(Err(Error::internal(
                "the operation ended without a result",
            )))),
        }
    }

    /// Stops the call at its next item boundary (it still ends with a [`Step::Done`]).
    pub fn cancel(&self) {
        self.token.cancel();
    }
}

impl Drop for BlockingCall {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}
