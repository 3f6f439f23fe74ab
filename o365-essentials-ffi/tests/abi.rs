//! The ABI's rules that C cannot easily reach: a blocking call from inside an async
//! runtime's thread is refused with its own code, and out-parameters stay untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use o365_essentials::*;

fn open() -> *mut o365_integration {
    // The demo directory and a tenant that is never reached: opening sends nothing.
    let dir = tempfile_dir();
    let config = CString::new(format!(
        r#"{{"directory": "demo", "tenant": {{"tenant_id": "t", "client_id": "c",
            "credential": {{"kind": "secret", "secret": "s"}},
            "login_url": "http://127.0.0.1:9", "graph_url": "http://127.0.0.1:9/v1.0"}},
            "store": "{dir}/state.db"}}"#
    ))
    .unwrap();
    let mut h = ptr::null_mut();
    let mut err = ptr::null_mut();
    // SAFETY: valid strings and out-pointers.
    let r = unsafe { o365_integration_open(config.as_ptr(), &mut h, &mut err) };
    if r != o365_result::O365_OK {
        // SAFETY: an error from the library.
        let msg = unsafe { CStr::from_ptr(o365_error_message(err)) };
        panic!("open: {msg:?}");
    }
    h
}

fn tempfile_dir() -> String {
    let d = std::env::temp_dir().join(format!("o365-abi-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.display().to_string()
}

#[test]
fn a_call_from_a_runtime_worker_is_refused_with_its_own_code() {
    let h = open();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (code, out) = rt.block_on(async {
        let mut out: *mut c_char = ptr::null_mut();
        let mut err = ptr::null_mut();
        // SAFETY: valid arguments.
        let r = unsafe {
            o365_call(
                h,
                c"status".as_ptr(),
                c"{}".as_ptr(),
                ptr::null(),
                &mut out,
                &mut err,
            )
        };
        // SAFETY: an error from the library.
        let msg = unsafe { CStr::from_ptr(o365_error_message(err)) }
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("runtime"), "{msg}");
        // SAFETY: freed once.
        unsafe { o365_error_free(err) };
        (r, out)
    });
    assert_eq!(code, o365_result::O365_RUNTIME_CONTEXT);
    assert!(out.is_null(), "the out-parameter stays untouched");
    // From a thread of its own the same call runs (and says the tenant was never
    // integrated, since nothing was sent yet).
    let mut out: *mut c_char = ptr::null_mut();
    // SAFETY: valid arguments.
    let r = unsafe {
        o365_call(
            h,
            c"status".as_ptr(),
            ptr::null(),
            ptr::null(),
            &mut out,
            ptr::null_mut(),
        )
    };
    assert_eq!(r, o365_result::O365_NOT_INTEGRATED);
    o365_integration_free(h);
}

#[test]
fn the_operations_list_is_the_table() {
    // SAFETY: a static string.
    let json = unsafe { CStr::from_ptr(o365_operations_json()) }
        .to_str()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    let table: Vec<&str> = o365_essentials_core::ops::OPERATIONS
        .iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, table);
    assert!(v[0]["fields"].is_array());
}
