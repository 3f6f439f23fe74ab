//! The integration for Python: one native class over the core's table of operations.
//! The package's `Integration` (pure Python) builds a method per operation on top of
//! [`NativeIntegration::call`].

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use o365_essentials_core::config::IntegrationConfig;
use o365_essentials_core::engine::{CancelToken, Control, Event, Integration};
use o365_essentials_core::{Error, ErrorCode};
use pyo3::prelude::*;

use crate::to_py_err;

struct Runtime {
    rt: tokio::runtime::Runtime,
    pid: u32,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The process's one runtime; a call in a forked child is refused (its threads are gone).
fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
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
                "this process was forked from process {} after o365_essentials started its \
                 threads, which do not survive fork(); use multiprocessing's \"spawn\" start \
                 method, or open the integration in the child",
                r.pid
            ),
        )),
        Ok(r) => Ok(&r.rt),
        Err(e) => Err(Error::internal(format!("cannot start the runtime: {e}"))),
    }
}

/// A cancellation token any thread may trigger.
#[pyclass(module = "o365_essentials._native", frozen)]
pub struct CancelHandle {
    token: CancelToken,
}

#[pymethods]
impl CancelHandle {
    #[new]
    fn new() -> Self {
        CancelHandle {
            token: CancelToken::new(),
        }
    }

    /// Stops the calls given this token at their next item boundary.
    fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether it was triggered.
    #[getter]
    fn cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

enum Msg {
    Event(String),
    Done(Result<String, Error>),
}

/// An open integration (native half).
#[pyclass(module = "o365_essentials._native", frozen)]
pub struct NativeIntegration {
    inner: Arc<Integration>,
}

#[pymethods]
impl NativeIntegration {
    /// Opens from the configuration JSON text.
    #[new]
    fn new(py: Python<'_>, config_json: &str) -> PyResult<Self> {
        let open = || -> Result<Integration, Error> {
            let config = IntegrationConfig::from_json(config_json)?;
            let rt = runtime()?;
            let _g = rt.enter();
            Integration::open(config)
        };
        let inner = py.detach(open).map_err(|e| to_py_err(py, &e))?;
        Ok(NativeIntegration {
            inner: Arc::new(inner),
        })
    }

    /// Runs the operation `name` with JSON parameters and returns the JSON result. The
    /// GIL is released while the engine works. `on_event(event_json)` runs on this
    /// thread; an exception it raises cancels the call and is raised from here once the
    /// engine stopped. Ctrl-C (or any signal handler raising) likewise cancels at the
    /// next item boundary and raises `KeyboardInterrupt` after it.
    #[pyo3(signature = (name, params_json, on_event=None, cancel=None, lease_wait_secs=None))]
    fn call(
        &self,
        py: Python<'_>,
        name: &str,
        params_json: &str,
        on_event: Option<Py<PyAny>>,
        cancel: Option<&CancelHandle>,
        lease_wait_secs: Option<f64>,
    ) -> PyResult<String> {
        let rt = runtime().map_err(|e| to_py_err(py, &e))?;
        let call_token = CancelToken::new();
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let mut ctl = if on_event.is_some() {
            let tx = std::sync::Mutex::new(tx.clone());
            Control::with_observer(
                call_token.clone(),
                Arc::new(move |e: &Event| {
                    if let (Ok(json), Ok(tx)) = (serde_json::to_string(e), tx.lock()) {
                        let _ = tx.send(Msg::Event(json));
                    }
                }),
            )
            .map_err(|e| to_py_err(py, &e))?
        } else {
            Control::with_cancel(call_token.clone())
        };
        if let Some(w) = lease_wait_secs.filter(|w| *w > 0.0) {
            ctl = ctl.with_lease_wait(Duration::from_secs_f64(w.min(86_400.0)));
        }
        let watcher = cancel.map(|c| {
            let (user, call) = (c.token.clone(), call_token.clone());
            rt.spawn(async move {
                user.cancelled().await;
                call.cancel();
            })
        });
        let (integration, name, params) = (
            self.inner.clone(),
            name.to_string(),
            params_json.to_string(),
        );
        rt.spawn(async move {
            let r = integration.call_json(&name, &params, &ctl).await;
            drop(ctl);
            let _ = tx.send(Msg::Done(r));
        });
        let mut raised: Option<PyErr> = None;
        // Waited for without the GIL, 100 ms at a time so signals (Ctrl-C) are seen.
        let rx = std::sync::Mutex::new(rx);
        let result = loop {
            let msg = py.detach(|| match rx.lock() {
                Ok(r) => r.recv_timeout(Duration::from_millis(100)),
                Err(_) => Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            });
            match msg {
                Ok(Msg::Event(json)) => {
                    if raised.is_none()
                        && let Some(cb) = &on_event
                        && let Err(e) = cb.call1(py, (json,))
                    {
                        call_token.cancel();
                        raised = Some(e);
                    }
                }
                Ok(Msg::Done(r)) => break r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(Error::internal("the operation ended without a result"));
                }
            }
            if raised.is_none()
                && let Err(e) = py.check_signals()
            {
                call_token.cancel();
                raised = Some(e);
            }
        };
        if let Some(w) = watcher {
            w.abort();
        }
        if let Some(e) = raised {
            return Err(e);
        }
        result.map_err(|e| to_py_err(py, &e))
    }

    /// Starts the sync loop (`{"interval_secs": 300, "allow_beyond_threshold": false}`).
    /// `on_event(event_json)` runs on a thread of the library's, with the GIL; an
    /// exception it raises is reported as unraisable and the loop goes on.
    #[pyo3(signature = (params_json, on_event=None))]
    fn start_sync_loop(
        &self,
        py: Python<'_>,
        params_json: &str,
        on_event: Option<Py<PyAny>>,
    ) -> PyResult<NativeSyncLoop> {
        let rt = runtime().map_err(|e| to_py_err(py, &e))?;
        let params: serde_json::Value = serde_json::from_str(params_json).map_err(|e| {
            to_py_err(
                py,
                &Error::new(
                    ErrorCode::MalformedJson,
                    format!("the loop's parameters: {e}"),
                ),
            )
        })?;
        let ctl = match on_event {
            Some(cb) => Control::with_observer(
                CancelToken::new(),
                Arc::new(move |e: &Event| {
                    if let Ok(json) = serde_json::to_string(e) {
                        Python::attach(|py| {
                            if let Err(err) = cb.call1(py, (json,)) {
                                err.write_unraisable(py, None);
                            }
                        });
                    }
                }),
            )
            .map_err(|e| to_py_err(py, &e))?,
            None => Control::none(),
        };
        let l = self
            .inner
            .clone()
            .start_sync_loop_with(params, ctl, Some(rt.handle().clone()))
            .map_err(|e| to_py_err(py, &e))?;
        Ok(NativeSyncLoop {
            inner: std::sync::Mutex::new(Some(l)),
        })
    }
}

/// A running sync loop (native half).
#[pyclass(module = "o365_essentials._native", frozen)]
pub struct NativeSyncLoop {
    inner: std::sync::Mutex<Option<o365_essentials_core::engine::SyncLoop>>,
}

#[pymethods]
impl NativeSyncLoop {
    /// Stops the loop after the current item and returns how many rounds ran; no event
    /// is delivered after it returns. A second call returns 0.
    fn stop(&self, py: Python<'_>) -> usize {
        let l = self.inner.lock().ok().and_then(|mut g| g.take());
        py.detach(move || l.map_or(0, o365_essentials_core::engine::SyncLoop::stop))
    }
}

/// Every operation of the table as JSON text (name, params, fields, result, ...).
#[pyfunction]
pub(crate) fn operations_json() -> String {
    o365_essentials_core::ops::operations_json().to_string()
}
