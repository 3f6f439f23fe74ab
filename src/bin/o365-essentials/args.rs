//! The command line, made from the table of operations: one subcommand per operation
//! (`plan_bulk_create` → `plan-bulk-create`), one option per parameter field
//! (`--usage-location GB`), the value read by the field's JSON Schema type — text as it
//! is, numbers and booleans as JSON, a list from repeated options or one JSON array, an
//! object as JSON; `@FILE` reads the value from a file and `-` from stdin (for a plan,
//! or a password kept out of the process list).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::OnceLock;

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::Value;

use o365_essentials::ops::{OPERATIONS, OperationInfo};
use o365_essentials::{Error, ErrorCode};

/// The tasks the subcommands are listed under in `--help`, in order. Every operation of
/// the table is in exactly one (a test checks it).
pub(crate) const TASKS: &[(&str, &[&str])] = &[
    (
        "Integration",
        &[
            "requirements",
            "integrate",
            "status",
            "disable",
            "enable",
            "change_credentials",
            "setup",
            "teardown",
            "roll_credential",
        ],
    ),
    (
        "Accounts",
        &[
            "match_preview",
            "plan_bulk_create",
            "apply_plan",
            "plan_retry",
            "import_users",
            "assign",
            "unassign",
            "list_links",
            "create_user_with_account",
            "online_user_names",
            "licences",
        ],
    ),
    ("Sync", &["sync_once", "plan_sync", "apply_sync_plan"]),
    (
        "Passwords",
        &[
            "password_changed",
            "capture_password",
            "deliver_passwords",
            "password_problems",
        ],
    ),
    (
        "Distribution groups",
        &[
            "list_distribution_groups",
            "create_distribution_group",
            "add_group_members",
            "remove_group_members",
            "replace_group_members",
            "update_distribution_group",
            "delete_distribution_group",
        ],
    ),
    (
        "Mobile devices",
        &[
            "get_device_policy",
            "set_device_policy",
            "get_default_access_level",
            "set_default_access_level",
            "list_access_rules",
            "add_access_rule",
            "remove_access_rule",
            "list_devices",
            "set_device_access",
            "wipe_device",
            "cancel_wipe",
            "wipe_status",
        ],
    ),
    (
        "Domain",
        &[
            "link_domain",
            "domain_stage",
            "write_records_file",
            "zone_fragment",
            "check_records",
            "health_report",
            "apply_records",
        ],
    ),
    (
        "SharePoint",
        &[
            "list_libraries",
            "create_library",
            "delete_library",
            "list_site_groups",
            "grant_site_access",
            "revoke_site_access",
            "launchpad",
        ],
    ),
];

/// The subcommand of an operation.
pub(crate) fn command_name(op: &str) -> String {
    op.replace('_', "-")
}

/// The operation of a subcommand.
pub(crate) fn operation(command: &str) -> Option<&'static OperationInfo> {
    OPERATIONS.iter().find(|o| command_name(o.name) == command)
}

/// How an option's text becomes the field's JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Text as it is.
    Text,
    Json,
    List {
        items_text: bool,
    },
}

struct Schemas {
    defs: serde_json::Map<String, Value>,
    params: serde_json::Map<String, Value>,
}

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        let v = o365_essentials::ops::params_schemas_json();
        let take = |k: &str| {
            v.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        Schemas {
            defs: take("$defs"),
            params: take("params"),
        }
    })
}

fn resolve<'a>(s: &'a Value, defs: &'a serde_json::Map<String, Value>) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => defs.get(r.rsplit('/').next().unwrap_or(r)).unwrap_or(s),
        None => s,
    }
}

fn kind_of(schema: &Value, defs: &serde_json::Map<String, Value>) -> Kind {
    let schema = resolve(schema, defs);
    // Option<T>: `type: [T, "null"]` or `anyOf: [T, {type: null}]`.
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let rest: Vec<&Value> = any
            .iter()
            .filter(|s| s.get("type") != Some(&Value::from("null")))
            .collect();
        if rest.len() == 1 {
            return kind_of(rest[0], defs);
        }
        return Kind::Json;
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => vec![],
    };
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        // An enum of names is text; anything else is JSON.
        let all_text = one
            .iter()
            .all(|v| v.get("const").is_some_and(Value::is_string));
        return if all_text { Kind::Text } else { Kind::Json };
    }
    match types.as_slice() {
        ["string"] => Kind::Text,
        ["array"] => {
            let items = schema.get("items").map(|i| kind_of(i, defs));
            Kind::List {
                items_text: items == Some(Kind::Text),
            }
        }
        _ => Kind::Json,
    }
}

/// The names a field of a closed set takes (an enum of names), if it is one.
fn enum_values(schema: &Value, defs: &serde_json::Map<String, Value>) -> Option<Vec<String>> {
    let schema = resolve(schema, defs);
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let rest: Vec<&Value> = any
            .iter()
            .filter(|s| s.get("type") != Some(&Value::from("null")))
            .collect();
        return match rest.as_slice() {
            [one] => enum_values(one, defs),
            _ => None,
        };
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        return e.iter().map(|v| v.as_str().map(String::from)).collect();
    }
    schema
        .get("oneOf")
        .and_then(Value::as_array)?
        .iter()
        .map(|v| v.get("const").and_then(Value::as_str).map(String::from))
        .collect()
}

/// Each parameter field of `op` with how its option is read and its description.
pub(crate) fn fields(op: &OperationInfo) -> Vec<(&'static str, Kind, String)> {
    let s = schemas();
    let schema = s.params.get(op.name).map(|v| resolve(v, &s.defs));
    let props = schema
        .and_then(|v| v.get("properties"))
        .and_then(Value::as_object);
    op.fields()
        .iter()
        .map(|f| {
            let prop = props.and_then(|p| p.get(*f));
            let kind = prop.map(|p| kind_of(p, &s.defs)).unwrap_or(Kind::Json);
            let help = prop
                .and_then(|p| p.get("description"))
                .and_then(Value::as_str)
                .unwrap_or("")
                // The whole description: a doc comment wrapped over lines is one text.
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let help = match prop.and_then(|p| enum_values(p, &s.defs)) {
                Some(names) if !names.is_empty() => format!(
                    "{help} One of: {}.",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => help,
            };
            (*f, kind, help)
        })
        .collect()
}

/// The whole command line.
pub(crate) fn command() -> Command {
    let mut help = String::from("Tasks (each an operation of the engine's table):\n");
    for (task, ops) in TASKS {
        help.push_str(&format!("\n  {task}:\n"));
        for op in *ops {
            if let Some(info) = OPERATIONS.iter().find(|o| o.name == *op) {
                help.push_str(&format!("    {:<28} {}\n", command_name(op), info.summary));
            }
        }
    }
    help.push_str(
        "\n`o365-essentials COMMAND --help` shows a command's options.\n\n\
         Exit codes: 0 done; 20 requirements with a failed check; 21 done with failed items\n\
         (apply-plan, import-users, sync runs, refused passwords); errors: 2 input, 3 auth,\n\
         4 object, 5 service, 6 policy, 7 store, 8 engine, 9 DNS, 10 operation; 130 stopped\n\
         by Ctrl-C.",
    );
    let mut cmd = Command::new("o365-essentials")
        .version(o365_essentials::VERSION)
        .about("Links an on-premises Active Directory (Samba or Windows) to a Microsoft 365 tenant.")
        .after_help(help)
        .subcommand_required(true)
        .arg(
            Arg::new("config")
                .long("config")
                .short('c')
                .global(true)
                .env("O365_ESSENTIALS_CONFIG")
                .default_value("/etc/o365-essentials/o365-essentials.toml")
                .help("The configuration file (TOML or JSON)"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print the result as JSON (the operation's result shape)"),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print every event of the operation, progress included, as a JSON line on stderr"),
        )
        .arg(
            Arg::new("lease-wait")
                .long("lease-wait")
                .global(true)
                .value_name("SECONDS")
                .value_parser(clap::value_parser!(u64))
                .help("Wait this long for work another process holds, instead of failing"),
        )
        .subcommand(
            Command::new("init")
                .about("Writes a commented starting configuration")
                .arg(Arg::new("path").required(true).help("The file to write (.toml or .json)"))
                .arg(
                    Arg::new("force")
                        .long("force")
                        .action(ArgAction::SetTrue)
                        .help("Overwrite an existing file"),
                ),
        )
        .subcommand(Command::new("operations").about("Lists the operations and their parameters"))
        .subcommand(
            Command::new("serve")
                .about("Runs the sync loop and password delivery until SIGTERM (the systemd service)")
                .arg(
                    Arg::new("interval")
                        .long("interval")
                        .value_name("SECONDS")
                        .value_parser(clap::value_parser!(u64).range(1..))
                        .help("Seconds between sync rounds (the configuration's when absent)"),
                )
                .arg(
                    Arg::new("delivery-interval")
                        .long("delivery-interval")
                        .value_name("SECONDS")
                        .default_value("5")
                        .value_parser(clap::value_parser!(u64).range(1..))
                        .help("Seconds between deliveries of captured passwords"),
                )
                .arg(
                    Arg::new("roll-days")
                        .long("roll-days")
                        .value_name("DAYS")
                        .default_value("14")
                        .value_parser(clap::value_parser!(i64).range(0..))
                        .help("Roll a certificate setup made this many days before it expires (0: never)"),
                ),
        )
        .subcommand(
            Command::new("samba-hook")
                .about("The password hook `samba-tool user syncpasswords --script` runs: one account's LDIF on stdin"),
        );
    for op in OPERATIONS {
        let mut sub = Command::new(command_name(op.name))
            .about(op.summary)
            .hide(true)
            .arg(
                Arg::new("params")
                    .long("params")
                    .value_name("JSON")
                    .help("All parameters as one JSON object (or @FILE, or - for stdin)"),
            );
        for (field, kind, help) in fields(op) {
            let mut arg = Arg::new(field)
                .long(command_name(field))
                .value_name(match kind {
                    Kind::Text => "TEXT",
                    Kind::Json => "JSON",
                    Kind::List { .. } => "VALUE",
                })
                .help(help);
            if matches!(kind, Kind::List { .. }) {
                arg = arg.action(ArgAction::Append);
            }
            sub = sub.arg(arg);
        }
        cmd = cmd.subcommand(sub);
    }
    cmd
}

/// Whether a parameter holds a secret (a password, a client secret): its value is never
/// echoed, and given inline it is warned about.
fn is_secret(field: &str) -> bool {
    field == "password"
        || field.ends_with("_password")
        || field.contains("secret")
        // A captured account's LDIF carries its new password in clear.
        || field == "ldif"
}

/// A secret given inline is visible to every user in the process list.
fn warn_inline_secret(what: &str) {
    eprintln!(
        "warning: {what} given on the command line is visible to other users of this host (ps, /proc); pass `-` to read it from stdin or `@FILE` to read it from a 0600 file"
    );
}

/// Reads a secret parameter: like [`read_value`], but an error never echoes any part
/// of the value (a password may itself start with `@`), and an inline value is warned
/// about.
fn read_secret(text: &str, what: &str) -> Result<String, Error> {
    if text == "-" {
        return read_value(text, what);
    }
    if let Some(path) = text.strip_prefix('@') {
        return match std::fs::read(path) {
            Ok(b) => String::from_utf8(b).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidUtf8,
                    format!(
                        "{what}: the file is not UTF-8 text (an invalid byte at offset {}); save it as UTF-8",
                        e.utf8_error().valid_up_to()
                    ),
                )
            }),
            Err(e) => Err(Error::new(
                ErrorCode::InvalidInput,
                format!(
                    "{what}: the file named after `@` cannot be read ({}); the name is not shown, as it may be a password starting with `@` — pass such a password with `-` (stdin)",
                    e.kind()
                ),
            )),
        };
    }
    warn_inline_secret(what);
    Ok(text.to_string())
}

/// Reads `@FILE` and `-` (stdin); other text is the value itself.
fn read_value(text: &str, what: &str) -> Result<String, Error> {
    let (bytes, from) = if text == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b).map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("{what}: cannot read stdin: {e}"),
            )
        })?;
        if b.last() == Some(&b'\n') {
            b.pop();
        }
        (b, "stdin".to_string())
    } else if let Some(path) = text.strip_prefix('@') {
        let b = std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("{what}: cannot read {path}: {e}"),
            )
        })?;
        (b, path.to_string())
    } else {
        return Ok(text.to_string());
    };
    String::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorCode::InvalidUtf8,
            format!(
                "{what}: {from} is not UTF-8 text (an invalid byte at offset {}); save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn json_value(text: &str, what: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorCode::MalformedJson,
            format!("{what} is not JSON ({e}); quote text as JSON or pass @FILE"),
        )
    })
}

/// The parameters object of `op` from the subcommand's options, as JSON text.
pub(crate) fn params(op: &OperationInfo, m: &ArgMatches) -> Result<String, Error> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(all) = m.get_one::<String>("params") {
        let text = read_value(all, "--params")?;
        match json_value(&text, "--params")? {
            Value::Object(o) => {
                if all != "-" && !all.starts_with('@') && o.keys().any(|k| is_secret(k)) {
                    warn_inline_secret("a secret in --params");
                }
                out.extend(o)
            }
            Value::Null => {}
            _ => {
                return Err(Error::new(
                    ErrorCode::InvalidInput,
                    "--params is a JSON object of the operation's parameters",
                ));
            }
        }
    }
    for (field, kind, _) in fields(op) {
        let what = format!("--{}", command_name(field));
        let Some(values) = m.get_many::<String>(field) else {
            continue;
        };
        let values: Vec<&String> = values.collect();
        let value = match kind {
            Kind::Text if is_secret(field) => Value::String(read_secret(values[0], &what)?),
            Kind::Text => Value::String(read_value(values[0], &what)?),
            Kind::Json => json_value(&read_value(values[0], &what)?, &what)?,
            Kind::List { items_text } => {
                let mut items = Vec::new();
                for v in values {
                    let text = read_value(v, &what)?;
                    let trimmed = text.trim_start();
                    if trimmed.starts_with('[') {
                        // One JSON array: its items, whole.
                        match json_value(&text, &what)? {
                            Value::Array(a) => items.extend(a),
                            other => items.push(other),
                        }
                    } else if !items_text && (trimmed.starts_with('{') || trimmed.starts_with('"'))
                    {
                        // One JSON object (or string) is one item: never split at the
                        // commas inside it.
                        items.push(json_value(&text, &what)?);
                    } else {
                        // A comma-separated list is a list too: --users ann,ben.
                        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                            items.push(if items_text {
                                Value::String(part.to_string())
                            } else {
                                json_value(part, &what)?
                            });
                        }
                    }
                }
                Value::Array(items)
            }
        };
        out.insert(field.to_string(), value);
    }
    serde_json::to_string(&out).map_err(|e| Error::internal(format!("writing the parameters: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_of_the_table_is_a_command_listed_under_one_task() {
        let cmd = command();
        let help = cmd.clone().render_long_help().to_string();
        for op in OPERATIONS {
            let name = command_name(op.name);
            assert!(
                cmd.find_subcommand(&name).is_some(),
                "the table's `{}` is not a command",
                op.name
            );
            let listed = TASKS
                .iter()
                .filter(|(_, ops)| ops.contains(&op.name))
                .count();
            assert_eq!(listed, 1, "`{}` is under {listed} tasks in TASKS", op.name);
            assert!(help.contains(&name), "--help does not list {name}");
            let sub = cmd.find_subcommand(&name).unwrap_or_else(|| unreachable!());
            for f in op.fields() {
                assert!(
                    sub.get_arguments().any(|a| a.get_id() == *f),
                    "{name} has no option for its field `{f}`"
                );
            }
        }
        for (_, ops) in TASKS {
            for op in *ops {
                assert!(
                    operation(&command_name(op)).is_some(),
                    "TASKS names `{op}`, not in the table"
                );
            }
        }
    }

    #[test]
    fn options_become_the_parameters_by_their_types() {
        let cmd = command();
        let m = cmd
            .try_get_matches_from([
                "o365-essentials",
                "plan-bulk-create",
                "--users",
                "ann,ben",
                "--users",
                "cy",
                "--usage-location",
                "GB",
                "--allow-soft-match",
                "true",
                "--licences",
                r#"{"sku_id": "5b631642-bd26-49fe-bd20-1daaa972ef80"}"#,
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, sub) = m.subcommand().unwrap_or_else(|| unreachable!());
        let info = operation("plan-bulk-create").unwrap_or_else(|| unreachable!());
        let v: Value = serde_json::from_str(&params(info, sub).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["users"], serde_json::json!(["ann", "ben", "cy"]));
        // A JSON object with commas inside is one item, whole; objects repeat.
        let m = command()
            .try_get_matches_from([
                "o365-essentials",
                "plan-bulk-create",
                "--licences",
                r#"{"sku_id": "5b631642-bd26-49fe-bd20-1daaa972ef80", "disabled_plans": ["a", "b"]}"#,
                "--licences",
                r#"{"sku_id": "6fd2c87f-b296-42f0-b197-1e91e994b900"}"#,
                "--choices",
                r#"[{"user": "ann", "user_principal_name": "ann@contoso.com"}, {"user": "ben"}]"#,
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, sub) = m.subcommand().unwrap_or_else(|| unreachable!());
        let w: Value = serde_json::from_str(&params(info, sub).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            w["licences"][0]["disabled_plans"],
            serde_json::json!(["a", "b"])
        );
        assert_eq!(w["licences"].as_array().map(Vec::len), Some(2));
        assert_eq!(w["choices"][1]["user"], "ben");
        assert_eq!(v["usage_location"], "GB");
        assert_eq!(v["allow_soft_match"], true);
        assert_eq!(
            v["licences"][0]["sku_id"],
            "5b631642-bd26-49fe-bd20-1daaa972ef80"
        );
        // A device id that looks like a number stays text.
        let m = command()
            .try_get_matches_from(["o365-essentials", "wipe-status", "--device-id", "12345"])
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, sub) = m.subcommand().unwrap_or_else(|| unreachable!());
        let info = operation("wipe-status").unwrap_or_else(|| unreachable!());
        assert_eq!(
            params(info, sub).unwrap_or_else(|e| panic!("{e}")),
            r#"{"device_id":"12345"}"#
        );
    }

    #[test]
    fn every_option_has_a_whole_description() {
        for op in OPERATIONS {
            for (field, _, help) in fields(op) {
                assert!(
                    help.ends_with('.') && !help.contains('\n'),
                    "`{} --{}` has a description that stops mid-sentence or is missing: {help:?}",
                    command_name(op.name),
                    command_name(field)
                );
            }
        }
        let role = fields(operation("grant-site-access").unwrap_or_else(|| unreachable!()))
            .into_iter()
            .find(|(f, _, _)| *f == "role")
            .map(|(_, _, h)| h)
            .unwrap_or_default();
        assert!(role.contains("`owner`, `member`, `visitor`"), "{role}");
    }

    #[test]
    fn a_secret_from_a_missing_file_is_never_echoed() {
        let e = read_secret("@Rest-Of-The-Passw0rd", "--password").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(!e.to_string().contains("Rest-Of"), "{e}");
        assert!(!format!("{e:?}").contains("Rest-Of"), "{e:?}");
        assert!(is_secret("password") && is_secret("new_password") && is_secret("ldif"));
        assert!(!is_secret("password_file") && !is_secret("min_password_length"));
    }

    #[test]
    fn the_systemd_units_run_commands_this_program_has() {
        let units = [
            include_str!("../../../packaging/systemd/o365-essentials.service"),
            include_str!("../../../packaging/systemd/o365-essentials@.service"),
            include_str!("../../../packaging/systemd/o365-essentials-syncpasswords.service"),
        ];
        for unit in units {
            let exec = unit
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap_or_else(|| panic!("no ExecStart in {unit}"));
            let words: Vec<&str> = exec.split_whitespace().collect();
            if words[0] == "/usr/bin/o365-essentials" {
                command()
                    .try_get_matches_from(words.iter().map(|w| w.replace("/usr/bin/", "")))
                    .unwrap_or_else(|e| panic!("{exec}: {e}"));
            } else {
                assert_eq!(words[0], "/usr/bin/samba-tool", "{exec}");
                assert!(unit.contains(&format!(
                    "--script=/usr/libexec/o365-essentials/{}",
                    crate::HOOK_NAME
                )));
            }
            assert!(
                unit.contains("Environment=O365_ESSENTIALS_CONFIG=/etc/o365-essentials/"),
                "{unit}"
            );
        }
    }

    /// The command reference in the repository is this program's (bless with
    /// `O365_BLESS=1 cargo test --bin o365-essentials`).
    #[test]
    fn the_command_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/COMMAND-LINE.md");
        let want = reference();
        if std::env::var_os("O365_BLESS").is_some() {
            std::fs::write(path, &want).unwrap_or_else(|e| panic!("{e}"));
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/COMMAND-LINE.md is stale: O365_BLESS=1 cargo test --bin o365-essentials"
        );
    }

    /// The command reference (docs/COMMAND-LINE.md), from the command line itself.
    fn reference() -> String {
        let mut s = String::from(include_str!("reference-head.md"));
        for (task, ops) in TASKS {
            s.push_str(&format!("\n## {task}\n"));
            for op in *ops {
                let Some(info) = operation(&command_name(op)) else {
                    continue;
                };
                s.push_str(&format!(
                    "\n### `o365-essentials {}`\n\n{}",
                    command_name(op),
                    info.summary
                ));
                if info.long_running {
                    s.push_str(" Long work: a progress bar on a terminal; Ctrl-C stops it at an item boundary.");
                }
                s.push('\n');
                let fields = fields(info);
                if !fields.is_empty() {
                    s.push('\n');
                    for (f, kind, help) in fields {
                        let how = match kind {
                            Kind::Text => "text",
                            Kind::Json => "JSON",
                            Kind::List { items_text: true } => "list (repeat or comma-separate)",
                            Kind::List { items_text: false } => "list of JSON values",
                        };
                        s.push_str(&format!("* `--{}` ({how}): {help}\n", command_name(f)));
                    }
                }
            }
        }
        s
    }
}
