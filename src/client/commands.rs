//! The client commands. Each returns the exit status, or the error that
//! `cli` prints as `error: <sentence>` (exit status 1).

use super::render::{self, Table};
use super::{Api, Error};
use crate::config::Source;
use crate::delivery::record::path_segment;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Filters of `hookrunner tasks`.
#[derive(Debug, Default, Clone)]
pub struct TaskFilter {
    pub status: Option<String>,
    pub source: Option<String>,
    pub event: Option<String>,
    pub program: Option<String>,
    pub limit: Option<u32>,
}

/// Filters of `hookrunner deliveries`.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub source: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<String>,
    pub limit: Option<u32>,
}

fn query(pairs: &[(&str, &Option<String>)], limit: Option<u32>) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
        .collect();
    if let Some(limit) = limit {
        q.push(("limit".into(), limit.to_string()));
    }
    q
}

/// Prints to stdout; a closed stdout (`| head`) is not an error worth a panic.
/// What the daemon recorded may come from anyone who can reach a hook (an
/// event name, a path), so control characters other than line ends and
/// tabs are shown escaped, never sent to the terminal as they are.
fn out(text: &str) {
    raw_out(&terminal(text));
}

/// Prints bytes as they are: a task's own output (`task --output`).
fn raw_out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        crate::logging::note_stdout_error(&e);
    }
}

/// `text` with control characters (C0 but `\n` and `\t`, DEL, C1) and the
/// Unicode bidi and format controls escaped.
pub fn terminal(text: &str) -> std::borrow::Cow<'_, str> {
    crate::logging::escape_where(text, |c| {
        (c.is_control() && c != '\n' && c != '\t') || crate::client::render::reorders(c)
    })
}

/// JSON text that a terminal shows as it is: serde_json leaves DEL and the
/// C1 controls unescaped in strings; they become `\u00XX` (still JSON).
fn json_text(v: &Value) -> String {
    escape_json_controls(&v.to_string())
}

fn escape_json_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c.is_control() && c != '\n') || crate::client::render::reorders(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn pretty(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    format!("{}\n", escape_json_controls(&text))
}

fn list<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// `hookrunner tasks`.
pub fn tasks(api: &Api, filter: &TaskFilter, follow: bool, json: bool) -> Result<ExitCode, Error> {
    let q = query(
        &[
            ("status", &filter.status),
            ("source", &filter.source),
            ("event", &filter.event),
            ("program", &filter.program),
        ],
        filter.limit,
    );
    let answer = api.get("/tasks", &q)?;
    if !follow {
        out(&if json {
            pretty(&answer)
        } else {
            render::tasks_table(list(&answer, "tasks"))
        });
        return Ok(ExitCode::SUCCESS);
    }
    // Following: oldest first, so that new tasks come at the bottom.
    let table = Table {
        widths: vec![8, 16, 9, 4, 19, 8],
    };
    if !json {
        let header: Vec<String> = render::TASK_HEADER.iter().map(|h| h.to_string()).collect();
        out(&format!("{}\n", table.row(&header)));
    }
    let mut seen: HashMap<String, (Value, Value)> = HashMap::new();
    let mut last_error: Option<String> = None;
    let mut answer: Result<Value, Error> = Ok(answer);
    loop {
        match answer {
            Ok(a) => {
                if last_error.take().is_some() {
                    complain!("reconnected to {}", crate::secret::mask_url(api.base()));
                }
                for t in list(&a, "tasks").iter().rev() {
                    let id = t["id"].as_str().unwrap_or("").to_string();
                    let state = (t["status"].clone(), t["exit_code"].clone());
                    if seen.get(&id) == Some(&state) {
                        continue;
                    }
                    seen.insert(id, state);
                    let line = if json {
                        json_text(t)
                    } else {
                        table.row(&render::task_row(t))
                    };
                    out(&format!("{line}\n"));
                }
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) {
                    complain!("error: {text} (retrying every second)");
                    last_error = Some(text);
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        answer = api.get("/tasks", &q);
    }
}

/// `hookrunner tasks --watch`: one line per task event of `GET /events`
/// (created, started, finished) that passes the filters, until Ctrl-C. A
/// broken stream is resumed after the last event seen.
pub fn watch_tasks(api: &Api, filter: &TaskFilter, json: bool) -> Result<ExitCode, Error> {
    let wanted = |data: &Value| {
        [
            ("status", &filter.status),
            ("source", &filter.source),
            ("program", &filter.program),
        ]
        .iter()
        .all(|(k, v)| v.as_deref().is_none_or(|v| data[*k] == v))
    };
    let table = Table {
        widths: vec![12, 8, 16, 16, 9, 4],
    };
    if !json {
        let header: Vec<String> = ["TIME", "TASK", "PROGRAM", "SOURCE", "STATUS", "EXIT"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        out(&format!("{}\n", table.row(&header)));
    }
    let mut last: Option<String> = None;
    let mut failing: Option<String> = None;
    loop {
        let query: Vec<(String, String)> = last.iter().map(|id| ("since".to_string(), id.clone())).collect();
        let broke = match api.events("/events", &query) {
            Ok(mut events) => {
                if failing.take().is_some() {
                    complain!("reconnected to {}", crate::secret::mask_url(api.base()));
                }
                loop {
                    let event = match events.next_event() {
                        Ok(Some(e)) => e,
                        Ok(None) => break "the event stream ended".to_string(),
                        Err(e) => break format!("the event stream broke off: {e}"),
                    };
                    if event.id.is_some() {
                        last = event.id.clone();
                    }
                    if event.name == "reset" {
                        complain!("(events were missed: the daemon no longer keeps them)");
                        continue;
                    }
                    let at = match event.name.as_str() {
                        "task.created" => "created_at",
                        "task.started" => "started_at",
                        "task.finished" => "finished_at",
                        _ => continue,
                    };
                    let Some(data) = super::parse_json(&event.data) else {
                        continue;
                    };
                    if !wanted(&data) {
                        continue;
                    }
                    let line = if json {
                        let mut line = serde_json::json!({ "id": event.id, "event": event.name });
                        if let (Some(line), Some(data)) = (line.as_object_mut(), data.as_object()) {
                            line.extend(data.clone());
                        }
                        json_text(&line)
                    } else {
                        let text = |k: &str| data[k].as_str().unwrap_or("").to_string();
                        let time = text(at);
                        // `2026-11-24T02:31:56.231Z` → `02:31:56.231`.
                        let time = time.get(11..23).unwrap_or(&time).to_string();
                        let exit = data["exit_code"].as_i64().map(|c| c.to_string()).unwrap_or_default();
                        table.row(&[
                            time,
                            text("task").chars().take(8).collect(),
                            text("program"),
                            text("source"),
                            text("status"),
                            exit,
                        ])
                    };
                    out(&format!("{line}\n"));
                }
            }
            // Refused: retrying would not help (a 503, the daemon
            // stopping or busy, passes: the next daemon is waited for).
            Err(e @ Error::Api { status, .. }) if status != 503 => return Err(e),
            Err(e) => e.to_string(),
        };
        if failing.as_deref() != Some(&broke) {
            complain!("error: {broke} (retrying every second)");
            failing = Some(broke);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Whether `id` could be the front of an id shown in a table.
fn could_be_prefix(id: &str) -> bool {
    !id.is_empty() && id.len() < 36
}

/// A task by id, or by the front of its id when that names exactly one task.
fn find_task(api: &Api, id: &str) -> Result<Value, Error> {
    let first = api.get(&format!("/tasks/{}", path_segment(id)), &[]);
    match first {
        Err(Error::Api { status: 404, .. }) if could_be_prefix(id) => {
            let all = api.get("/tasks", &[("limit".into(), "1000".into())])?;
            let matches: Vec<&Value> = list(&all, "tasks")
                .iter()
                .filter(|t| t["id"].as_str().is_some_and(|t| t.starts_with(id)))
                .collect();
            match matches[..] {
                [one] => Ok(one.clone()),
                [] => first,
                _ => Err(Error::Other(format!(
                    "`{id}` is the start of {} task ids: give more of it",
                    matches.len()
                ))),
            }
        }
        other => other,
    }
}

/// A delivery record by id, or by the front of its id.
fn find_delivery(api: &Api, id: &str) -> Result<Value, Error> {
    let first = api.get(&format!("/deliveries/{}", path_segment(id)), &[]);
    match first {
        Err(Error::Api { status: 404, .. }) if could_be_prefix(id) => {
            let all = api.get("/deliveries", &[("limit".into(), "1000".into())])?;
            let matches: Vec<&Value> = list(&all, "deliveries")
                .iter()
                .filter(|d| d["id"].as_str().is_some_and(|d| d.starts_with(id)))
                .collect();
            match matches[..] {
                [one] => Ok(one.clone()),
                [] => first,
                _ => Err(Error::Other(format!(
                    "`{id}` is the start of {} delivery ids: give more of it",
                    matches.len()
                ))),
            }
        }
        other => other,
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

/// `hookrunner task ID`.
pub fn task(api: &Api, id: &str, json: bool, output: bool) -> Result<ExitCode, Error> {
    let task = find_task(api, id)?;
    if output {
        return follow_output(api, &id_of(&task));
    }
    out(&if json {
        pretty(&task)
    } else {
        render::task_details(&task)
    });
    Ok(ExitCode::SUCCESS)
}

/// Prints a task's output live; the exit status says whether it succeeded.
fn follow_output(api: &Api, id: &str) -> Result<ExitCode, Error> {
    let mut events = api.events(&format!("/tasks/{id}/output"), &[("follow".into(), "1".into())])?;
    let lost = |e: std::io::Error| Error::Other(format!("the output stream of task {id} broke off: {e}"));
    while let Some(event) = events.next_event().map_err(lost)? {
        match event.name.as_str() {
            "stdout" => raw_out(&format!("{}\n", event.data)),
            "stderr" => {
                let mut stderr = std::io::stderr().lock();
                let _ = writeln!(stderr, "{}", event.data);
            }
            "missed" => {
                let n = serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .and_then(|v| v["bytes"].as_u64())
                    .unwrap_or(0);
                complain!("[{n} bytes of output missed]");
            }
            "status" => {
                let status: Value = super::parse_json(&event.data).unwrap_or(Value::Null);
                complain!("{}", terminal(&final_status(id, &status)));
                return Ok(if status["status"] == "succeeded" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            _ => {}
        }
    }
    Err(Error::Other(format!(
        "the output stream of task {id} ended before the task finished"
    )))
}

/// `task a1298d7a succeeded (exit code 0, 1.2s)`.
fn final_status(id: &str, status: &Value) -> String {
    let mut details = Vec::new();
    if let Some(code) = status["exit_code"].as_i64() {
        details.push(format!("exit code {code}"));
    }
    if !status["duration_ms"].is_null() {
        details.push(render::duration(&status["duration_ms"]));
    }
    let error = status["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
    let details = if details.is_empty() {
        String::new()
    } else {
        format!(" ({})", details.join(", "))
    };
    format!(
        "task {} {}{error}{details}",
        render::short_id(id),
        status["status"].as_str().unwrap_or("finished")
    )
}

/// `hookrunner cancel ID`.
pub fn cancel(api: &Api, id: &str, json: bool) -> Result<ExitCode, Error> {
    let id = id_of(&find_task(api, id)?);
    let answer = api.post(&format!("/tasks/{id}/cancel"))?;
    if json {
        out(&pretty(&answer.json));
    } else {
        let status = answer.json["status"].as_str().unwrap_or("");
        if status == "cancelled" {
            out(&format!("task {id} cancelled\n"));
        } else {
            out(&format!(
                "task {id}: cancel requested (it is {status}; it stops within seconds)\n"
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hookrunner rerun ID`.
pub fn rerun(api: &Api, id: &str, json: bool) -> Result<ExitCode, Error> {
    let id = id_of(&find_task(api, id)?);
    let answer = api.post(&format!("/tasks/{id}/rerun"))?;
    if json {
        out(&pretty(&answer.json));
    } else {
        let new = &answer.json;
        out(&format!(
            "task {} {} (rerun of {}, program {})\n",
            id_of(new),
            new["status"].as_str().unwrap_or("queued"),
            render::short_id(&id),
            new["program"].as_str().unwrap_or("?")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `hookrunner deliveries`.
pub fn deliveries(api: &Api, filter: &DeliveryFilter, json: bool) -> Result<ExitCode, Error> {
    let q = query(
        &[
            ("source", &filter.source),
            ("event", &filter.event),
            ("outcome", &filter.outcome),
        ],
        filter.limit,
    );
    let answer = api.get("/deliveries", &q)?;
    out(&if json {
        pretty(&answer)
    } else {
        render::deliveries_table(list(&answer, "deliveries"))
    });
    Ok(ExitCode::SUCCESS)
}

/// `hookrunner delivery ID`.
pub fn delivery(api: &Api, id: &str, json: bool) -> Result<ExitCode, Error> {
    let record = find_delivery(api, id)?;
    out(&if json {
        pretty(&record)
    } else {
        render::delivery_details(&record)
    });
    Ok(ExitCode::SUCCESS)
}

/// `hookrunner replay ID`.
pub fn replay(api: &Api, id: &str, json: bool) -> Result<ExitCode, Error> {
    let id = id_of(&find_delivery(api, id)?);
    let answer = api.post(&format!("/deliveries/{}/replay", path_segment(&id)))?;
    if json {
        out(&pretty(&answer.json));
        return Ok(ExitCode::SUCCESS);
    }
    let record = answer
        .location
        .as_deref()
        .and_then(|l| l.rsplit('/').next())
        .unwrap_or("?");
    out(&delivery_answer(
        &format!("replayed delivery {id} as {record}"),
        &answer.json,
    ));
    Ok(ExitCode::SUCCESS)
}

/// What a delivery started (a replay's answer).
fn delivery_answer(head: &str, a: &Value) -> String {
    let tasks = list(a, "tasks");
    let mut text = match a["message"].as_str() {
        Some(m) => format!("{head}: {m}\n"),
        None => format!(
            "{head}: {} task{} started\n",
            tasks.len(),
            if tasks.len() == 1 { "" } else { "s" }
        ),
    };
    for t in tasks {
        text.push_str(&format!(
            "  task {} {}\n",
            id_of(t),
            t["program"].as_str().unwrap_or("")
        ));
    }
    text
}

/// What `hookrunner send` sends.
#[derive(Debug, Default, Clone)]
pub struct SendArgs {
    pub event: Option<String>,
    /// `Name: value` headers, added after (and replacing) the signed ones.
    pub headers: Vec<String>,
    pub dry_run: bool,
    pub wait: Option<String>,
    /// Where the daemon serves hooks (`server.prefix`: `/hooks`, or `""`).
    pub prefix: String,
}

/// Parses `Name: value`.
pub fn parse_header(h: &str) -> Result<(String, String), Error> {
    h.split_once(':')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty() && !k.contains(' '))
        .ok_or_else(|| Error::Other(format!("`{h}` is not a header such as `X-Event: push`")))
}

/// The headers and query that make `body` a delivery of `source`: signed as
/// its provider would, with `args.headers` replacing generated ones. Where
/// the source reads its event from a header, a `--header` of that name
/// stands for `--event`. The error is a bad argument (nothing was sent).
pub fn prepare_send(source: &Source, body: &[u8], args: &SendArgs) -> Result<Prepared, String> {
    let mut given = Vec::new();
    for h in &args.headers {
        given.push(parse_header(h).map_err(|e| e.to_string())?);
    }
    let event = args.event.clone().or_else(|| match &source.event {
        crate::mapping::event::EventSpec::Header(name) => given
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone()),
        _ => None,
    });
    let wait = match &args.wait {
        Some(text) => Some(crate::config::parse_duration(text).map_err(|e| format!("`--wait`: {e}"))?),
        None => None,
    };
    let signed = crate::client::sign::sign(source, event.as_deref().unwrap_or(""), body, SystemTime::now())?;
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(signed.headers);
    for (k, v) in given {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(&k));
        headers.push((k, v));
    }
    // A body the source would refuse (its kind, a parse error) is not sent,
    // as `explain` does not judge it: nothing is written for it here either.
    let pairs: crate::headers::HeaderPairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
    crate::intake::parse_body(
        &pairs,
        &bytes::Bytes::copy_from_slice(body),
        &crate::intake::Accepts::of(source),
        &|| std::path::PathBuf::from("<uploads>"),
    )
    .map_err(|e| format!("source `{}` would refuse the payload: {e}", source.name))?;
    Ok(Prepared {
        headers,
        query: signed.query,
        wait,
    })
}

/// What [`prepare_send`] made.
pub struct Prepared {
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    /// `--wait`: the answer may take this long, plus the usual 60 s.
    wait: Option<Duration>,
}

/// `hookrunner send`: posts the delivery [`prepare_send`] made.
pub fn send(api: &Api, source: &Source, body: &[u8], args: &SendArgs, prepared: Prepared) -> Result<ExitCode, Error> {
    let mut q = prepared.query;
    if args.dry_run {
        q.push(("dry_run".into(), "1".into()));
    }
    if let Some(wait) = &args.wait {
        q.push(("wait".into(), wait.clone()));
    }
    let path = format!("{}/{}", args.prefix, path_segment(&source.name));
    let answer = api.post_body(&path, &q, &prepared.headers, body, prepared.wait, args.dry_run)?;
    out(&pretty(&answer.json));
    Ok(ExitCode::SUCCESS)
}

/// A payload file's bytes; `-` reads stdin.
/// A payload larger than `max` bytes (the config's `server.max_body`, which
/// the daemon would refuse) is an error, found without reading it all.
pub fn read_payload(path: &Path, max: usize) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let (reader, name): (Box<dyn Read>, String) = if path == Path::new("-") {
        (Box::new(std::io::stdin()), "the payload from stdin".into())
    } else {
        let file =
            std::fs::File::open(path).map_err(|e| Error::Other(format!("cannot read `{}`: {e}", path.display())))?;
        (Box::new(file), format!("`{}`", path.display()))
    };
    let mut body = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::Other(format!("cannot read {name}: {e}")))?;
    if body.len() > max {
        return Err(Error::Other(format!(
            "{name} is larger than `server.max_body` ({max} bytes), which the daemon refuses"
        )));
    }
    Ok(body)
}

/// `hookrunner nodes`: the nodes of the cluster (or this node alone).
pub fn nodes(api: &Api, json: bool) -> Result<ExitCode, Error> {
    let answer = api.get("/nodes", &[])?;
    if json {
        out(&pretty(&answer));
        return Ok(ExitCode::SUCCESS);
    }
    let nodes = answer["nodes"].as_array().cloned().unwrap_or_default();
    out(&crate::client::render::nodes_table(&nodes));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn final_status_lines() {
        let s = json!({"status": "succeeded", "exit_code": 0, "error": null, "duration_ms": 1200});
        assert_eq!(
            final_status("a1298d7a-5dd2", &s),
            "task a1298d7a succeeded (exit code 0, 1.2s)"
        );
        let s = json!({"status": "timed_out", "exit_code": null, "error": "timed out after 1s", "duration_ms": 1000});
        assert_eq!(
            final_status("a1298d7a-5dd2", &s),
            "task a1298d7a timed_out: timed out after 1s (1.0s)"
        );
    }

    #[test]
    fn headers_and_paths() {
        assert_eq!(parse_header("X-A: b: c").unwrap(), ("X-A".into(), "b: c".into()));
        assert!(parse_header("nocolon").is_err());
        assert_eq!(path_segment("msg_1/2 3"), "msg_1%2F2%203");
    }
}
