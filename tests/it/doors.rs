//! Bad input through every front door, one table per door: the same rows run from C
//! (`o365-essentials-ffi/tests/c/steps.c` on the shared library), from Python
//! (`o365-essentials-py/tests/steps.py` with the installed wheel) and from the command
//! line, against the Samba DC and the emulator. Each row gets its typed error, whose
//! message or remedy names what to fix; after each row the tenant, the directory and the
//! store are compared with before — unchanged. Then what the configuration and the disk
//! can do wrong: the store in a read-only folder, a full disk (a small tmpfs), a password
//! key file that is wrong or unreadable. (NULL and freed handles, and invalid UTF-8 in
//! the operation's name, are C-only: `o365-essentials-ffi/tests/c/integration.c`.)
//!
//! The small folders are tmpfs mounts: run as root (CI does; scripts/test needs root to
//! install what the suite needs anyway).

use std::path::{Path, PathBuf};
use std::process::Command;

use o365_essentials::ldap::LdapDirectory;
use o365_essentials::model::{LocalUser, NewLocalUser};
use o365_essentials::ports::Directory;
use o365_essentials::store::Store;
use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::graph::admin;
use crate::operations::{StepsRunner, steps_command};

/// A front door.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Door {
    C,
    Python,
    Cli,
}

impl Door {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Door::C => "c",
            Door::Python => "py",
            Door::Cli => "cli",
        }
    }
}

/// One step: an operation, its parameters (JSON, with the markers of steps.py:
/// `"$deep:N"`, `"$big:N"`, `"$surrogate"`), the code expected and a text its message or
/// remedy must hold.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub op: String,
    pub params: String,
    pub code: String,
    pub holds: String,
}

pub(crate) fn step(op: &str, params: impl Into<String>, code: &str, holds: &str) -> Step {
    Step {
        op: op.into(),
        params: params.into(),
        code: code.into(),
        holds: holds.into(),
    }
}

/// The bytes C and the command line get for parameters with markers.
fn materialise(params: &str) -> Vec<u8> {
    let mut text = params.to_string();
    while let Some(at) = text.find("\"$deep:") {
        let end = at + text[at + 1..].find('"').unwrap() + 2;
        let n: usize = text[at + 7..end - 1].parse().unwrap();
        text.replace_range(at..end, &format!("{}{}", "[".repeat(n), "]".repeat(n)));
    }
    while let Some(at) = text.find("\"$big:") {
        let end = at + text[at + 1..].find('"').unwrap() + 2;
        let n: usize = text[at + 6..end - 1].parse().unwrap();
        text.replace_range(at..end, &format!("\"{}\"", "x".repeat(n)));
    }
    let mut bytes = text.into_bytes();
    let marker = b"\"$surrogate\"";
    while let Some(at) = bytes.windows(marker.len()).position(|w| w == marker) {
        bytes.splice(at..at + marker.len(), b"\"bad\xffname\"".iter().copied());
    }
    bytes
}

/// What a door printed.
pub(crate) struct DoorRun {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the steps through a door (each step checked by the door's program itself; the
/// command line's by this function), the command wrapped by `wrap` (for a mount
/// namespace) when given.
pub(crate) fn run_steps(door: Door, dir: &Path, config: &Path, steps: &[Step]) -> DoorRun {
    if door == Door::Cli {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut ok = true;
        let mut prev = String::new();
        for (n, s) in steps.iter().enumerate() {
            let file = match s.params.strip_prefix('@') {
                Some(f) => PathBuf::from(f),
                None => {
                    let f = dir.join(format!("params-{n}.json"));
                    std::fs::write(&f, materialise(&s.params.replace("$prev", &prev))).unwrap();
                    f
                }
            };
            let out = Command::new(env!("CARGO_BIN_EXE_o365-essentials"))
                .arg("--config")
                .arg(config)
                .args(["--json", "--verbose", &s.op.replace('_', "-"), "--params"])
                .arg(format!("@{}", file.display()))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            stderr.push_str(&String::from_utf8_lossy(&out.stderr));
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let (got, said) = match v.get("error") {
                Some(e) => (
                    e["code_name"].as_str().unwrap_or("?").to_string(),
                    format!("{} {}", e["message"], e["action"]),
                ),
                None if out.status.success() => {
                    prev = text.clone();
                    ("ok".to_string(), text.clone())
                }
                None => ("?".to_string(), text.clone()),
            };
            stdout.push_str(&format!("{}\t{text}\n", s.op));
            if got != s.code || !said.contains(&s.holds) {
                stderr.push_str(&format!(
                    "{}: got {got} ({said}), want {} saying `{}`\n",
                    s.op, s.code, s.holds
                ));
                ok = false;
                break;
            }
            if got != "ok" && out.status.success() {
                stderr.push_str(&format!("{}: an error with exit status 0\n", s.op));
                ok = false;
                break;
            }
        }
        let status = Command::new(if ok { "true" } else { "false" })
            .status()
            .unwrap();
        return DoorRun {
            status,
            stdout,
            stderr,
        };
    }
    let mut text = String::new();
    for (n, s) in steps.iter().enumerate() {
        let params = if door == Door::C && s.params.contains("\"$") {
            let file = dir.join(format!("params-{n}.json"));
            std::fs::write(&file, materialise(&s.params)).unwrap();
            format!("@{}", file.display())
        } else {
            s.params.clone()
        };
        text.push_str(&format!("{}\t{params}\t{}\t{}\n", s.op, s.code, s.holds));
    }
    let steps_file = dir.join("steps.tsv");
    std::fs::write(&steps_file, text).unwrap();
    let runner = if door == Door::C {
        StepsRunner::C
    } else {
        StepsRunner::Python
    };
    let mut command = steps_command(&runner, dir);
    command.arg(config).arg(&steps_file);
    let out = command.output().unwrap();
    DoorRun {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// The tenant, the directory (the users of this door) and the store, as comparable JSON.
async fn snapshot(emu: &Emulator, dir: &LdapDirectory, prefix: &str, store: &Path) -> Value {
    use futures::TryStreamExt;
    let state = admin(emu, "GET", "/state", None).await;
    let mut users: Vec<Value> = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            json!([
                u["id"],
                u["userPrincipalName"],
                u["displayName"],
                u["accountEnabled"],
                u["assignedLicenses"],
                u["hasPassword"]
            ])
        })
        .collect();
    users.sort_by_key(|v| v.to_string());
    let mut local: Vec<Value> = dir
        .users()
        .try_collect::<Vec<LocalUser>>()
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.sam_account_name.starts_with(prefix))
        .map(|u| json!([u.guid, u.sam_account_name, u.usn_changed, u.enabled()]))
        .collect();
    local.sort_by_key(|v| v.to_string());
    let s = Store::open_read_only(store).unwrap();
    let links: Vec<Value> = s
        .links()
        .unwrap()
        .iter()
        .map(|l| json!([l.local_guid, l.online_id.0, l.state]))
        .collect();
    let runs: Vec<String> = s
        .recent_runs(1000)
        .unwrap()
        .iter()
        .map(|r| r.run_id.to_string())
        .collect();
    let queued: Vec<Value> = s
        .queued_passwords()
        .unwrap()
        .iter()
        .map(|q| json!([q.local_guid, q.seq]))
        .collect();
    json!({
        "tenant": {"users": users, "deleted": state["deletedUsers"].as_array().map(Vec::len),
                   "skus": state["skus"], "domains": state["domains"]},
        "directory": local,
        "store": {"links": links, "journal_pending": s.journal_pending().unwrap().len(),
                  "runs": runs, "queued": queued}
    })
}

/// A tmpfs mount of this size at `at`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, kib: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "cannot mount a tmpfs at {} (the full-disk and read-only rows need root: \
             run the suite as root, as CI does)",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }

    fn read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Fills what is left with a file.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", self.0.join("filler").display()))
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One door's world: Samba users (two linked, two not), the emulator, a store.
struct World {
    emu: Emulator,
    dir: LdapDirectory,
    tmp: tempfile::TempDir,
    config: Value,
    prefix: String,
    linked: Vec<LocalUser>,
    unlinked: Vec<LocalUser>,
}

impl World {
    async fn new(door: Door) -> World {
        let samba = crate::samba::shared();
        let dir = LdapDirectory::new(samba.config()).unwrap();
        let prefix = format!("badin{}.", door.name());
        let mut users = Vec::new();
        for n in 0..4 {
            let name = format!("{prefix}u{n}");
            users.push(
                dir.create_user(
                    &NewLocalUser {
                        sam_account_name: name.clone(),
                        user_principal_name: format!("{name}@{}", crate::samba::REALM),
                        display_name: format!("Badin {} {n}", door.name()),
                        ..Default::default()
                    },
                    &o365_essentials::SecretString::from("Zebra-Sync-2026!"),
                )
                .await
                .unwrap(),
            );
        }
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let config = crate::fixtures::config(samba, emu.info(), tmp.path());
        let w = World {
            emu,
            dir,
            tmp,
            config,
            prefix,
            unlinked: users.split_off(2),
            linked: users,
        };
        // Two users linked, one password queued (not delivered).
        let guids: Vec<String> = w.linked.iter().map(|u| u.guid.to_string()).collect();
        let cfg = w.write_config("config.json", &w.config);
        let setup = run_steps(
            Door::C,
            w.tmp.path(),
            &cfg,
            &[
                step("integrate", "{}", "ok", ""),
                step(
                    "plan_bulk_create",
                    json!({ "users": guids }).to_string(),
                    "ok",
                    "",
                ),
                step("apply_plan", "{\"plan\": $prev}", "ok", "succeeded"),
                step(
                    "password_changed",
                    json!({"local_guid": guids[0], "password": "Queued-Pass-2026!"}).to_string(),
                    "ok",
                    "true",
                ),
            ],
        );
        assert!(setup.status.success(), "{}\n{}", setup.stdout, setup.stderr);
        w
    }

    fn write_config(&self, name: &str, config: &Value) -> PathBuf {
        let p = self.tmp.path().join(name);
        crate::fixtures::write_private(&p, config.to_string());
        p
    }

    fn store(&self) -> PathBuf {
        self.tmp.path().join("state.db")
    }

    async fn snapshot(&self) -> Value {
        snapshot(&self.emu, &self.dir, &self.prefix, &self.store()).await
    }
}

/// The rows every door runs: (what, the step with what its message must name, the code
/// per door [C, Python, command line] — `code:text` where that door names it its own way).
fn rows(w: &World) -> Vec<(&'static str, Step, [&'static str; 3])> {
    let new_user = |sam: &str, display: &str| {
        json!({"sam_account_name": sam, "user_principal_name": format!("{sam}@essentials.test"),
               "display_name": display})
    };
    let sam = format!("{}new", w.prefix);
    let unlinked = w.unlinked[0].guid.to_string();
    let pw = "Harbour-Lights-2027!";
    vec![
        (
            "an unknown field",
            step(
                "create_user_with_account",
                json!({"user": new_user(&sam, "Badin New"), "password": pw, "colour": "red"})
                    .to_string(),
                "",
                "colour",
            ),
            ["unknown_field", "type_error", "unknown_field"],
        ),
        (
            "an unknown field inside an object",
            step(
                "create_user_with_account",
                json!({"user": {"sam_account_name": sam, "user_principal_name": "x@essentials.test",
                                "display_name": "Badin New", "shoe_size": 9}, "password": pw})
                .to_string(),
                "",
                "shoe_size",
            ),
            ["unknown_field", "unknown_field", "unknown_field"],
        ),
        (
            "a wrong type",
            step(
                "create_user_with_account",
                json!({"user": sam, "password": pw}).to_string(),
                "",
                "user",
            ),
            ["invalid_input", "invalid_input", "invalid_input"],
        ),
        (
            "a number out of range",
            step(
                "set_device_policy",
                json!({"password_enabled": true, "min_password_length": 300,
                       "max_password_failed_attempts": "unlimited",
                       "max_inactivity_lock_minutes": "unlimited",
                       "alphanumeric_password_required": false})
                .to_string(),
                "",
                "300",
            ),
            ["invalid_input", "invalid_input", "invalid_input"],
        ),
        (
            "empty strings",
            step(
                "create_user_with_account",
                json!({"user": new_user("", ""), "password": pw}).to_string(),
                "",
                "sAMAccountName",
            ),
            ["invalid_input", "invalid_input", "invalid_input"],
        ),
        (
            "an empty user name",
            step(
                "grant_site_access",
                json!({"user_principal_name": "", "role": "member"}).to_string(),
                "",
                "",
            ),
            ["invalid_upn", "invalid_upn", "invalid_upn"],
        ),
        (
            "an empty list",
            step(
                "plan_bulk_create",
                json!({"users": [""]}).to_string(),
                "",
                "users",
            ),
            ["invalid_input", "invalid_input", "invalid_input"],
        ),
        (
            "invalid UTF-8",
            step(
                "create_user_with_account",
                json!({"user": new_user("$surrogate", "Badin New"), "password": pw}).to_string(),
                "",
                "",
            ),
            [
                "invalid_utf8",
                "invalid_input:user.sam_account_name",
                "invalid_utf8:not UTF-8",
            ],
        ),
        (
            "a 10 MB JSON",
            step(
                "create_user_with_account",
                json!({"user": new_user(&sam, "$big:10485760"), "password": pw}).to_string(),
                "",
                "display name",
            ),
            ["invalid_input", "invalid_input", "invalid_input"],
        ),
        (
            "deeply nested JSON",
            step("apply_plan", json!({"plan": "$deep:100000"}).to_string(), "", "plan"),
            [
                "invalid_input",
                "invalid_input:nested too deeply",
                "malformed_json:recursion limit",
            ],
        ),
        (
            "a plan that was never made",
            step(
                "apply_plan",
                json!({"plan": {"id": uuid::Uuid::new_v4(), "items": [{"action": {"kind": "delete", "local_guid": unlinked}}]}}).to_string(),
                "",
                "",
            ),
            ["invalid_input", "invalid_input", "invalid_input"],
        ),
        (
            "an operation that does not exist",
            step("no_such_operation", "{}", "", ""),
            ["unknown_operation", "unknown_operation", "unknown_operation"],
        ),
    ]
}

async fn bad_input_through(door: Door) {
    let w = World::new(door).await;
    let cfg = w.write_config("config.json", &w.config);
    let before = w.snapshot().await;
    assert_eq!(before["store"]["links"].as_array().unwrap().len(), 2);
    let mut failed = Vec::new();
    let column = match door {
        Door::C => 0,
        Door::Python => 1,
        Door::Cli => 2,
    };
    for (what, mut s, codes) in rows(&w) {
        // `code` or `code:text` when this door says it in its own words.
        match codes[column].split_once(':') {
            Some((code, says)) => {
                s.code = code.to_string();
                s.holds = says.to_string();
            }
            None => s.code = codes[column].to_string(),
        }
        if door == Door::Cli && s.op == "no_such_operation" {
            continue; // A command that does not exist is clap's (exit 2), in cli.rs.
        }
        let run = run_steps(door, w.tmp.path(), &cfg, std::slice::from_ref(&s));
        if !run.status.success() {
            failed.push(format!("{what}: {}\n{}", run.stdout, tail(&run.stderr)));
            continue;
        }
        let after = w.snapshot().await;
        if after != before {
            failed.push(format!(
                "{what}: something changed:\nbefore {before}\nafter  {after}"
            ));
        }
    }

    // What the configuration and the disk do wrong: the store in a read-only folder,
    // a full disk, a wrong or unreadable password key.
    let ro = Tmpfs::mount(&w.tmp.path().join("ro"), 4096);
    for f in ["state.db", "state.db.key"] {
        std::fs::copy(w.tmp.path().join(f), ro.0.join(f)).unwrap();
    }
    ro.read_only();
    let mut config = w.config.clone();
    config["store"] = json!(ro.0.join("state.db"));
    config["results_folder"] = json!(ro.0);
    let ro_cfg = w.write_config("ro.json", &config);
    let run = run_steps(
        door,
        w.tmp.path(),
        &ro_cfg,
        &[step("sync_once", "{}", "store_io", "Read-only file system")],
    );
    check_open_or_steps(
        &mut failed,
        "a store in a read-only folder",
        &run,
        "store_io",
        "Read-only file system",
    );
    drop(ro);

    // A full disk: the store and its key on a 1 MB tmpfs, the rest filled. The bulk
    // create of the two unlinked users cannot write its journal: nothing goes online.
    let full = Tmpfs::mount(&w.tmp.path().join("full"), 1024);
    for f in ["state.db", "state.db.key"] {
        std::fs::copy(w.tmp.path().join(f), full.0.join(f)).unwrap();
    }
    let mut config = w.config.clone();
    config["store"] = json!(full.0.join("state.db"));
    config["results_folder"] = json!(full.0);
    let full_cfg = w.write_config("full.json", &config);
    let guids: Vec<String> = w.unlinked.iter().map(|u| u.guid.to_string()).collect();
    let plan = run_steps(
        door,
        w.tmp.path(),
        &full_cfg,
        &[step(
            "plan_bulk_create",
            json!({ "users": guids }).to_string(),
            "ok",
            "",
        )],
    );
    assert!(plan.status.success(), "{}{}", plan.stdout, plan.stderr);
    let plan_text = plan
        .stdout
        .lines()
        .last()
        .and_then(|l| l.split_once('\t'))
        .map(|(_, r)| r.to_string())
        .unwrap();
    let plan_file = w.tmp.path().join("full-plan.json");
    std::fs::write(
        &plan_file,
        json!({ "plan": serde_json::from_str::<Value>(&plan_text).unwrap() }).to_string(),
    )
    .unwrap();
    full.fill();
    let tenant_before = before["tenant"].clone();
    let run = run_steps(
        door,
        w.tmp.path(),
        &full_cfg,
        &[step(
            "apply_plan",
            format!("@{}", plan_file.display()),
            "store_io",
            "space",
        )],
    );
    check_open_or_steps(&mut failed, "a full disk", &run, "store_io", "space");
    std::fs::remove_file(full.0.join("filler")).unwrap();
    let after = snapshot(&w.emu, &w.dir, &w.prefix, &full.0.join("state.db")).await;
    if after["tenant"] != tenant_before {
        failed.push(format!(
            "a full disk: the tenant changed:\nbefore {tenant_before}\nafter  {}",
            after["tenant"]
        ));
    }
    if after["store"]["links"] != before["store"]["links"] || after["store"]["journal_pending"] != 0
    {
        failed.push(format!(
            "a full disk: the store changed: {}",
            after["store"]
        ));
    }
    drop(full);

    // The password key: another store's (wrong) and one that cannot be read.
    let other_key = w.tmp.path().join("other.key");
    crate::fixtures::write_private(&other_key, [7u8; 32]);
    let mut config = w.config.clone();
    config["password_key"] = json!(other_key);
    let wrong_cfg = w.write_config("wrong-key.json", &config);
    let run = run_steps(
        door,
        w.tmp.path(),
        &wrong_cfg,
        &[step(
            "deliver_passwords",
            "{}",
            "invalid_config",
            "password key",
        )],
    );
    check_open_or_steps(
        &mut failed,
        "a wrong password key",
        &run,
        "invalid_config",
        "password key",
    );
    let mut config = w.config.clone();
    config["password_key"] = json!(w.tmp.path());
    let unreadable_cfg = w.write_config("unreadable-key.json", &config);
    let run = run_steps(
        door,
        w.tmp.path(),
        &unreadable_cfg,
        &[step(
            "deliver_passwords",
            "{}",
            "store_io",
            "password key file",
        )],
    );
    check_open_or_steps(
        &mut failed,
        "an unreadable password key",
        &run,
        "store_io",
        "password key file",
    );
    let after = w.snapshot().await;
    if after != before {
        failed.push(format!(
            "after the configuration rows something changed:\nbefore {before}\nafter  {after}"
        ));
    }
    // A results folder that cannot be made: the work is done, its results are in the
    // store, and the failure to write the file is a warning event.
    let mut config = w.config.clone();
    config["results_folder"] = json!(cfg.join("results"));
    let blocked_cfg = w.write_config("blocked-results.json", &config);
    let run = run_steps(
        door,
        w.tmp.path(),
        &blocked_cfg,
        &[
            step(
                "plan_bulk_create",
                json!({ "users": guids }).to_string(),
                "ok",
                "",
            ),
            step("apply_plan", "{\"plan\": $prev}", "ok", "succeeded"),
        ],
    );
    if !run.status.success() || !run.stderr.contains("cannot make the results folder") {
        failed.push(format!(
            "a results folder that cannot be made: want the run done and a warning:\n{}\n{}",
            run.stdout,
            tail(&run.stderr)
        ));
    }
    assert!(failed.is_empty(), "{door:?}:\n{}", failed.join("\n\n"));
}

/// A configuration row: refused when opened (exit 3, `open TAB error TAB code ...`), or
/// by the step (which the door checked).
fn check_open_or_steps(
    failed: &mut Vec<String>,
    what: &str,
    run: &DoorRun,
    code: &str,
    says: &str,
) {
    if run.status.success() {
        return;
    }
    let opened = run
        .stdout
        .lines()
        .find(|l| l.starts_with("open\terror\t"))
        .map(str::to_string)
        .or_else(|| {
            // The command line prints the error of opening like any other, as JSON.
            run.stdout.lines().find_map(|l| {
                let v: Value = serde_json::from_str(l.split_once('\t')?.1).ok()?;
                let e = v.get("error")?;
                Some(format!(
                    "open\terror\t{}\t{} {}",
                    e["code_name"].as_str()?,
                    e["message"],
                    e["action"]
                ))
            })
        });
    match opened {
        Some(l) if l.split('\t').nth(2) == Some(code) && l.contains(says) => {}
        _ => failed.push(format!(
            "{what}: want {code} saying `{says}`:\n{}\n{}",
            run.stdout,
            tail(&run.stderr)
        )),
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.starts_with("event\t")).collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_c_is_refused_with_a_typed_error_and_changes_nothing() {
    bad_input_through(Door::C).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_python_is_refused_with_a_typed_error_and_changes_nothing() {
    bad_input_through(Door::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_the_command_line_is_refused_with_a_typed_error_and_changes_nothing() {
    bad_input_through(Door::Cli).await;
}

/// The secrets canary through C, Python and the command line: a unique client secret,
/// PKCS#12 passphrase, user passwords and TSIG key, each used for real (against the
/// emulator, Samba and BIND9) and wrongly, every event printed (C's callback, Python's
/// `progress`, the command line's `--verbose`), results and errors shown (Python by
/// `repr` and its tracebacks too); then everything the door printed and every file it
/// left (the store, its WAL and journal, results files) is searched: zero occurrences.
/// (Rust and the Samba hook: canary.rs; C#: O365EssentialsTest.cs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaves_through_c_python_or_the_command_line() {
    use crate::canary::{Canaries, Outputs, unique};
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let samba = crate::samba::shared();
    let dir = LdapDirectory::new(samba.config()).unwrap();
    let mut leaks = Vec::new();
    for door in [Door::C, Door::Python, Door::Cli] {
        let d = door.name();
        let secret = unique("canary-secret-");
        let wrong_secret = unique("canary-wrong-secret-");
        let passphrase = unique("canary-passphrase-");
        let wrong_passphrase = unique("canary-wrong-passphrase-");
        let pw = |n: u8| {
            format!(
                "Cn{n}#{}x7",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
        };
        let (pw_new, pw_changed) = (pw(1), pw(2));
        let tsig = b64.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
        let wrong_tsig = b64.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
        let canaries = Canaries {
            named: vec![
                ("client secret", secret.clone()),
                ("wrong client secret", wrong_secret.clone()),
                ("PKCS#12 passphrase", passphrase.clone()),
                ("wrong PKCS#12 passphrase", wrong_passphrase.clone()),
                ("password of a new user", pw_new.clone()),
                ("changed password", pw_changed.clone()),
                ("TSIG key", tsig.clone()),
                ("wrong TSIG key", wrong_tsig.clone()),
            ],
        };
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path();
        let (cert, key, pfx) = crate::fixtures::pkcs12(work, "app", &passphrase);
        let mut emu_cfg = EmulatorConfig::default();
        emu_cfg.apps[0].client_secret = Some(secret.clone());
        emu_cfg.apps[0].certificates = vec![std::fs::read_to_string(&cert).unwrap()];
        let emu = Emulator::start(emu_cfg).await.unwrap();
        let zone = format!("canary{d}.co.uk");
        let dns = crate::dns::bind::Bind::start_with_key(&zone, &[], Some(("o365-update", &tsig)));
        reqwest::Client::new()
            .put(format!("{}/dns", emu.info().admin_url))
            .json(&json!({"server": dns.addr.to_string()}))
            .send()
            .await
            .unwrap();
        let tsig_file = crate::fixtures::tsig_key_file(work, "tsig.key", &tsig);
        let wrong_tsig_file = crate::fixtures::tsig_key_file(work, "wrong.key", &wrong_tsig);
        // A local user, linked, whose password the door changes.
        let sam = format!("canary{d}.old");
        let old = dir
            .create_user(
                &NewLocalUser {
                    sam_account_name: sam.clone(),
                    user_principal_name: format!("{sam}@{}", crate::samba::REALM),
                    display_name: format!("Canary {d} old"),
                    ..Default::default()
                },
                &o365_essentials::SecretString::from("Zebra-Sync-2026!"),
            )
            .await
            .unwrap();
        let config = |credential: Value, tsig: &Path, store: &str| {
            let extra = json!({
                "store": work.join(store),
                "results_folder": work.join("results"),
                "dns": {"server": dns.addr.to_string(), "tsig_key_file": tsig}
            });
            let mut c =
                crate::fixtures::merged(crate::fixtures::config(samba, emu.info(), work), extra);
            c["tenant"]["credential"] = credential;
            c
        };
        let write = |name: &str, v: Value| crate::fixtures::write(work, name, &v);
        let with_secret = write(
            "secret.json",
            config(
                json!({"kind": "secret", "secret": secret}),
                &tsig_file,
                "state.db",
            ),
        );
        let with_pfx = write(
            "pfx.json",
            config(
                json!({"kind": "pkcs12", "path": pfx, "password": passphrase}),
                &tsig_file,
                "state.db",
            ),
        );
        let wrong_key = write(
            "wrong-tsig.json",
            config(
                json!({"kind": "secret", "secret": secret}),
                &wrong_tsig_file,
                "other.db",
            ),
        );
        let wrong_sec = write(
            "wrong-secret.json",
            config(
                json!({"kind": "secret", "secret": wrong_secret}),
                &tsig_file,
                "other2.db",
            ),
        );
        let wrong_pass = write(
            "wrong-passphrase.json",
            config(
                json!({"kind": "pkcs12", "path": pfx, "password": wrong_passphrase}),
                &tsig_file,
                "other3.db",
            ),
        );
        let inputs = vec![
            cert.clone(),
            key.clone(),
            pfx.clone(),
            tsig_file.clone(),
            wrong_tsig_file.clone(),
            with_secret.clone(),
            with_pfx.clone(),
            wrong_key.clone(),
            wrong_sec.clone(),
            wrong_pass.clone(),
        ];
        let new_user = json!({"sam_account_name": format!("canary{d}.new"),
            "user_principal_name": format!("canary{d}.new@{}", crate::samba::REALM),
            "display_name": format!("Canary {d} new")});
        let mut out = Outputs::default();
        let mut run = |what: &str, config: &Path, steps: &[Step]| {
            let r = run_steps(door, work, config, steps);
            assert!(
                r.status.success(),
                "{d} {what}:\n{}\n{}",
                r.stdout,
                tail(&r.stderr)
            );
            out.add(format!("{d} {what} (stdout)"), &r.stdout);
            out.add(format!("{d} {what} (stderr)"), &r.stderr);
            r
        };
        // The wrong TSIG key first (the right one would link the domain).
        run(
            "a wrong TSIG key",
            &wrong_key,
            &[
                step("integrate", "{}", "ok", ""),
                step(
                    "link_domain",
                    json!({"domain": zone}).to_string(),
                    "auth",
                    "TSIG key",
                ),
            ],
        );
        let r = run(
            "the steps",
            &with_secret,
            &[
                step("integrate", "{}", "ok", ""),
                step(
                    "plan_bulk_create",
                    json!({"users": [old.guid]}).to_string(),
                    "ok",
                    "",
                ),
                step("apply_plan", "{\"plan\": $prev}", "ok", "succeeded"),
                step(
                    "create_user_with_account",
                    json!({"user": new_user, "password": pw_new}).to_string(),
                    "ok",
                    &format!("canary{d}.new"),
                ),
                step(
                    "create_user_with_account",
                    json!({"user": new_user, "password": pw_new}).to_string(),
                    "already_exists",
                    "",
                ),
                step(
                    "create_user_with_account",
                    json!({"user": 5, "password": pw_new}).to_string(),
                    "invalid_input",
                    "user",
                ),
                step(
                    "password_changed",
                    json!({"local_guid": old.guid, "password": pw_changed}).to_string(),
                    "ok",
                    "true",
                ),
                step(
                    "password_changed",
                    json!({"local_guid": "not-a-guid", "password": pw_changed}).to_string(),
                    "invalid_input",
                    "local_guid",
                ),
                step("deliver_passwords", "{}", "ok", "\"delivered\":1"),
                step(
                    "link_domain",
                    json!({"domain": zone}).to_string(),
                    "ok",
                    "done",
                ),
                step("sync_once", "{}", "ok", ""),
            ],
        );
        assert!(r.stdout.lines().count() >= 11, "{}", r.stdout);
        run(
            "the PKCS#12 credential",
            &with_pfx,
            &[
                step("status", "{}", "ok", ""),
                step("licences", "{}", "ok", ""),
            ],
        );
        run(
            "a wrong client secret",
            &wrong_sec,
            &[step("integrate", "{}", "auth", "")],
        );
        let r = run_steps(
            door,
            work,
            &wrong_pass,
            &[step("integrate", "{}", "auth", "")],
        );
        out.add(format!("{d} a wrong passphrase (stdout)"), &r.stdout);
        out.add(format!("{d} a wrong passphrase (stderr)"), &r.stderr);
        let refused = r.status.success()
            || r.stdout.contains("\terror\tinvalid_config\t")
            || r.stdout.contains("\"code_name\":\"invalid_config\"");
        assert!(
            refused,
            "{d}: a wrong passphrase: {}\n{}",
            r.stdout,
            tail(&r.stderr)
        );
        // The changed password was used for real: it is the online one.
        let state = admin(&emu, "GET", "/state", None).await;
        let id = state["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["displayName"] == format!("Canary {d} old"))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let check = admin(
            &emu,
            "POST",
            &format!("/users/{id}/check-password"),
            Some(json!({ "password": pw_changed })),
        )
        .await;
        assert_eq!(
            check["matches"], true,
            "{d}: the changed password is online"
        );
        // What the harness wrote for the door (steps, parameter files) is input too.
        let mut inputs = inputs;
        let mut files = Vec::new();
        crate::canary::walk(work, &mut files);
        inputs.extend(files.into_iter().filter(|f| {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            name == "steps.tsv" || name.starts_with("params-")
        }));
        out.add_files(work, &inputs);
        let hits = canaries.hits("secret.json", &std::fs::read(&with_secret).unwrap());
        assert!(!hits.is_empty(), "the search finds the secret in its input");
        for (what, bytes) in &out.texts {
            leaks.extend(canaries.hits(what, bytes));
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
