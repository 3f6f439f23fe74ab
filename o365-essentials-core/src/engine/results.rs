//! The results file of a run, in JSON and CSV, and reading it back to retry failures.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};
use crate::model::{ObjectGuid, Outcome, RunResults};

/// One CSV cell. A value that a spreadsheet would read as a formula (starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return: OWASP's CSV-injection list) gets a
/// leading `'`, so a name chosen by someone else can never run in the reader's
/// spreadsheet; then it is quoted as CSV needs.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
        Outcome::Held => "held",
        Outcome::Cancelled => "cancelled",
    }
}

/// The results as CSV: local user, requested UPN, outcome, error code, service message,
/// recommended action.
pub fn to_csv(r: &RunResults) -> String {
    let mut out = String::from(
        "local_user,local_guid,requested_upn,action,outcome,error_code,service_message,recommended_action,password_source\n",
    );
    for i in &r.items {
        let fields = [
            i.local_user.clone(),
            i.local_guid.to_string(),
            i.requested_upn.clone().unwrap_or_default(),
            i.action.name().to_string(),
            outcome_name(i.outcome).to_string(),
            i.error_code
                .map(|c| c.name().to_string())
                .unwrap_or_default(),
            i.service_message.clone().unwrap_or_default(),
            i.recommended_action.clone().unwrap_or_default(),
            match i.password_source {
                Some(crate::model::PasswordSource::Current) => "current".into(),
                Some(crate::model::PasswordSource::Random) => "random".into(),
                None => String::new(),
            },
        ];
        out.push_str(
            &fields
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    out
}

fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    let mut f =
        crate::platform::private_file(path, crate::platform::Create::Truncate).map_err(|e| {
            Error::new(
                ErrorCode::StoreIo,
                format!("cannot write the results file {}: {e}", path.display()),
            )
        })?;
    f.write_all(data).map_err(|e| {
        Error::new(
            ErrorCode::StoreIo,
            format!("cannot write the results file {}: {e}", path.display()),
        )
    })
}

/// Writes `<kind>-<run id>.json` and `.csv` into `folder` (made when missing); returns
/// both paths.
///
/// # Errors
/// [`ErrorCode::StoreIo`] naming the file or folder.
pub fn write_results(r: &RunResults, folder: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(folder).map_err(|e| {
        Error::new(
            ErrorCode::StoreIo,
            format!("cannot make the results folder {}: {e}", folder.display()),
        )
    })?;
    let (json, csv) = results_paths(r, folder);
    let text = serde_json::to_vec_pretty(r)
        .map_err(|e| Error::internal(format!("results do not serialise: {e}")))?;
    write_new(&json, &text)?;
    write_new(&csv, to_csv(r).as_bytes())?;
    Ok((json, csv))
}

/// Where [`write_results`] writes a run's results in `folder`: `<kind>-<run id>.json` and
/// `.csv`.
pub fn results_paths(r: &RunResults, folder: &Path) -> (PathBuf, PathBuf) {
    let stem = format!("{}-{}", r.kind.name(), r.run_id.simple());
    (
        folder.join(format!("{stem}.json")),
        folder.join(format!("{stem}.csv")),
    )
}

/// The local users whose items failed in a results file (JSON), to retry only them.
///
/// # Errors
/// [`ErrorCode::StoreIo`] when unreadable; [`ErrorCode::InvalidInput`] when it is not a
/// results file.
pub fn failed_users(json_file: &Path) -> Result<Vec<ObjectGuid>> {
    let text = std::fs::read_to_string(json_file).map_err(|e| {
        Error::new(
            ErrorCode::StoreIo,
            format!("cannot read the results file {}: {e}", json_file.display()),
        )
    })?;
    failed_users_in(&text, &json_file.display().to_string())
}

/// [`failed_users`] of a results file's text (`name` names it in errors).
///
/// # Errors
/// [`ErrorCode::InvalidInput`] for text that is not a results file.
pub fn failed_users_in(text: &str, name: &str) -> Result<Vec<ObjectGuid>> {
    let r: RunResults = serde_json::from_str(text)
        .map_err(|e| Error::invalid_input(format!("{name} is not a results file: {e}")))?;
    let mut out: Vec<ObjectGuid> = r
        .items
        .iter()
        // Failed, and refused before anything was written (no seat left, the user
        // changed since planning): both are worth another plan.
        .filter(|i| matches!(i.outcome, Outcome::Failed | Outcome::Skipped))
        .map(|i| i.local_guid)
        .collect();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ItemResult;

    #[test]
    fn csv_escapes_and_failures_read_back() {
        let g = ObjectGuid::random();
        let r = RunResults {
            run_id: uuid::Uuid::nil(),
            kind: crate::model::RunKind::BulkCreate,
            started_at: time::macros::datetime!(2026-11-26 10:00 UTC),
            finished_at: time::macros::datetime!(2026-11-26 10:01 UTC),
            counts: Default::default(),
            results_file: None,
            results_csv: None,
            items: vec![
                ItemResult {
                    password_source: None,
                    local_user: "o'neil, \"jr\"".into(),
                    local_guid: g,
                    requested_upn: Some("oneil@contoso.com".into()),
                    action: crate::model::ItemAction::CreateAccount,
                    reason: None,
                    outcome: Outcome::Failed,
                    error_code: Some(ErrorCode::AlreadyExists),
                    service_message: Some("Another object with the same value for property userPrincipalName already exists.".into()),
                    recommended_action: Some("Choose another ID.".into()),
                    online_id: None,
                },
                ItemResult {
                    password_source: None,
                    local_user: "ava".into(),
                    local_guid: ObjectGuid::random(),
                    requested_upn: None,
                    action: crate::model::ItemAction::Link,
                    reason: None,
                    outcome: Outcome::Succeeded,
                    error_code: None,
                    service_message: None,
                    recommended_action: None,
                    online_id: None,
                },
            ],
        };
        let csv = to_csv(&r);
        assert!(csv.contains("\"o'neil, \"\"jr\"\"\""));
        // OWASP's CSV injection: a cell a spreadsheet would run is made text.
        for (cell, want) in [
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "\"'\r=1\""),
            ("ann@contoso.com", "ann@contoso.com"),
        ] {
            assert_eq!(csv_field(cell), want, "{cell:?}");
        }
        assert!(csv.contains(",failed,already_exists,"));
        let dir = tempfile::tempdir().expect("tmp");
        let (json, csv_path) = write_results(&r, dir.path()).expect("write");
        assert!(csv_path.exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&json).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(failed_users(&json).expect("read"), vec![g]);
        std::fs::write(dir.path().join("x.json"), "{}").expect("w");
        assert_eq!(
            failed_users(&dir.path().join("x.json")).unwrap_err().code(),
            ErrorCode::InvalidInput
        );
    }
}
