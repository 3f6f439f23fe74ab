//! What the program prints: results for people (tables of lists, `name: value` lines of
//! objects) or as JSON (`--json`: the operation's result shape, exactly); errors with the
//! recommended action; a progress bar on long work when stderr is a terminal.

use std::io::Write;
use std::sync::Mutex;

use serde_json::Value;

use o365_essentials::Error;
use o365_essentials::engine::Event;
use o365_essentials::ops::OperationInfo;
use o365_essentials::validate::printable;

/// Prints an error: on stderr for people (message, what to do, the service's code and
/// request id), as a JSON object on stdout with `--json`.
pub(crate) fn error(e: &Error, json: bool) {
    if json {
        let mut v = serde_json::json!({
            "error": {
                "code": e.code().number(),
                "code_name": e.code().name(),
                "family": e.code().family().name(),
                "message": e.to_string(),
                "action": e.action(),
            }
        });
        if let Some(p) = e.partial() {
            v["error"]["partial"] = p.clone();
        }
        println!("{v}");
        return;
    }
    // Names in a message may come from the directory or the tenant: no escape sequence
    // reaches the terminal.
    eprintln!("error: {}", printable(&e.to_string()));
    eprintln!("  what to do: {}", e.action());
    if let Some(items) = e
        .partial()
        .and_then(|p| p.get("items"))
        .and_then(Value::as_array)
    {
        {
            let done = items
                .iter()
                .filter(|i| i.get("outcome").and_then(Value::as_str) == Some("succeeded"))
                .count();
            let rest = items.len() - done;
            eprintln!(
                "  done before it stopped: {done} item(s) succeeded, {rest} not done (run the plan again for the rest)"
            );
        }
    }
}

/// `--verbose`: one event as a JSON line on stderr.
pub(crate) fn event_line(e: &Event) {
    if let Ok(text) = serde_json::to_string(e) {
        eprintln!("{text}");
    }
}

/// Prints a result.
pub(crate) fn result(_op: &OperationInfo, text: &str, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{text}");
        return;
    }
    let value: Value = serde_json::from_str(text).unwrap_or(Value::String(text.to_string()));
    let _ = write!(out, "{}", human(&value, 0));
}

/// What `status` adds from the service's health file: when it last did its work.
pub(crate) fn service_health(h: &crate::service::ServiceHealth) {
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "never".into());
    println!("service:");
    println!("  pid: {}", h.pid);
    println!("  last_good_round: {}", show(&h.last_good_round));
    println!("  last_delivery: {}", show(&h.last_delivery));
    println!(
        "  last_password_delivered: {}",
        show(&h.last_password_delivered)
    );
}

/// The table of operations.
pub(crate) fn operations(json: bool) {
    if json {
        println!("{}", o365_essentials::ops::operations_json());
        return;
    }
    for op in o365_essentials::ops::OPERATIONS {
        let fields: Vec<String> = op
            .fields()
            .iter()
            .map(|f| format!("--{}", f.replace('_', "-")))
            .collect();
        println!(
            "{:<28} {}{}",
            op.name.replace('_', "-"),
            op.summary,
            if fields.is_empty() {
                String::new()
            } else {
                format!(" [{}]", fields.join(" "))
            }
        );
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("-".into()),
        Value::Bool(b) => Some(if *b { "yes" } else { "no" }.into()),
        Value::Number(n) => Some(n.to_string()),
        // A name from the tenant or the directory (a phone's FriendlyName...) may hold
        // terminal escape sequences: shown escaped, never interpreted.
        Value::String(s) => Some(printable(s).into_owned()),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            Some(a.iter().filter_map(scalar).collect::<Vec<_>>().join(", "))
        }
        _ => None,
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let head: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

/// A list of objects as a table of their plain fields (at most eight columns).
fn table(items: &[Value], indent: usize) -> String {
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        if let Some(o) = item.as_object() {
            for (k, v) in o {
                if scalar(v).is_some() && !columns.contains(k) && columns.len() < 8 {
                    columns.push(k.clone());
                }
            }
        }
    }
    if columns.is_empty() {
        return items.iter().map(|i| human(i, indent)).collect();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            columns
                .iter()
                .map(|c| cut(&i.get(c).and_then(scalar).unwrap_or_default(), 48))
                .collect()
        })
        .collect();
    let header: Vec<String> = columns.iter().map(|c| printable(c).into_owned()).collect();
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(n, c)| {
            rows.iter()
                .map(|r| r[n].chars().count())
                .max()
                .unwrap_or(0)
                .max(c.chars().count())
        })
        .collect();
    let pad = " ".repeat(indent);
    let line = |cells: &[String]| {
        let mut s = pad.clone();
        for (n, c) in cells.iter().enumerate() {
            s.push_str(c);
            if n + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[n] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = line(&header);
    for r in &rows {
        s.push_str(&line(r));
    }
    s
}

/// A JSON value for people.
pub(crate) fn human(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    match v {
        Value::Null => format!("{pad}done\n"),
        Value::Array(a) if a.is_empty() => format!("{pad}(none)\n"),
        Value::Array(a) if a.iter().all(Value::is_object) => {
            format!("{}{pad}{} item(s)\n", table(a, indent), a.len())
        }
        Value::Object(o) => {
            let mut s = String::new();
            for (k, v) in o {
                match scalar(v) {
                    Some(text) => s.push_str(&format!("{pad}{}: {text}\n", printable(k))),
                    None => {
                        s.push_str(&format!("{pad}{}:\n", printable(k)));
                        s.push_str(&human(v, indent + 2));
                    }
                }
            }
            s
        }
        other => format!("{pad}{}\n", scalar(other).unwrap_or_default()),
    }
}

/// The progress bar of long work, drawn on stderr (only when it is a terminal).
pub(crate) struct ProgressBar {
    on: bool,
    drawn: Mutex<bool>,
}

impl ProgressBar {
    pub(crate) fn new(on: bool) -> ProgressBar {
        ProgressBar {
            on,
            drawn: Mutex::new(false),
        }
    }

    pub(crate) fn event(&self, e: &Event) {
        if !self.on {
            return;
        }
        if let Event::Progress {
            done,
            total,
            current,
            ..
        } = e
        {
            let total = (*total).max(1);
            let filled = (30 * done / total) as usize;
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[K[{}{}] {done}/{total} {}",
                "#".repeat(filled),
                ".".repeat(30 - filled.min(30)),
                printable(current.as_deref().unwrap_or(""))
            );
            let _ = err.flush();
            *self.drawn.lock().unwrap_or_else(|p| p.into_inner()) = true;
        }
    }

    pub(crate) fn finish(&self) {
        if *self.drawn.lock().unwrap_or_else(|p| p.into_inner()) {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_from_names_are_shown_escaped() {
        // A phone's FriendlyName that would set the window title, write the clipboard
        // (OSC 52) and conceal text.
        let name =
            "Ann's phone\u{1b}]0;owned\u{7}\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}\u{1b}[8m\u{9b}31m";
        for out in [
            human(&serde_json::json!({ "friendly_name": name }), 0),
            human(&serde_json::json!([{ "friendly_name": name }]), 0),
            human(&serde_json::json!({ name: 1 }), 0),
        ] {
            assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
            assert!(out.contains("Ann's phone\\u{1b}]0;owned"), "{out}");
        }
    }
}
