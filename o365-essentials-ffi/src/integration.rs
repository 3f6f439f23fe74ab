//! The integration handle, the operations, cancellation, events and the sync loop.
//!
//! One design choice, written down: every operation of the core's table is reached
//! through one generic entry, [`o365_call`] (operation name + JSON parameters → JSON
//! result). The table grows without the ABI changing, the C++ and C# wrappers stay
//! thin, and [`o365_operations_json`] lists the operations with their parameter fields
//! so those wrappers are generated from (and tested against) the same table.

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use o365_essentials_core::config::IntegrationConfig;
use o365_essentials_core::engine::{CancelToken, Control, Event, Integration, SyncLoop};
use o365_essentials_core::frontdoor::{BlockingCall, CallOptions, Step};
use o365_essentials_core::{Error, ErrorCode};

use crate::{cstring, guard, o365_error, o365_result, read_str, shield};

/// An open integration. Opaque: only ever handled through a pointer.
pub struct o365_integration {
    _private: [u8; 0],
}

/// A cancellation token any thread may trigger. Opaque: only ever handled through a
/// pointer (a number in the token table).
pub struct o365_cancel {
    _private: [u8; 0],
}

/// A running sync loop. Opaque: only ever handled through a pointer (a number in the
/// loop table).
pub struct o365_sync_loop {
    _private: [u8; 0],
}

/// Receives one event as JSON (`{"event": "progress", ...}`). Return 0 to go on; any
/// other value cancels the call. The string is valid only during the callback.
pub type o365_event_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event_json: *const c_char) -> i32>;

/// How a call is steered: all optional. Set `struct_size` to `sizeof(o365_call_control)`.
#[repr(C)]
pub struct o365_call_control {
    /// `sizeof(o365_call_control)`, so later versions can add fields.
    pub struct_size: u32,
    /// Cancels the call when triggered (from any thread); NULL for none.
    pub cancel: *const o365_cancel,
    /// Receives the call's events on the calling thread, before the call returns; NULL
    /// for none.
    pub on_event: o365_event_fn,
    /// Passed to `on_event` as is.
    pub userdata: *mut c_void,
    /// Work held by another process is waited for up to this many milliseconds (0:
    /// refused at once with `O365_WORK_HELD`).
    pub lease_wait_ms: u32,
}

/// The version of this C ABI: bumped when a function changes incompatibly.
pub const O365_ABI_VERSION: u32 = 1;

/// The ABI version the library implements ([`O365_ABI_VERSION`] of its header).
#[unsafe(no_mangle)]
pub extern "C" fn o365_abi_version() -> u32 {
    shield(0, || O365_ABI_VERSION)
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    o365_essentials_core::frontdoor::runtime()
}

/// The one handle rule of the ABI: every object handed to C is a number in a table of its
/// kind, never an address, so a freed or made-up handle is found missing
/// (`O365_INVALID_HANDLE`) instead of read. Numbers are never reused, and the kinds share
/// one counter, so a token passed where an integration is expected is missing too.
pub(crate) struct Table<T> {
    map: OnceLock<Mutex<HashMap<usize, Arc<T>>>>,
    kind: &'static str,
}

static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(1);
const HANDLE_TAG: usize = 0x0365_0000;

impl<T> Table<T> {
    const fn new(kind: &'static str) -> Self {
        Table {
            map: OnceLock::new(),
            kind,
        }
    }

    fn map(&self) -> Result<std::sync::MutexGuard<'_, HashMap<usize, Arc<T>>>, Error> {
        self.map
            .get_or_init(|| Mutex::new(HashMap::new()))
            .lock()
            .map_err(|_| Error::internal(format!("the {} table's lock was poisoned", self.kind)))
    }

    /// Keeps `value` and returns its handle.
    fn insert(&self, value: T) -> Result<usize, Error> {
        let key = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed) * 16 + HANDLE_TAG;
        self.map()?.insert(key, Arc::new(value));
        Ok(key)
    }

    /// The object of handle `h`: [`ErrorCode::NullArgument`] for NULL,
    /// [`ErrorCode::InvalidHandle`] for a handle freed or never made.
    fn get<P>(&self, h: *const P) -> Result<Arc<T>, Error> {
        if h.is_null() {
            return Err(Error::new(
                ErrorCode::NullArgument,
                format!("the {} handle is NULL", self.kind),
            ));
        }
        self.map()?.get(&(h as usize)).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidHandle,
                format!("the {} handle was freed or never made", self.kind),
            )
        })
    }

    /// Forgets handle `h`, returning its object when it was there (NULL and unknown
    /// handles: `None`).
    fn remove<P>(&self, h: *const P) -> Option<Arc<T>> {
        self.map().ok()?.remove(&(h as usize))
    }
}

static INTEGRATIONS: Table<Integration> = Table::new("integration");
static TOKENS: Table<CancelToken> = Table::new("cancellation token");
static LOOPS: Table<Mutex<Option<SyncLoop>>> = Table::new("sync loop");

fn lookup(h: *const o365_integration) -> Result<Arc<Integration>, Error> {
    INTEGRATIONS.get(h)
}

fn null(name: &str) -> Error {
    Error::new(ErrorCode::NullArgument, format!("`{name}` is NULL"))
}

fn parse_json(text: &str, name: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorCode::MalformedJson,
            format!("`{name}` is not JSON: {e}"),
        )
    })
}

/// Opens an integration from its configuration (JSON, the shape of
/// `docs/CONFIGURATION.md`) and writes the handle to `*out`. Nothing is sent anywhere
/// yet. Free the handle with [`o365_integration_free`].
///
/// Threading: a handle may be shared by any number of threads; calls on it may run at
/// the same time.
///
/// # Safety
/// `config_json` is null or NUL-terminated; `out` and `err_out` are null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn o365_integration_open(
    config_json: *const c_char,
    out: *mut *mut o365_integration,
    err_out: *mut *mut o365_error,
) -> o365_result {
    guard(err_out, || {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: per the contract above.
        let text = unsafe { read_str(config_json, "config_json") }?;
        // Syntax first, so malformed JSON has its own code; then the strict shape.
        parse_json(text, "config_json")?;
        let config = IntegrationConfig::from_json(text)?;
        let rt = runtime()?;
        let _entered = rt.enter();
        let key = INTEGRATIONS.insert(Integration::open(config)?)?;
        // SAFETY: checked non-null above.
        unsafe { *out = key as *mut o365_integration };
        Ok(())
    })
}

/// Frees an integration handle. Safe from any thread (a .NET finalizer) and never
/// blocks: calls in flight keep what they need and finish; the handle is invalid for
/// new calls at once (`O365_INVALID_HANDLE`). NULL, or a handle already freed, is a
/// no-op.
#[unsafe(no_mangle)]
pub extern "C" fn o365_integration_free(h: *mut o365_integration) {
    shield((), || {
        // The last reference may be a call's, which then ends it on its own thread; when
        // it is this one, dropping closes the store and the connections (no waiting).
        drop(INTEGRATIONS.remove(h));
    })
}

/// A new cancellation token (free it with [`o365_cancel_free`]).
///
/// # Safety
/// `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn o365_cancel_new(out: *mut *mut o365_cancel) -> o365_result {
    guard(std::ptr::null_mut(), || {
        if out.is_null() {
            return Err(null("out"));
        }
        let key = TOKENS.insert(CancelToken::new())?;
        // SAFETY: checked non-null.
        unsafe { *out = key as *mut o365_cancel };
        Ok(())
    })
}

/// Triggers the token: the calls it was given stop at their next item boundary. Safe
/// from any thread, any number of times; never blocks. NULL, or a token freed, is a
/// no-op.
#[unsafe(no_mangle)]
pub extern "C" fn o365_cancel_trigger(token: *const o365_cancel) {
    shield((), || {
        if let Ok(t) = TOKENS.get(token) {
            t.cancel();
        }
    })
}

/// Whether the token was triggered (0 or 1; 0 for NULL or a token freed).
#[unsafe(no_mangle)]
pub extern "C" fn o365_cancel_is_triggered(token: *const o365_cancel) -> i32 {
    shield(0, || {
        TOKENS.get(token).map_or(0, |t| i32::from(t.is_cancelled()))
    })
}

/// Frees a token. Safe from any thread, never blocks; calls it was given keep their
/// own reference. NULL, or a token freed already, is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn o365_cancel_free(token: *mut o365_cancel) {
    shield((), || drop(TOKENS.remove(token)))
}

/// The user's callback and its data, carried to the thread that calls it.
#[derive(Clone, Copy)]
struct Callback {
    f: unsafe extern "C" fn(*mut c_void, *const c_char) -> i32,
    userdata: *mut c_void,
}

// SAFETY: the pointer is only handed back to the caller's own callback, on the thread
// the ABI documents; what it points to is the caller's to synchronise.
unsafe impl Send for Callback {}

impl Callback {
    /// Calls it; non-zero means "stop".
    fn call(&self, json: &str) -> bool {
        let c = cstring(json);
        // SAFETY: the caller gave a valid function and userdata for the call's duration.
        unsafe { (self.f)(self.userdata, c.as_ptr()) != 0 }
    }
}

/// Runs one operation of the table: `operation` (`"plan_bulk_create"`, see
/// [`o365_operations_json`]) with `params_json` (a JSON object; NULL for `{}`), and
/// writes its result as an owned JSON string to `*result_json_out` (free it with
/// `o365_string_free`). Blocks the calling thread until the operation ends.
///
/// `control` (NULL for none): a cancellation token, an event callback and a lease wait.
/// The callback runs **only on the calling thread, only before this function returns**,
/// one event at a time, while the work goes on in the library's threads; progress is
/// coalesced when the callback is slow. A non-zero return cancels the call (it stops at
/// its next item boundary and returns `O365_CANCELLED`).
///
/// A cancelled long operation returns `O365_CANCELLED` with what it did attached to the
/// error ([`o365_error_partial_json`]).
///
/// # Safety
/// Strings are null or NUL-terminated; `control` is null or a valid
/// `o365_call_control`; out-pointers are null or writable. A token freed before the
/// call is `O365_INVALID_HANDLE`; one freed during it is kept by the call until it ends.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn o365_call(
    h: *const o365_integration,
    operation: *const c_char,
    params_json: *const c_char,
    control: *const o365_call_control,
    result_json_out: *mut *mut c_char,
    err_out: *mut *mut o365_error,
) -> o365_result {
    guard(err_out, || {
        if result_json_out.is_null() {
            return Err(null("result_json_out"));
        }
        let integration = lookup(h)?;
        // SAFETY: per the contract above.
        let name = unsafe { read_str(operation, "operation") }?.to_string();
        let params = if params_json.is_null() {
            String::new()
        } else {
            // SAFETY: per the contract above.
            unsafe { read_str(params_json, "params_json") }?.to_string()
        };
        // SAFETY: per the contract above.
        let control = unsafe { control.as_ref() };
        if let Some(c) = control
            && c.struct_size as usize != std::mem::size_of::<o365_call_control>()
        {
            return Err(Error::invalid_input(format!(
                "`control->struct_size` is {}, not sizeof(o365_call_control) = {}",
                c.struct_size,
                std::mem::size_of::<o365_call_control>()
            )));
        }
        let user_token = match control.map(|c| c.cancel).filter(|t| !t.is_null()) {
            Some(t) => Some(TOKENS.get(t)?.as_ref().clone()),
            None => None,
        };
        let callback = control.and_then(|c| {
            c.on_event.map(|f| Callback {
                f,
                userdata: c.userdata,
            })
        });
        let options = CallOptions {
            cancel: user_token,
            events: callback.is_some(),
            lease_wait: control
                .filter(|c| c.lease_wait_ms > 0)
                .map(|c| std::time::Duration::from_millis(u64::from(c.lease_wait_ms))),
        };
        let call = BlockingCall::start(integration, &name, &params, options)?;
        let result = loop {
            match call.next(std::time::Duration::from_secs(3600)) {
                Some(Step::Event(json)) => {
                    if let Some(cb) = &callback
                        && cb.call(&json)
                    {
                        call.cancel();
                    }
                }
                Some(Step::Done(r)) => break r,
                None => {}
            }
        };
        let json = result?;
        // SAFETY: checked non-null above.
        unsafe { *result_json_out = cstring(&json).into_raw() };
        Ok(())
    })
}

static OPERATIONS_JSON: OnceLock<std::ffi::CString> = OnceLock::new();

/// Every operation of the table as a JSON array: `name`, `params` (the parameters
/// type), `fields` (its field names), `result` (the result type), `long_running`,
/// `summary`. Static; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn o365_operations_json() -> *const c_char {
    shield(std::ptr::null(), || {
        OPERATIONS_JSON
            .get_or_init(|| cstring(&o365_essentials_core::ops::operations_json().to_string()))
            .as_ptr()
    })
}

/// Starts the sync loop of an integration: a round every `interval_secs` (or the
/// configuration's), with `params_json` `{"interval_secs": 300,
/// "allow_beyond_threshold": false}` (NULL for the defaults). Each round is reported to
/// `on_event` (NULL for none) as a `sync_round_finished` event — called from a library
/// thread, one event at a time, never after [`o365_sync_loop_stop`] returned; its return
/// value is ignored. Stop and free the loop with [`o365_sync_loop_stop`].
///
/// # Safety
/// Strings are null or NUL-terminated; `userdata` stays valid until the loop is stopped;
/// out-pointers are null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn o365_sync_loop_start(
    h: *const o365_integration,
    params_json: *const c_char,
    on_event: o365_event_fn,
    userdata: *mut c_void,
    out: *mut *mut o365_sync_loop,
    err_out: *mut *mut o365_error,
) -> o365_result {
    guard(err_out, || {
        if out.is_null() {
            return Err(null("out"));
        }
        let integration = lookup(h)?;
        let params = if params_json.is_null() {
            serde_json::Value::Null
        } else {
            // SAFETY: per the contract above.
            parse_json(
                unsafe { read_str(params_json, "params_json") }?,
                "params_json",
            )?
        };
        let rt = runtime()?;
        let ctl = match on_event {
            Some(f) => {
                let cb = Mutex::new(Callback { f, userdata });
                Control::with_observer(
                    CancelToken::new(),
                    Arc::new(move |e: &Event| {
                        if let (Ok(json), Ok(cb)) = (serde_json::to_string(e), cb.lock()) {
                            let _ = cb.call(&json);
                        }
                    }),
                )?
            }
            None => Control::none(),
        };
        let l = integration.start_sync_loop_with(params, ctl, Some(rt.handle().clone()))?;
        let key = LOOPS.insert(Mutex::new(Some(l)))?;
        // SAFETY: checked non-null above.
        unsafe { *out = key as *mut o365_sync_loop };
        Ok(())
    })
}

/// Stops a sync loop (the round under way stops at its next item boundary), waits for
/// it, writes how many rounds ran to `*rounds_out` (when not NULL) and frees the loop.
/// No callback runs after it returns. Must not be called from the loop's own callback.
/// NULL, or a loop stopped already, is a no-op (`*rounds_out` is left alone).
///
/// # Safety
/// `rounds_out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn o365_sync_loop_stop(l: *mut o365_sync_loop, rounds_out: *mut u64) {
    shield((), || {
        let Some(l) = LOOPS.remove(l) else {
            return;
        };
        let rounds = l
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .map_or(0, SyncLoop::stop);
        if !rounds_out.is_null() {
            // SAFETY: per the contract above.
            unsafe { *rounds_out = rounds as u64 };
        }
    })
}

/// What a cancelled or interrupted operation did before it stopped (its result shape,
/// as JSON), or NULL. Valid until the error is freed.
///
/// # Safety
/// `err` is null or an error returned by this library and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn o365_error_partial_json(err: *const o365_error) -> *const c_char {
    shield(std::ptr::null(), || {
        // SAFETY: per the contract above.
        unsafe { err.as_ref() }
            .and_then(|e| e.partial.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}
