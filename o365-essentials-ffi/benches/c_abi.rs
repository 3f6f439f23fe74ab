//! `cargo bench -p o365-essentials-ffi --bench c_abi`: the same bulk create (1,000 local
//! users of the demo company, each a create through the tenant at 20–40 ms per write)
//! through the C ABI (`o365_integration_open` + `o365_call`, what a C or .NET dashboard
//! runs) and through Rust (`Integration::open` + `Integration::call`), each against a
//! fresh emulator, side by side in one run; then the cost of one trivial call (`status`,
//! which reads the store) each way, and of the boundary alone (a call the dispatcher
//! refuses at once: arguments checked, the work handed to the runtime and back).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use std::ffi::{CStr, CString, c_char};
use std::ptr;
use std::time::Instant;

use o365_essentials::*;
use o365_essentials_core::config::IntegrationConfig;
use o365_essentials_core::engine::{Control, Integration};
use o365_essentials_emulator::config::Delay;
use o365_essentials_emulator::{Emulator, EmulatorConfig};

const PEOPLE: usize = 988; // + the demo's 12 = 1,000 accounts

fn emulator(rt: &tokio::runtime::Runtime) -> Emulator {
    let mut cfg = EmulatorConfig::default();
    cfg.throttling.enabled = false;
    cfg.latency.write = Delay {
        fixed_ms: 20,
        jitter_ms: 20,
    };
    rt.block_on(Emulator::start(cfg)).unwrap()
}

fn config(emu: &Emulator, dir: &std::path::Path) -> String {
    let i = emu.info();
    serde_json::json!({
        "directory": {"demo_company": {"people": PEOPLE}},
        "tenant": {"tenant_id": i.tenant_id, "client_id": i.client_id,
            "credential": {"kind": "secret", "secret": i.client_secret},
            "login_url": i.login_url, "graph_url": i.graph_url},
        "store": dir.join("state.db"),
        "concurrency": 32
    })
    .to_string()
}

/// One call through the C ABI; panics with the message on failure.
fn c_call(h: *mut o365_integration, op: &str, params: &str) -> String {
    let op = CString::new(op).unwrap();
    let params = CString::new(params).unwrap();
    let mut out: *mut c_char = ptr::null_mut();
    let mut err = ptr::null_mut();
    // SAFETY: valid strings and out-pointers.
    let r = unsafe {
        o365_call(
            h,
            op.as_ptr(),
            params.as_ptr(),
            ptr::null(),
            &mut out,
            &mut err,
        )
    };
    if r != o365_result::O365_OK {
        // SAFETY: an error from the library.
        let m = unsafe { CStr::from_ptr(o365_error_message(err)) };
        panic!("{op:?}: {m:?}");
    }
    // SAFETY: an owned string from the library, freed once.
    let s = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string();
    // SAFETY: as above.
    unsafe { o365_string_free(out) };
    s
}

fn succeeded(results: &str) -> usize {
    results.matches("\"outcome\":\"succeeded\"").count()
}

const ROUNDS: usize = 3;
const TRIVIAL_ROUND: usize = 5_000;

/// One bulk create through the C ABI on a fresh emulator: (seconds, µs per `status`,
/// µs per refused call).
fn c_round(emu_rt: &tokio::runtime::Runtime) -> (f64, f64, f64) {
    let emu = emulator(emu_rt);
    let dir = tempfile::tempdir().unwrap();
    let cfg = CString::new(config(&emu, dir.path())).unwrap();
    let mut h = ptr::null_mut();
    // SAFETY: valid arguments.
    assert_eq!(
        unsafe { o365_integration_open(cfg.as_ptr(), &mut h, ptr::null_mut()) },
        o365_result::O365_OK
    );
    c_call(h, "integrate", "{}");
    let t = Instant::now();
    let plan = c_call(h, "plan_bulk_create", "{}");
    let results = c_call(h, "apply_plan", &format!("{{\"plan\": {plan}}}"));
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(succeeded(&results), PEOPLE + 12);
    let t = Instant::now();
    for _ in 0..TRIVIAL_ROUND {
        c_call(h, "status", "{}");
    }
    let trivial = t.elapsed().as_secs_f64() * 1e6 / TRIVIAL_ROUND as f64;
    // The boundary alone: a call the dispatcher refuses at once (no store, no network).
    let t = Instant::now();
    for _ in 0..TRIVIAL_ROUND {
        let mut out: *mut c_char = ptr::null_mut();
        // SAFETY: valid arguments.
        let r = unsafe {
            o365_call(
                h,
                c"no_such_operation".as_ptr(),
                c"{}".as_ptr(),
                ptr::null(),
                &mut out,
                ptr::null_mut(),
            )
        };
        assert_eq!(r, o365_result::O365_UNKNOWN_OPERATION);
    }
    let overhead = t.elapsed().as_secs_f64() * 1e6 / TRIVIAL_ROUND as f64;
    o365_integration_free(h);
    (secs, trivial, overhead)
}

/// The same through Rust: (seconds, µs per `status`).
fn rust_round(emu_rt: &tokio::runtime::Runtime, rt: &tokio::runtime::Runtime) -> (f64, f64) {
    let emu = emulator(emu_rt);
    let dir = tempfile::tempdir().unwrap();
    let integration = {
        let _g = rt.enter();
        Integration::open(IntegrationConfig::from_json(&config(&emu, dir.path())).unwrap()).unwrap()
    };
    let ctl = Control::none();
    let call = |op: &str, p: serde_json::Value| rt.block_on(integration.call(op, p, &ctl)).unwrap();
    call("integrate", serde_json::json!({}));
    let t = Instant::now();
    let plan = call("plan_bulk_create", serde_json::json!({}));
    let results = call("apply_plan", serde_json::json!({ "plan": plan }));
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(succeeded(&results.to_string()), PEOPLE + 12);
    let t = Instant::now();
    for _ in 0..TRIVIAL_ROUND {
        call("status", serde_json::json!({}));
    }
    (secs, t.elapsed().as_secs_f64() * 1e6 / TRIVIAL_ROUND as f64)
}

fn main() {
    // The emulators run on a runtime of their own; the library has its own, and the Rust
    // side one like it (two workers).
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Rounds alternate, so drift on the machine falls on both sides alike; best of each.
    let (mut c_best, mut c_trivial, mut c_overhead) = (f64::MAX, f64::MAX, f64::MAX);
    let (mut rust_best, mut rust_trivial) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        let (s, t, o) = c_round(&emu_rt);
        c_best = c_best.min(s);
        c_trivial = c_trivial.min(t);
        c_overhead = c_overhead.min(o);
        let (s, t) = rust_round(&emu_rt, &rt);
        rust_best = rust_best.min(s);
        rust_trivial = rust_trivial.min(t);
    }
    println!("accounts: {}", PEOPLE + 12);
    println!("rounds: {ROUNDS}");
    println!("c_abi_seconds: {c_best:.3}");
    println!("rust_seconds: {rust_best:.3}");
    println!("c_abi_vs_rust: {:.3}", rust_best / c_best);
    println!("c_abi_trivial_call_us: {c_trivial:.1}");
    println!("rust_trivial_call_us: {rust_trivial:.1}");
    println!("c_abi_call_overhead_us: {c_overhead:.1}");
}
