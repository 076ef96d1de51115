//! How the client prints tasks and deliveries: tables and detail views.

use serde_json::Value;
use std::fmt::Write;

/// A JSON value as a cell: strings bare, null as `-`. A recorded value may
/// come from anyone who can reach a hook (a source name from the URL, an
/// event), so every control character in it, line ends and tabs included
/// (which would start a forged row), and the Unicode bidi and format
/// controls (which would reorder what the row shows) are written escaped.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => crate::logging::escape_where(s, |c| c.is_control() || reorders(c)).into_owned(),
        other => other.to_string(),
    }
}

/// The Unicode bidi and format controls that change how a terminal orders
/// or joins the text around them without showing themselves: U+061C,
/// U+200B–U+200F, U+2028–U+202E, U+2060–U+2069, U+FEFF.
pub fn reorders(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// The first 8 characters of an id.
pub fn short_id(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// `2024-05-01T12:00:00.123Z` → `2024-05-01 12:00:00`.
pub fn time(v: &Value) -> String {
    match v.as_str() {
        Some(t) => {
            let t = t.replacen('T', " ", 1);
            let t = t.split('.').next().unwrap_or(&t).trim_end_matches('Z').to_string();
            t
        }
        None => "-".into(),
    }
}

/// Milliseconds for a person: `350ms`, `4.2s`, `3m07s`, `2h05m`.
pub fn duration(v: &Value) -> String {
    let Some(ms) = v.as_u64() else {
        return "-".into();
    };
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// A table: the header row, then one row per item; columns padded to fit.
pub struct Table {
    pub widths: Vec<usize>,
}

impl Table {
    /// Widths that fit `header` and `rows`, each at least `min`.
    pub fn fit(header: &[&str], rows: &[Vec<String>], min: &[usize]) -> Table {
        let widths = (0..header.len())
            .map(|i| {
                let data = rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
                data.max(header[i].len()).max(min.get(i).copied().unwrap_or(0))
            })
            .collect();
        Table { widths }
    }

    /// One row; the last column is not padded.
    pub fn row(&self, cells: &[String]) -> String {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = self.widths[i]);
            }
        }
        out.trim_end().to_string()
    }
}

pub const TASK_HEADER: [&str; 6] = ["ID", "PROGRAM", "STATUS", "EXIT", "CREATED", "DURATION"];

pub fn task_row(t: &Value) -> Vec<String> {
    vec![
        short_id(t["id"].as_str().unwrap_or("")).to_string(),
        cell(&t["program"]),
        cell(&t["status"]),
        cell(&t["exit_code"]),
        time(&t["created_at"]),
        duration(&t["duration_ms"]),
    ]
}

/// The tasks table, header first.
/// In a cluster (some task names a node), a `NODE` column too: the node that
/// runs or ran the task, or the one a `fan_out` task is pinned to.
pub fn tasks_table(tasks: &[Value]) -> String {
    let node = |t: &Value| match &t["node"] {
        Value::Null => t["pinned_node"].clone(),
        n => n.clone(),
    };
    let clustered = tasks.iter().any(|t| !node(t).is_null());
    let mut header: Vec<&str> = TASK_HEADER.to_vec();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let mut row = task_row(t);
            if clustered {
                row.push(cell(&node(t)));
            }
            row
        })
        .collect();
    if clustered {
        header.push("NODE");
    }
    let table = Table::fit(&header, &rows, &[]);
    table_text(&table, &header, &rows)
}

fn table_text(table: &Table, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let _ = writeln!(out, "{}", table.row(&header));
    for r in rows {
        let _ = writeln!(out, "{}", table.row(r));
    }
    out
}

pub const DELIVERY_HEADER: [&str; 7] = ["ID", "SOURCE", "EVENT", "OUTCOME", "STATUS", "RECEIVED", "TASKS"];

pub fn delivery_row(d: &Value) -> Vec<String> {
    let tasks = d["task_ids"].as_array().map_or(0, Vec::len);
    vec![
        short_id(d["id"].as_str().unwrap_or("")).to_string(),
        cell(&d["source"]),
        cell(&d["event"]),
        cell(&d["outcome"]),
        cell(&d["status"]),
        time(&d["received_at"]),
        tasks.to_string(),
    ]
}

const NODE_HEADER: [&str; 8] = [
    "NODE",
    "LABELS",
    "VERSION",
    "STATUS",
    "RUNNING",
    "CLAIMED",
    "HEARTBEAT",
    "URL",
];

/// `hookrunner nodes`: one row per node.
pub fn nodes_table(nodes: &[Value]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let labels: Vec<String> = n["labels"]
                .as_array()
                .map(|a| a.iter().map(cell).collect())
                .unwrap_or_default();
            let status = match (n["status"].as_str(), n["alive"].as_bool()) {
                (Some("alive"), Some(false)) => "lease expired".to_string(),
                (Some(s), _) => s.to_string(),
                _ => "-".into(),
            };
            vec![
                cell(&n["name"]),
                if labels.is_empty() {
                    "-".into()
                } else {
                    labels.join(",")
                },
                cell(&n["version"]),
                status,
                cell(&n["running"]),
                // By the database (tasks running on it now); `-` outside a cluster.
                if n["claimed"].is_null() {
                    "-".into()
                } else {
                    cell(&n["claimed"])
                },
                n["heartbeat_age_ms"]
                    .as_u64()
                    .map_or("-".into(), |ms| format!("{} ago", duration(&Value::from(ms)))),
                cell(&n["url"]),
            ]
        })
        .collect();
    let table = Table::fit(&NODE_HEADER, &rows, &[]);
    table_text(&table, &NODE_HEADER, &rows)
}

pub fn deliveries_table(deliveries: &[Value]) -> String {
    let rows: Vec<Vec<String>> = deliveries.iter().map(delivery_row).collect();
    let table = Table::fit(&DELIVERY_HEADER, &rows, &[]);
    table_text(&table, &DELIVERY_HEADER, &rows)
}

/// `label: value` lines for the fields that are set.
fn fields(out: &mut String, t: &Value, list: &[(&str, &str)]) {
    let width = list.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    for (label, key) in list {
        let v = &t[*key];
        if v.is_null() {
            continue;
        }
        let text = match *key {
            "created_at" | "started_at" | "finished_at" | "received_at" | "next_attempt_at" => time(v),
            "duration_ms" => duration(v),
            _ => cell(v),
        };
        let _ = writeln!(out, "{:<width$} {text}", format!("{label}:"));
    }
}

/// A kept output stream, indented, with a note when its front was cut.
fn stream(out: &mut String, name: &str, text: &Value, truncated: &Value) {
    let Some(text) = text.as_str().filter(|t| !t.is_empty()) else {
        return;
    };
    let cut = if truncated.as_bool() == Some(true) {
        " (the front was cut)"
    } else {
        ""
    };
    let _ = writeln!(out, "{name}{cut}:");
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// A task in detail.
pub fn task_details(t: &Value) -> String {
    let mut out = String::new();
    fields(
        &mut out,
        t,
        &[
            ("task", "id"),
            ("program", "program"),
            ("status", "status"),
            ("exit code", "exit_code"),
            ("error", "error"),
            ("attempt", "attempt"),
            ("source", "source"),
            ("event", "event"),
            ("delivery", "delivery_id"),
            ("created", "created_at"),
            ("started", "started_at"),
            ("finished", "finished_at"),
            ("duration", "duration_ms"),
            ("next attempt", "next_attempt_at"),
            ("concurrency key", "concurrency_key"),
            ("rerun of", "rerun_of"),
            ("node", "node"),
            ("pinned to", "pinned_node"),
        ],
    );
    if let Some(argv) = t["argv"].as_array() {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(out, "argv: [{}]", argv.join(", "));
    }
    if let Some(params) = t["params"].as_object().filter(|p| !p.is_empty()) {
        let _ = writeln!(out, "params:");
        for (k, v) in params {
            let _ = writeln!(out, "  {k} = {v}");
        }
    }
    if let Some(reruns) = t["reruns"].as_array().filter(|r| !r.is_empty()) {
        let ids: Vec<String> = reruns.iter().map(cell).collect();
        let _ = writeln!(out, "reruns: {}", ids.join(", "));
    }
    stream(&mut out, "stdout", &t["stdout"], &t["stdout_truncated"]);
    stream(&mut out, "stderr", &t["stderr"], &t["stderr_truncated"]);
    out
}

/// A delivery record in detail.
pub fn delivery_details(d: &Value) -> String {
    let mut out = String::new();
    fields(
        &mut out,
        d,
        &[
            ("delivery", "id"),
            ("provider id", "delivery_id"),
            ("source", "source"),
            ("event", "event"),
            ("received", "received_at"),
            ("from", "remote_addr"),
            ("outcome", "outcome"),
            ("status", "status"),
            ("reason", "reason"),
            ("body size", "body_size"),
            ("body kept", "body_kept"),
            ("duplicate of", "duplicate_of"),
            ("replay of", "replay_of"),
        ],
    );
    for (label, key) in [("tasks", "task_ids"), ("replays", "replays")] {
        if let Some(ids) = d[key].as_array().filter(|r| !r.is_empty()) {
            let ids: Vec<String> = ids.iter().map(cell).collect();
            let _ = writeln!(out, "{label}: {}", ids.join(", "));
        }
    }
    if let Some(headers) = d["headers"].as_array().filter(|h| !h.is_empty()) {
        let _ = writeln!(out, "headers:");
        for h in headers {
            let _ = writeln!(out, "  {}: {}", cell(&h[0]), cell(&h[1]));
        }
    }
    if let Some(params) = d["params"].as_object().filter(|p| !p.is_empty()) {
        let _ = writeln!(out, "params:");
        for (mapping, values) in params {
            let _ = writeln!(out, "  {mapping}: {values}");
        }
    }
    if let Some(rules) = d["rules"].as_array().filter(|r| !r.is_empty()) {
        let _ = writeln!(out, "rules:");
        for r in rules {
            let condition = r["if"].as_str().map_or("(always)".to_string(), |c| format!("if {c}"));
            let _ = writeln!(
                out,
                "  {} rule {} {condition}: {} → {}",
                cell(&r["mapping"]),
                cell(&r["rule"]),
                cell(&r["result"]),
                cell(&r["program"])
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nodes_table_shows_what_the_database_says_each_node_runs() {
        let text = nodes_table(&[
            json!({"name": "web-1", "labels": ["web"], "version": "0.1.0", "status": "alive", "alive": true,
                   "running": 2, "claimed": 3, "heartbeat_age_ms": 1500, "url": "http://10.0.0.1:9000"}),
            json!({"name": "solo", "labels": [], "version": "0.1.0", "status": "alive", "alive": true, "running": 0}),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(cols(lines[0])[4..6], ["RUNNING", "CLAIMED"]);
        assert_eq!(cols(lines[1])[4..6], ["2", "3"]);
        assert_eq!(cols(lines[2])[4..6], ["0", "-"], "outside a cluster: no claim count");
    }

    #[test]
    fn cells_show_line_ends_and_bidi_controls_escaped() {
        assert_eq!(cell(&json!("evil\r\nFAKE\trow")), r"evil\r\nFAKE\trow");
        assert_eq!(
            cell(&json!("a\u{202e}b\u{2066}c\u{200f}")),
            r"a\u{202e}b\u{2066}c\u{200f}"
        );
        assert_eq!(cell(&json!("push ünïcode")), "push ünïcode");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(duration(&json!(350)), "350ms");
        assert_eq!(duration(&json!(4200)), "4.2s");
        assert_eq!(duration(&json!(187_000)), "3m07s");
        assert_eq!(duration(&json!(7_500_000)), "2h05m");
        assert_eq!(duration(&Value::Null), "-");
        assert_eq!(time(&json!("2024-05-01T12:00:00.123Z")), "2024-05-01 12:00:00");
        assert_eq!(short_id("a1298d7a-5dd2-4983"), "a1298d7a");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn a_tasks_table() {
        let tasks = [
            json!({"id": "a1298d7a-5dd2-4983-a9cf-d8310683cd42", "program": "notify", "status": "succeeded",
                   "exit_code": 0, "created_at": "2024-05-01T12:00:00.123Z", "duration_ms": 1200}),
            json!({"id": "d114d657-d318-4fb3-9dca-4f65f70ed2d9", "program": "deploy-app", "status": "queued",
                   "exit_code": null, "created_at": "2024-05-01T12:00:01.000Z", "duration_ms": null}),
        ];
        assert_eq!(
            tasks_table(&tasks),
            "ID        PROGRAM     STATUS     EXIT  CREATED              DURATION\n\
             a1298d7a  notify      succeeded  0     2024-05-01 12:00:00  1.2s\n\
             d114d657  deploy-app  queued     -     2024-05-01 12:00:01  -\n"
        );
        // In a cluster: the node that ran it, or the one it is pinned to.
        let mut clustered = tasks.clone();
        clustered[0]["node"] = json!("web-1");
        clustered[1]["pinned_node"] = json!("web-2");
        assert_eq!(
            tasks_table(&clustered),
            "ID        PROGRAM     STATUS     EXIT  CREATED              DURATION  NODE\n\
             a1298d7a  notify      succeeded  0     2024-05-01 12:00:00  1.2s      web-1\n\
             d114d657  deploy-app  queued     -     2024-05-01 12:00:01  -         web-2\n"
        );
        assert!(task_details(&clustered[0]).contains("node:"));
    }
}
