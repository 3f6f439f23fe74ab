//! Python bindings for o365-essentials: the `o365_essentials._native` extension module.
//!
//! Thin by design: each function converts arguments, calls the core, and converts the
//! result; core errors become exceptions through one mapping function, [`to_py_err`],
//! whose classes are built from the core's `ErrorCode::ALL` at import time.

use o365_essentials_core::{Error, ErrorCode, ErrorFamily, json, model::PasswordPolicy, validate};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

mod integration;
mod logs;

pyo3::create_exception!(
    o365_essentials,
    O365Error,
    PyException,
    "Base class of every o365-essentials error; `code`, `code_name`, `service_code` and `request_id` say more."
);

/// The Python class name of a family: `O365InputError`, `O365AuthError`, ...
fn family_class_name(f: ErrorFamily) -> String {
    format!("O365{}Error", camel(f.name()))
}

/// The Python class name of a code: `NotFoundError`, `AuthError`, ...; `timeout` becomes
/// `RequestTimeoutError` so as not to shadow the builtin `TimeoutError`, and `cancelled`
/// `OperationCancelledError` so as not to shadow `asyncio.CancelledError` on a star-import.
fn code_class_name(c: ErrorCode) -> String {
    match c {
        ErrorCode::Timeout => "RequestTimeoutError".to_string(),
        ErrorCode::Cancelled => "OperationCancelledError".to_string(),
        _ => format!("{}Error", camel(c.name())),
    }
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut cs = w.chars();
            cs.next()
                .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Turns a core error into an instance of its code's exception class.
pub(crate) fn to_py_err(py: Python<'_>, e: &Error) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = py.import("o365_essentials._native")?;
        let classes = module.getattr("_CLASSES_BY_CODE")?;
        let cls = classes.get_item(e.code().number())?;
        let inst = cls.call1((e.to_string(),))?;
        inst.setattr("code", e.code().number())?;
        inst.setattr("code_name", e.code().name())?;
        inst.setattr("action", e.action())?;
        inst.setattr("service_code", e.service().map(|s| s.code.clone()))?;
        inst.setattr("request_id", e.service().and_then(|s| s.request_id.clone()))?;
        inst.setattr("retry_after", e.retry_after().map(|d| d.as_secs_f64()))?;
        // What the operation did before it stopped (a cancelled run's results), and the
        // run's id: the package's typed methods turn `partial` into the result's type.
        let partial = e.partial();
        let run_id = partial.and_then(|p| {
            p.get("run_id")
                .or_else(|| p.get("results").and_then(|r| r.get("run_id")))
                .and_then(|v| v.as_str())
        });
        inst.setattr("run_id", run_id)?;
        match partial {
            Some(p) => {
                let value = py.import("json")?.call_method1("loads", (p.to_string(),))?;
                inst.setattr("partial", value)?;
            }
            None => inst.setattr("partial", py.None())?,
        }
        Ok(PyErr::from_value(inst))
    };
    build().unwrap_or_else(|err| err)
}

/// Checks a user principal name against Microsoft 365's rules; raises `InvalidUpnError`.
#[pyfunction]
fn validate_upn(py: Python<'_>, upn: &str) -> PyResult<()> {
    validate::upn(upn).map_err(|e| to_py_err(py, &e))
}

/// Checks the DNS syntax of a domain name; raises `InvalidDomainNameError`.
#[pyfunction]
fn validate_domain_name(py: Python<'_>, name: &str) -> PyResult<()> {
    validate::domain_name(name).map_err(|e| to_py_err(py, &e))
}

/// Every password rule broken, of the domain policy (a dict with `min_length`,
/// `complexity`, `history_length`) and of Microsoft 365, as a list of dicts.
#[pyfunction]
#[pyo3(signature = (password, policy=None))]
fn password_rules_broken<'py>(
    py: Python<'py>,
    password: &str,
    policy: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let json_mod = py.import("json")?;
    let policy: Option<PasswordPolicy> = match policy {
        None => None,
        Some(d) => {
            let text: String = json_mod.call_method1("dumps", (d,))?.extract()?;
            Some(json::from_str(&text).map_err(|e| to_py_err(py, &e.context("policy")))?)
        }
    };
    let broken = validate::password_rules_broken(
        password,
        policy.as_ref(),
        validate::PasswordContext::default(),
    );
    let text = json::to_string(&broken).map_err(|e| to_py_err(py, &e))?;
    json_mod.call_method1("loads", (text,))
}

/// Every error code as `(number, name, family, action)`.
#[pyfunction]
fn error_codes(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let rows: Vec<(u32, &str, &str, &str)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.number(), c.name(), c.family().name(), c.action()))
        .collect();
    PyList::new(py, rows)
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", o365_essentials_core::VERSION)?;
    m.add("O365Error", py.get_type::<O365Error>())?;
    let type_fn = py.import("builtins")?.getattr("type")?;
    let base = py.get_type::<O365Error>();
    let by_code = PyDict::new(py);
    for fam in ErrorFamily::ALL {
        let ns = PyDict::new(py);
        ns.set_item("__module__", "o365_essentials")?;
        ns.set_item("__doc__", format!("Errors of the `{}` family.", fam.name()))?;
        let fam_cls = type_fn.call1((family_class_name(fam), PyTuple::new(py, [&base])?, ns))?;
        m.add(family_class_name(fam).as_str(), &fam_cls)?;
        for code in ErrorCode::ALL.iter().filter(|c| c.family() == fam) {
            let ns = PyDict::new(py);
            ns.set_item("__module__", "o365_essentials")?;
            ns.set_item(
                "__doc__",
                format!("`{}` ({}): {}", code.name(), code.number(), code.action()),
            )?;
            ns.set_item("CODE", code.number())?;
            // Each class is also the builtin a script would catch for it.
            let builtins = py.import("builtins")?;
            let also = match code {
                ErrorCode::NotFound | ErrorCode::UnknownOperation => Some("LookupError"),
                ErrorCode::Timeout => Some("TimeoutError"),
                ErrorCode::Transport => Some("ConnectionError"),
                ErrorCode::PermissionDenied => Some("PermissionError"),
                c if c.family() == ErrorFamily::Input => Some("ValueError"),
                _ => None,
            };
            let bases = match also {
                Some(b) => PyTuple::new(py, [fam_cls.clone(), builtins.getattr(b)?])?,
                None => PyTuple::new(py, [fam_cls.clone()])?,
            };
            let cls = type_fn.call1((code_class_name(*code), bases, ns))?;
            m.add(code_class_name(*code).as_str(), &cls)?;
            by_code.set_item(code.number(), cls)?;
        }
    }
    m.add("_CLASSES_BY_CODE", by_code)?;
    m.add_function(wrap_pyfunction!(validate_upn, m)?)?;
    m.add_function(wrap_pyfunction!(validate_domain_name, m)?)?;
    m.add_function(wrap_pyfunction!(password_rules_broken, m)?)?;
    m.add_function(wrap_pyfunction!(error_codes, m)?)?;
    m.add_function(wrap_pyfunction!(integration::operations_json, m)?)?;
    m.add_function(wrap_pyfunction!(integration::result_schemas_json, m)?)?;
    m.add_function(wrap_pyfunction!(integration::params_schemas_json, m)?)?;
    m.add_function(wrap_pyfunction!(logs::take_log_records, m)?)?;
    logs::install();
    m.add_class::<integration::NativeIntegration>()?;
    m.add_class::<integration::CancelHandle>()?;
    m.add_class::<integration::NativeSyncLoop>()?;
    Ok(())
}
