//! Docs that run: every code example in README.md and docs/*.md is taken out of its
//! Markdown and run against a fresh emulator, by the convention of docs/STYLE.md
//! ("Examples in docs"). A doc with an example in a language nothing here runs, or a
//! fence without a language, fails its test.

#![allow(clippy::print_stdout)] // a doc's output is shown with --nocapture

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use o365_essentials_emulator::{Emulator, EmulatorConfig};
use serde_json::json;

/// One fenced block of a doc.
#[derive(Debug, Clone)]
struct Block {
    line: usize,
    lang: String,
    attrs: Vec<String>,
    code: String,
}

impl Block {
    fn has(&self, attr: &str) -> bool {
        self.attrs.iter().any(|a| a == attr)
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced blocks of a Markdown text: the info string's first word is the language,
/// the rest (after commas or spaces) its attributes (`no-run`, `host`).
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String, String, Vec<String>)> = None;
    let mut code = String::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        match &open {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    let mut words = info
                        .split([',', ' '])
                        .map(str::trim)
                        .filter(|w| !w.is_empty())
                        .map(String::from);
                    let lang = words.next().unwrap_or_default();
                    let fence = line[..line.len() - t.len()].to_string();
                    open = Some((n + 1, fence, lang, words.collect()));
                    code.clear();
                }
            }
            Some((start, _, lang, attrs)) => {
                if t.starts_with("```") && t.trim_end() == "```" {
                    out.push(Block {
                        line: *start,
                        lang: lang.clone(),
                        attrs: attrs.clone(),
                        code: std::mem::take(&mut code),
                    });
                    open = None;
                } else {
                    code.push_str(line);
                    code.push('\n');
                }
            }
        }
    }
    out
}

/// The docs with a test of their own (`docs::<name>_examples_run`); any other doc is run
/// by `docs_not_listed_run_too`.
const DOCS: &[&str] = &[
    "README.md",
    "docs/ARCHITECTURE.md",
    "docs/BINDINGS.md",
    "docs/C-AND-CPP.md",
    "docs/COMMAND-LINE.md",
    "docs/CONFIGURATION.md",
    "docs/DOTNET.md",
    "docs/EMULATOR.md",
    "docs/MICROSOFT-365-WIRE-FACTS.md",
    "docs/OPERATIONS.md",
    "docs/PERMISSIONS.md",
    "docs/PYTHON.md",
    "docs/SAMBA-PASSWORDS.md",
    "docs/SAMBA-SERVER.md",
    "docs/STYLE.md",
    "docs/TEST-INFRA.md",
];

/// README.md and every docs/*.md, as paths from the checkout.
fn all_docs() -> Vec<String> {
    let mut found = vec!["README.md".to_string()];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".md") {
            found.push(format!("docs/{name}"));
        }
    }
    found.sort();
    found
}

#[test]
fn every_listed_doc_exists() {
    let all = all_docs();
    for d in DOCS {
        assert!(
            all.iter().any(|a| a == d),
            "{d} is gone: take it out of DOCS in tests/it/docs.rs"
        );
    }
}

/// A doc not (yet) in DOCS is run all the same: no doc escapes the runner.
#[tokio::test]
async fn docs_not_listed_run_too() {
    let mut failures = Vec::new();
    for doc in all_docs() {
        if !DOCS.contains(&doc.as_str()) {
            failures.extend(run_doc(&doc).await);
        }
    }
    assert!(
        failures.is_empty(),
        "examples of docs not in DOCS do not run:\n\n{}",
        failures.join("\n\n")
    );
}

/// The shell's words of a command line, quotes removed (enough for the docs' commands:
/// '…', "…" and backslash escapes).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut chars = line.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => cur.extend(chars.next()),
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                has = true;
            }
            (None, '\\') => {
                cur.extend(chars.next());
                has = true;
            }
            (None, c) if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                has = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `o365-essentials` commands of a shell block (continuation lines joined, comments,
/// redirections and `sudo` dropped), each as its arguments.
fn program_commands(code: &str) -> Vec<Vec<String>> {
    let joined = code.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        // A comment starts at a `#` after a space, outside quotes (the docs have no `#`
        // inside quotes after a space).
        let line = match line.find(" #") {
            Some(i) => &line[..i],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        };
        for part in line
            .split("&&")
            .flat_map(|p| p.split("||"))
            .flat_map(|p| p.split(';'))
            .flat_map(|p| p.split('|'))
        {
            let mut w = words(part);
            if w.first().is_some_and(|f| f == "sudo") {
                w.remove(0);
            }
            if w.first().is_none_or(|f| f != "o365-essentials") {
                continue;
            }
            let mut args = Vec::new();
            let mut it = w.into_iter().skip(1);
            while let Some(a) = it.next() {
                if a == ">" || a == ">>" || a == "<" || a == "2>" {
                    it.next();
                } else if a.starts_with('>')
                    || a.starts_with('<')
                    || a.starts_with("2>")
                    || a == "&"
                {
                } else {
                    args.push(a);
                }
            }
            out.push(args);
        }
    }
    out
}

/// A doc's configuration for the examples: the demo company's directory and a fresh
/// emulator's tenant (the app's certificate credential), its store and results in the
/// doc's own folder.
fn write_config(emu: &Emulator, dir: &Path, cert: &Path, key: &Path) -> PathBuf {
    let i = emu.info();
    let config = json!({
        "directory": "demo",
        "tenant": {
            "tenant_id": i.tenant_id,
            "client_id": i.client_id,
            "credential": {"kind": "certificate", "certificate_file": cert, "private_key_file": key},
            "login_url": i.login_url,
            "graph_url": i.graph_url,
            "exchange_url": i.exchange_url,
            "sharepoint_url": i.sharepoint_url
        },
        "store": dir.join("state.db"),
        "password_key": dir.join("keys/password.key"),
        "results_folder": dir.join("results"),
        "usage_location": "GB"
    });
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    crate::fixtures::write(dir, "o365-essentials.json", &config)
}

/// The last lines of a program's output, for a failure message.
fn tail(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

async fn output(mut c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run a doc's example: {e}"))
}

/// Runs a command in its own process group, and ends the group when it is done.
async fn output_killing_group(mut c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        // Files, not pipes: a process left in the background would hold a pipe open.
        let dir = tempfile::tempdir().unwrap();
        let (o, e) = (dir.path().join("out"), dir.path().join("err"));
        c.stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run a doc's example: {e}"));
        let group = child.id();
        let status = child.wait().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{group}")])
            .stderr(std::process::Stdio::null())
            .status();
        std::process::Output {
            status,
            stdout: std::fs::read(&o).unwrap_or_default(),
            stderr: std::fs::read(&e).unwrap_or_default(),
        }
    })
    .await
    .unwrap()
}

/// The environment every example runs in (the prelude of docs/STYLE.md): a scratch
/// folder as the working directory and `HOME`, the build's `o365-essentials` and
/// `o365-essentials-emulator` first on `PATH`, `O365_ESSENTIALS_CONFIG` naming the
/// doc's configuration (the demo company and a fresh emulator), `O365_REPO` the
/// checkout; none of the variables cargo sets for a test (a `cargo` in an example
/// builds as a reader's would).
fn prelude(c: &mut Command, work: &Path, config: &Path) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"));
    let bin_dir = bin.parent().unwrap().to_path_buf();
    let path = std::env::var("PATH").unwrap_or_default();
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME")
            || ["OUT_DIR", "LD_LIBRARY_PATH", "RUST_BACKTRACE"].contains(&name.as_ref())
        {
            c.env_remove(&k);
        }
    }
    c.current_dir(work)
        .env("PATH", format!("{}:{path}", bin_dir.display()))
        .env("O365_ESSENTIALS_CONFIG", config)
        .env("O365_REPO", root())
        .env("HOME", work)
        .env(
            "CARGO_HOME",
            std::env::var_os("CARGO_HOME").unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cargo")
                    .into()
            }),
        )
        .env(
            "RUSTUP_HOME",
            std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".rustup")
                    .into()
            }),
        );
}

/// Runs every example of `doc`; returns what failed, each with its doc, line and output.
async fn run_doc(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(doc)).unwrap();
    let all = blocks(&text);
    let mut failures = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (cert, key) = crate::graph::self_signed_rsa(tmp.path(), "app");
    let mut emu_config = EmulatorConfig::default();
    // The app signs in with a certificate, as `setup` makes it (SharePoint REST takes
    // no other); new libraries get their drive at once.
    emu_config.apps[0].certificates = vec![std::fs::read_to_string(&cert).unwrap()];
    emu_config.sharepoint.drive_delay_ms = 100;
    let emu = Emulator::start(emu_config).await.unwrap();
    let config = write_config(&emu, tmp.path(), &cert, &key);
    let mut sh = String::new();
    let mut python = String::new();
    let mut sh_lines = Vec::new();
    for b in &all {
        let at = format!(
            "{doc}:{} ({})",
            b.line,
            if b.lang.is_empty() {
                "no language"
            } else {
                &b.lang
            }
        );
        let no_run = b.has("no-run") || b.has("no_run");
        match b.lang.as_str() {
            "" => failures.push(format!(
                "{at}: a fence without a language; name it (```sh, ```text,no-run for output ...)"
            )),
            "text" | "console" | "output" if no_run => {}
            "text" | "console" | "output" => failures.push(format!(
                "{at}: `{}` is not code: mark it `{},no-run` (output, a file tree) or make it an example",
                b.lang, b.lang
            )),
            "rust" => {
                // Rust examples are the umbrella crate's doctests (src/lib.rs includes
                // the doc): compiled, and run unless `no_run`.
                let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
                let include = format!("include_str!(\"../{doc}\")");
                if !lib.contains(&include) {
                    failures.push(format!(
                        "{at}: Rust examples run as doctests: add `#[cfg(doctest)] #[doc = {include}]` to src/lib.rs"
                    ));
                }
            }
            "json" => {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&b.code) {
                    failures.push(format!("{at}: not JSON: {e}"));
                }
            }
            "toml" => {
                if let Err(e) = b.code.parse::<toml::Table>() {
                    failures.push(format!("{at}: not TOML: {e}"));
                }
            }
            "sh" | "bash" if b.has("host") => {
                // Commands that set up a server as root: checked, not run here.
                let mut c = Command::new("bash");
                c.args(["-n", "-c", &b.code]);
                let out = output(c).await;
                if !out.status.success() {
                    failures.push(format!("{at}: not valid shell:\n{}", tail(&out.stderr)));
                }
                for args in program_commands(&b.code) {
                    let mut c = Command::new(env!("CARGO_BIN_EXE_o365-essentials"));
                    c.args(&args).arg("--help");
                    let out = output(c).await;
                    if !out.status.success() {
                        failures.push(format!(
                            "{at}: `o365-essentials {}` is not a command line the program takes:\n{}",
                            args.join(" "),
                            tail(&out.stderr)
                        ));
                    }
                }
            }
            "sh" | "bash" if no_run => failures.push(format!(
                "{at}: shell examples run; a command that sets up a server is `sh,host`"
            )),
            "sh" | "bash" => {
                // `repo`: run in the checkout (cargo, scripts/); otherwise in the scratch
                // folder.
                let dir = if b.has("repo") { root() } else { work.clone() };
                sh.push_str(&format!("\n# {doc}:{}\ncd '{}'\n", b.line, dir.display()));
                sh.push_str(&b.code);
                sh_lines.push(b.line);
            }
            "python" if no_run => failures.push(format!("{at}: Python examples run")),
            "python" => {
                python.push_str(&format!("\n# {doc}:{}\n", b.line));
                python.push_str(&b.code);
            }
            "c" | "cpp" | "csharp" => {
                if let Err(e) = run_compiled(&b.lang, &b.code, &work, &config).await {
                    failures.push(format!("{at}: {e}"));
                }
            }
            other => failures.push(format!(
                "{at}: no runner for `{other}`; the languages are in docs/STYLE.md (Examples in docs)"
            )),
        }
    }
    if sh.contains("o365-essentials-emulator") {
        let emulator = PathBuf::from(env!("CARGO_BIN_EXE_o365-essentials"))
            .with_file_name("o365-essentials-emulator");
        assert!(
            emulator.exists(),
            "{doc} runs {}: build it first (`cargo test --workspace --no-run`, as scripts/test does)",
            emulator.display()
        );
    }
    if !sh.is_empty() {
        let script = tmp.path().join("examples.sh");
        std::fs::write(&script, format!("set -euo pipefail\n{sh}")).unwrap();
        let mut c = Command::new("bash");
        c.arg(&script);
        prelude(&mut c, &work, &config);
        // Its own process group: what an example leaves running in the background ends
        // with it.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let out = output_killing_group(c).await;
        // Shown with --nocapture: what the doc's reader would see.
        println!(
            "{doc}, shell:\n{}\n{}",
            tail(&out.stdout),
            tail(&out.stderr)
        );
        if !out.status.success() {
            failures.push(format!(
                "{doc}: the shell examples (lines {sh_lines:?}) failed ({}):\n{}\n{}",
                out.status,
                tail(&out.stdout),
                tail(&out.stderr)
            ));
        }
    }
    if !python.is_empty() {
        let python_bin = root().join("build/venv/bin/python");
        let script = tmp.path().join("examples.py");
        std::fs::write(&script, &python).unwrap();
        let mut c = Command::new(&python_bin);
        c.arg(&script);
        prelude(&mut c, &work, &config);
        let out = output(c).await;
        if !out.status.success() {
            failures.push(format!(
                "{doc}: the Python examples failed ({}; {} runs them: scripts/test installs the wheel there):\n{}\n{}",
                out.status,
                python_bin.display(),
                tail(&out.stdout),
                tail(&out.stderr)
            ));
        }
    }
    drop(emu);
    failures
}

/// A C, C++ or C# example: a complete program, compiled against the build's library and
/// run with the prelude.
async fn run_compiled(lang: &str, code: &str, work: &Path, config: &Path) -> Result<(), String> {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let include = root().join("o365-essentials-ffi/include");
    let n = std::fs::read_dir(work).map(|d| d.count()).unwrap_or(0);
    let exe = work.join(format!("example-{n}"));
    let (mut compile, mut run) = match lang {
        "c" | "cpp" => {
            let src = work.join(format!("example-{n}.{lang}"));
            std::fs::write(&src, code).unwrap();
            let mut c = Command::new(if lang == "c" { "gcc" } else { "g++" });
            c.args(if lang == "c" {
                ["-std=c11", "-Wall"]
            } else {
                ["-std=c++17", "-Wall"]
            })
            .arg("-I")
            .arg(&include)
            .arg(&src)
            .arg("-L")
            .arg(&deps)
            .args(["-lo365_essentials", "-lpthread", "-o"])
            .arg(&exe);
            let mut r = Command::new(&exe);
            r.env("LD_LIBRARY_PATH", &deps);
            (c, r)
        }
        _ => {
            let src = work.join(format!("example-{n}.cs"));
            std::fs::write(&src, code).unwrap();
            let exe = exe.with_extension("exe");
            let mut c = Command::new("mcs");
            c.arg(format!("-out:{}", exe.display()))
                .arg(root().join("o365-essentials-ffi/dotnet/O365Essentials.cs"))
                .arg(&src);
            let mut r = Command::new("mono");
            r.arg(&exe).env("LD_LIBRARY_PATH", &deps);
            (c, r)
        }
    };
    compile.current_dir(work);
    let out = output(compile).await;
    if !out.status.success() {
        return Err(format!(
            "does not compile as a complete program:\n{}\n{}",
            tail(&out.stdout),
            tail(&out.stderr)
        ));
    }
    prelude(&mut run, work, config);
    let out = output(run).await;
    if !out.status.success() {
        return Err(format!(
            "failed when run ({}):\n{}\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        ));
    }
    Ok(())
}

async fn check(doc: &str) {
    let failures = tokio::time::timeout(Duration::from_secs(600), run_doc(doc))
        .await
        .unwrap_or_else(|_| panic!("{doc}: its examples ran for more than 10 minutes"));
    assert!(
        failures.is_empty(),
        "{} example(s) of {doc} do not run:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

macro_rules! doc_tests {
    ($($name:ident => $doc:literal,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                check($doc).await;
            }
        )*
    };
}

doc_tests! {
    readme_examples_run => "README.md",
    architecture_examples_run => "docs/ARCHITECTURE.md",
    bindings_examples_run => "docs/BINDINGS.md",
    c_and_cpp_examples_run => "docs/C-AND-CPP.md",
    command_line_examples_run => "docs/COMMAND-LINE.md",
    configuration_examples_run => "docs/CONFIGURATION.md",
    dotnet_examples_run => "docs/DOTNET.md",
    emulator_examples_run => "docs/EMULATOR.md",
    wire_facts_examples_run => "docs/MICROSOFT-365-WIRE-FACTS.md",
    operations_examples_run => "docs/OPERATIONS.md",
    permissions_examples_run => "docs/PERMISSIONS.md",
    python_examples_run => "docs/PYTHON.md",
    samba_passwords_examples_run => "docs/SAMBA-PASSWORDS.md",
    samba_server_examples_run => "docs/SAMBA-SERVER.md",
    style_examples_run => "docs/STYLE.md",
    test_infra_examples_run => "docs/TEST-INFRA.md",
}

#[test]
fn the_runner_reads_fences_and_command_lines_as_the_convention_says() {
    let b = blocks("text\n```sh,host\na \\\n b\n```\n  ```text no-run\nx\n  ```\n```\nbare\n```\n");
    assert_eq!(b.len(), 3);
    assert_eq!((b[0].lang.as_str(), b[0].has("host")), ("sh", true));
    assert_eq!((b[1].lang.as_str(), b[1].has("no-run")), ("text", true));
    assert_eq!(b[2].lang, "");
    assert_eq!(
        program_commands(
            "sudo o365-essentials init /etc/x.toml   # then fill it in\n\
             o365-essentials plan-bulk-create --json > plan.json && o365-essentials apply-plan --plan @plan.json\n\
             systemctl enable o365-essentials\n\
             o365-essentials set-device-policy --update '{\"a\": 1, \"b\": \"c d\"}'\n"
        ),
        vec![
            vec!["init".to_string(), "/etc/x.toml".into()],
            vec!["plan-bulk-create".into(), "--json".into()],
            vec!["apply-plan".into(), "--plan".into(), "@plan.json".into()],
            vec![
                "set-device-policy".into(),
                "--update".into(),
                "{\"a\": 1, \"b\": \"c d\"}".into()
            ],
        ]
    );
}
