//! `cargo bench --bench python` (after `scripts/test` or `maturin build` + `pip install`
//! put the wheel into `build/venv`): the same bulk create (1,000 local users of the demo
//! company, each a create through the tenant at 20–40 ms per write) through the Python
//! package (`o365_essentials.Integration`, typed results: what a script runs, its
//! interpreter started per round) and through Rust (`Integration::open` +
//! `Integration::call`), each against a fresh emulator, rounds alternating, in one run;
//! then one trivial call (`status`) each way, and the package's import time in a fresh
//! interpreter.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use o365_essentials::config::IntegrationConfig;
use o365_essentials::engine::{Control, Integration};
use o365_essentials_emulator::config::Delay;
use o365_essentials_emulator::{Emulator, EmulatorConfig};

const PEOPLE: usize = 988; // + the demo's 12 = 1,000 accounts
const ROUNDS: usize = 3;
const TRIVIAL_ROUND: usize = 2_000;

fn emulator(rt: &tokio::runtime::Runtime) -> Emulator {
    let mut cfg = EmulatorConfig::default();
    cfg.throttling.enabled = false;
    cfg.latency.write = Delay {
        fixed_ms: 20,
        jitter_ms: 20,
    };
    rt.block_on(Emulator::start(cfg)).unwrap()
}

fn config(emu: &Emulator, dir: &Path) -> String {
    let i = emu.info();
    serde_json::json!({
        "directory": {"demo_company": {"people": PEOPLE}},
        "tenant": {"tenant_id": i.tenant_id, "client_id": i.client_id,
            "credential": {"kind": "secret", "secret": i.client_secret},
            "login_url": i.login_url, "graph_url": i.graph_url},
        "store": dir.join("state.db"),
        "results_folder": dir,
        "concurrency": 32
    })
    .to_string()
}

fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("build/venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import o365_essentials"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import o365_essentials: build and install the wheel first (scripts/test does)",
        python.display()
    );
    python
}

fn field(out: &str, name: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no `{name}` in {out}"))
        .trim()
        .parse()
        .unwrap()
}

/// One bulk create through Python on a fresh emulator: (seconds, µs per `status`).
fn python_round(python: &Path, emu_rt: &tokio::runtime::Runtime) -> (f64, f64) {
    let emu = emulator(emu_rt);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, config(&emu, dir.path())).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("o365-essentials-py/bench/bulk_create.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&cfg)
        .arg((PEOPLE + 12).to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (field(&text, "seconds"), field(&text, "trivial_call_us"))
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
    let done = results
        .to_string()
        .matches("\"outcome\":\"succeeded\"")
        .count();
    assert_eq!(done, PEOPLE + 12);
    let t = Instant::now();
    for _ in 0..TRIVIAL_ROUND {
        call("status", serde_json::json!({}));
    }
    (secs, t.elapsed().as_secs_f64() * 1e6 / TRIVIAL_ROUND as f64)
}

/// The package's import time in a fresh interpreter (best of five), and the bare
/// interpreter's start for comparison.
fn import_ms(python: &Path) -> (f64, f64) {
    let time = |code: &str| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let s = Command::new(python).args(["-c", code]).status().unwrap();
                assert!(s.success());
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::MAX, f64::min)
    };
    (time("import o365_essentials"), time("pass"))
}

fn main() {
    let python = python();
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
    let (mut py_best, mut py_trivial) = (f64::MAX, f64::MAX);
    let (mut rust_best, mut rust_trivial) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        let (s, t) = python_round(&python, &emu_rt);
        py_best = py_best.min(s);
        py_trivial = py_trivial.min(t);
        let (s, t) = rust_round(&emu_rt, &rt);
        rust_best = rust_best.min(s);
        rust_trivial = rust_trivial.min(t);
    }
    let (import, bare) = import_ms(&python);
    println!("accounts: {}", PEOPLE + 12);
    println!("rounds: {ROUNDS}");
    println!("python_seconds: {py_best:.3}");
    println!("rust_seconds: {rust_best:.3}");
    println!("python_vs_rust: {:.3}", rust_best / py_best);
    println!("python_trivial_call_us: {py_trivial:.1}");
    println!("rust_trivial_call_us: {rust_trivial:.1}");
    println!("python_import_ms: {import:.1}");
    println!("python_interpreter_start_ms: {bare:.1}");
    println!("python_import_only_ms: {:.1}", import - bare);
}
