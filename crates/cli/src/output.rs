//! What the API commands (`job`, `schedule`) share: how they print tables,
//! field lists, instants and JSON, how they read payload and duration flags,
//! and how they report a server that cannot be reached.

use std::fmt::Write as _;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use taskwheel_client::ClientError;
use taskwheel_core::{DurationSpec, Timestamp};

/// API errors keep their own text (`not_found: …`); a server that cannot be
/// reached gets told apart from one that said no.
pub(crate) fn explain(e: ClientError, server: &str) -> anyhow::Error {
    match e {
        ClientError::Http(_) => {
            anyhow::Error::new(e).context(format!("cannot reach the taskwheel server at {server}"))
        }
        other => other.into(),
    }
}

pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding the answer as JSON")?;
    println!("{text}");
    Ok(())
}

/// Whole seconds are what a person reads; the JSON output keeps the rest.
pub(crate) fn instant(at: Timestamp) -> String {
    format!("{at:.0}")
}

/// Errors and results can be long and multi-line; a table cell is neither.
pub(crate) fn one_line(text: &str) -> String {
    const LIMIT: usize = 120;
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        text.push('\n');
    }
    text
}

/// One `key: value` per line, the values aligned.
pub(crate) fn fields(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for (key, value) in fields {
        let _ = writeln!(text, "{:<width$} {value}", format!("{key}:"));
    }
    text
}

/// `--payload '{"a":1}'`, or `--payload @file.json`.
pub(crate) fn parse_payload(arg: &str) -> Result<Value, String> {
    let (text, source) = match arg.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
            path,
        ),
        None => (arg.to_string(), "the argument"),
    };
    serde_json::from_str(&text).map_err(|e| format!("{source} is not valid JSON: {e}"))
}

pub(crate) fn parse_duration_spec(arg: &str) -> Result<DurationSpec, String> {
    taskwheel_core::parse_duration(arg).map(DurationSpec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["ID", "STATE"],
            vec![
                vec!["1".into(), "running".into()],
                vec!["100".into(), "failed".into()],
            ],
        );
        assert_eq!(text, "ID   STATE\n1    running\n100  failed\n");
    }

    #[test]
    fn fields_align_values() {
        let text = fields(&[("id", "1".into()), ("queue", "q".into())]);
        assert_eq!(text, "id:    1\nqueue: q\n");
    }

    #[test]
    fn long_cells_are_flattened_and_cut() {
        assert_eq!(one_line("a\n  b"), "a b");
        let long = "x".repeat(200);
        assert_eq!(one_line(&long).chars().count(), 121);
    }

    #[test]
    fn instants_drop_fractions() {
        let at: Timestamp = "2026-05-01T12:00:00.987Z".parse().unwrap();
        assert_eq!(instant(at), "2026-05-01T12:00:00Z");
    }

    #[test]
    fn payloads_are_json_or_a_file() {
        assert_eq!(
            parse_payload(r#"{"a":1}"#).unwrap(),
            serde_json::json!({"a": 1})
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "[1, 2]").unwrap();
        let arg = format!("@{}", file.path().display());
        assert_eq!(parse_payload(&arg).unwrap(), serde_json::json!([1, 2]));
        assert!(
            parse_payload("{nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            parse_payload("@/no/such/file")
                .unwrap_err()
                .starts_with("cannot read")
        );
    }
}
