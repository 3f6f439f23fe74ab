//! The integration for Python: one native class over the core's table of operations.
//! The package's `Integration` (pure Python) builds a method per operation on top of
//! [`NativeIntegration::call`].

use std::sync::Arc;
use std::time::Duration;

use o365_essentials_core::config::IntegrationConfig;
use o365_essentials_core::engine::{CancelToken, Control, Event, Integration};
use o365_essentials_core::frontdoor::{BlockingCall, CallOptions, Step};
use o365_essentials_core::{Error, ErrorCode};
use pyo3::prelude::*;

use crate::to_py_err;

fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    o365_essentials_core::frontdoor::runtime()
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
    ///
    /// `on_log(level, logger_name, message)` gets the engine's log records (retries,
    /// throttling) on this thread while it waits.
    #[pyo3(signature = (name, params_json, on_event=None, cancel=None, lease_wait_secs=None, on_log=None))]
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        py: Python<'_>,
        name: &str,
        params_json: &str,
        on_event: Option<Py<PyAny>>,
        cancel: Option<&CancelHandle>,
        lease_wait_secs: Option<f64>,
        on_log: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let options = CallOptions {
            cancel: cancel.map(|c| c.token.clone()),
            events: on_event.is_some(),
            lease_wait: lease_wait_secs
                .filter(|w| *w > 0.0)
                .map(|w| Duration::from_secs_f64(w.min(86_400.0))),
        };
        let call = BlockingCall::start(self.inner.clone(), name, params_json, options)
            .map_err(|e| to_py_err(py, &e))?;
        let mut raised: Option<PyErr> = None;
        let result = loop {
            // Waited for without the GIL, 100 ms at a time so signals (Ctrl-C) are seen.
            match py.detach(|| call.next(Duration::from_millis(100))) {
                Some(Step::Event(json)) => {
                    if raised.is_none()
                        && let Some(cb) = &on_event
                        && let Err(e) = cb.call1(py, (json,))
                    {
                        call.cancel();
                        raised = Some(e);
                    }
                }
                Some(Step::Done(r)) => break r,
                None => {}
            }
            if let Some(sink) = &on_log
                && let Err(e) = crate::logs::drain(py, sink)
                && raised.is_none()
            {
                call.cancel();
                raised = Some(e);
            }
            if raised.is_none()
                && let Err(e) = py.check_signals()
            {
                call.cancel();
                raised = Some(e);
            }
        };
        if let Some(sink) = &on_log
            && let Err(e) = crate::logs::drain(py, sink)
            && raised.is_none()
        {
            raised = Some(e);
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

/// The JSON Schema of every operation's parameters as JSON text (`$defs`, `params`): what
/// the package's typed parameters are generated from.
#[pyfunction]
pub(crate) fn params_schemas_json() -> String {
    o365_essentials_core::ops::params_schemas_json().to_string()
}

/// The JSON Schema of every operation's result as JSON text (`$defs`, `results`): what
/// the package's typed results are generated from.
#[pyfunction]
pub(crate) fn result_schemas_json() -> String {
    o365_essentials_core::ops::result_schemas_json().to_string()
}
