//! The import without a daemon: adnanh's own hooks files (its end-to-end
//! test's templates) translated, and the config checked as YAML; gaps,
//! `--allow-partial`, templates and exit codes.

use super::*;
use serde_yaml::Value;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What one run of the import gave.
struct Run {
    code: u8,
    stdout: String,
    stderr: String,
}

fn args(files: &[&Path]) -> AdnanhArgs {
    AdnanhArgs {
        files: files.iter().map(|p| p.to_path_buf()).collect(),
        output: None,
        allow_partial: false,
        template: false,
        urlprefix: None,
        http_methods: None,
        headers: Vec::new(),
    }
}

fn run(a: &AdnanhArgs) -> Run {
    run_with(a, &|_| None)
}

fn run_with(a: &AdnanhArgs, env: &dyn Fn(&str) -> Option<String>) -> Run {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = match adnanh(a, env, &mut stdout, &mut stderr) {
        Ok(c) => c,
        Err(e) => {
            stderr.extend_from_slice(format!("error: {e}\n").as_bytes());
            exit::USAGE
        }
    };
    Run {
        code,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// A hooks file with `text`, in a temp dir.
fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// adnanh's test template rendered as its test renders it.
fn fixture(dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(Path::new(ROOT).join("tests/fixtures/adnanh").join(name)).unwrap();
    file(
        dir,
        name.trim_end_matches(".tmpl"),
        &text.replace("{{ .Hookecho }}", "/opt/hookecho"),
    )
}

fn import_fixture(name: &str) -> (Value, Run) {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(&dir, name);
    let r = run(&args(&[&path]));
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    (
        serde_yaml::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{}", r.stdout)),
        r,
    )
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_sequence().unwrap().iter().map(s).collect()
}

/// The one rule of a hook's mapping.
fn rule<'v>(c: &'v Value, id: &str) -> &'v Value {
    let rules = c["mappings"][id]["*"]["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1, "{id}");
    &rules[0]
}

fn check_the_twenty_hooks(c: &Value, template: &str) {
    let sources = c["sources"].as_mapping().unwrap();
    assert_eq!(sources.len(), 20, "{template}");
    // Every hook: a generic source taking any body, a program without HOOK_* of
    // hookrunner's own, a rule running it.
    for (id, src) in sources {
        let id = s(id);
        assert_eq!(s(&src["provider"]), "generic", "{id}");
        assert_eq!(strs(&src["bodies"]), ["any"], "{id}");
        let program = s(&rule(c, id)["run"]);
        assert_eq!(c["programs"][program]["hook_env"], Value::Bool(false), "{id}");
        assert_eq!(
            s(&c["programs"][program]["command"]).split(' ').next(),
            Some("/opt/hookecho"),
            "{id}"
        );
    }

    // github: the HMAC lifted to auth, the ref check a condition, args and env.
    let g = &c["sources"]["github"];
    assert_eq!(s(&g["auth"]["hmac"]), "sha1");
    assert_eq!(s(&g["auth"]["secret"]), "mysecret");
    assert_eq!(s(&g["auth"]["header"]), "X-Hub-Signature");
    assert_eq!(s(&g["auth"]["prefix"]), "sha1=");
    assert_eq!(strs(&g["methods"]), ["POST"]);
    assert_eq!(g["response"]["no_match"], Value::from(400));
    assert_eq!(s(&g["response"]["no_match_body"]), "Hook rules were not satisfied.");
    assert_eq!(g["response"]["output"], Value::Bool(true));
    assert_eq!(g["response"]["output_on_failure"], Value::Bool(false));
    assert_eq!(g["response"]["failure"], Value::from(500));
    let p = &c["programs"]["github"];
    assert_eq!(s(&p["working_dir"]), "/");
    assert_eq!(strs(&p["args"]), ["{head_commit_id}", "{head_commit_author_email}"]);
    assert_eq!(
        s(&p["param_env"]["HOOK_head_commit.timestamp"]),
        "head_commit_timestamp"
    );
    assert!(p["wait"].is_string());
    let m = &c["mappings"]["github"]["*"];
    assert_eq!(s(&m["params"]["ref"]), "payload.ref");
    assert_eq!(s(&m["params"]["head_commit_id"]), "payload.head_commit.id");
    assert_eq!(
        s(&m["params"]["head_commit_author_email"]),
        "payload.head_commit.author.email"
    );
    assert_eq!(
        s(&m["params"]["head_commit_timestamp"]),
        "payload.head_commit.timestamp"
    );
    assert_eq!(s(&rule(c, "github")["if"]), "ref == \"refs/heads/master\"");

    // The `or` of two secrets: both with soft failures, only the first without.
    assert_eq!(
        strs(&c["sources"]["github-multi-sig"]["auth"]["secrets"]),
        ["mysecretFAIL", "mysecret"]
    );
    assert_eq!(
        s(&c["sources"]["github-multi-sig-fail"]["auth"]["secret"]),
        "mysecretFAIL"
    );
    assert_eq!(s(&rule(c, "github-multi-sig")["if"]), "ref == \"refs/heads/master\"");

    // bitbucket: a form field parsed as JSON, three checks, mismatch 999 → 200.
    let b = &c["sources"]["bitbucket"];
    assert_eq!(b["response"]["no_match"], Value::from(200));
    assert_eq!(b["response"]["status"], Value::from(200));
    assert_eq!(s(&b["response"]["body"]), "success");
    assert!(b["response"]["output"].is_null());
    assert_eq!(
        strs(&b["methods"]),
        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    );
    let bm = &c["mappings"]["bitbucket"]["*"];
    assert_eq!(strs(&bm["parse_json"]), ["payload.payload"]);
    assert_eq!(
        s(&bm["params"]["payload_commits_0_branch"]),
        "payload.payload.commits[0].branch"
    );
    assert_eq!(
        s(&rule(c, "bitbucket")["if"]),
        "payload_canon_url == \"https://bitbucket.org\" && payload_repository_absolute_url == \"/webhook/testing/\" && payload_commits_0_branch == \"master\""
    );
    assert!(c["programs"]["bitbucket"]["wait"].is_null());

    // gitlab: array index in a path; three args.
    assert_eq!(
        s(&c["mappings"]["gitlab"]["*"]["params"]["commits_0_id"]),
        "payload.commits[0].id"
    );
    assert_eq!(
        strs(&c["programs"]["gitlab"]["args"]),
        ["{commits_0_id}", "{user_name}", "{user_email}"]
    );

    // xml: attributes and text, as mxj names them.
    let x = &c["mappings"]["xml"]["*"]["params"];
    assert_eq!(s(&x["app_users_user_0_name"]), "payload.app.users.user[0].-name");
    assert_eq!(s(&x["app_messages_message_text"]), "payload.app.messages.message.#text");

    // txt-raw: the raw body as one argument.
    assert_eq!(s(&c["mappings"]["txt-raw"]["*"]["params"]["body"]), "request.body");
    assert!(rule(c, "txt-raw")["if"].is_null());

    // sendgrid: a body that is a JSON array (adnanh's `root`).
    assert_eq!(
        s(&c["mappings"]["sendgrid"]["*"]["params"]["root_0_event"]),
        "payload.[0].event"
    );
    assert_eq!(s(&rule(c, "sendgrid/dir")["if"]), "root_0_event == \"it worked!\"");
    assert_eq!(s(&rule(c, "sendgrid/dir")["run"]), "sendgrid_dir");

    // plex: a multipart field parsed as JSON.
    assert_eq!(strs(&c["mappings"]["plex"]["*"]["parse_json"]), ["payload.payload"]);
    assert_eq!(s(&rule(c, "plex")["if"]), "payload_event == \"media.play\"");

    // The capture-output family.
    let nd = &c["sources"]["capture-command-output-on-success-not-by-default"]["response"];
    assert_eq!(s(&nd["body"]), "");
    assert!(nd["output"].is_null());
    assert_eq!(
        strs(&c["programs"]["capture-command-output-on-success-not-by-default"]["args"]),
        ["exit=0"]
    );
    assert_eq!(
        c["sources"]["capture-command-output-on-error-yes-with-extra-flag"]["response"]["output_on_failure"],
        Value::Bool(true)
    );

    // request-source: method and remote address.
    let rs = &c["mappings"]["request-source"]["*"]["params"];
    assert_eq!(s(&rs["method"]), "request.method");
    assert_eq!(s(&rs["remote_addr"]), "request.remote_addr");

    // warn-on-space: one file name with a space, as adnanh looks it up.
    assert_eq!(s(&c["programs"]["warn-on-space"]["command"]), "/opt/hookecho foo");
    assert_eq!(strs(&c["programs"]["static-params-ok"]["args"]), ["passed"]);

    // issue-471: a number compared as text, and `or` ignoring a missing param.
    assert_eq!(
        s(&rule(c, "issue-471")["if"]),
        "foo == \"bar\" || str::from(exists) == \"1\""
    );
    assert_eq!(
        s(&rule(c, "issue-471-and")["if"]),
        "foo == \"bar\" && str::from(exists) == \"1\""
    );

    // empty-payload-signature: only a signature, so no condition.
    assert_eq!(
        s(&c["sources"]["empty-payload-signature"]["auth"]["secret"]),
        "mysecret"
    );
    assert!(rule(c, "empty-payload-signature")["if"].is_null());
}

#[test]
fn adnanhs_json_test_file_translates_hook_by_hook() {
    let (c, r) = import_fixture("hooks.json.tmpl");
    check_the_twenty_hooks(&c, "json");
    assert_eq!(s(&c["programs"]["warn-on-space"]["args"][0]), "passed");
    // The notes name the hook and the line.
    assert!(
        r.stderr
            .contains("hooks.json:130: hook `github-multi-sig-fail`: note: without `trigger-signature-soft-failures`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hook `bitbucket`: note: `trigger-rule-mismatch-http-response-code` 999"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("cannot translate"), "{}", r.stderr);
    // The header comment says how it was made.
    assert!(r.stdout.starts_with("# hookrunner config imported from adnanh's hooks"));
    assert!(r.stdout.contains("# adnanh hook `github` ("));
}

#[test]
fn adnanhs_yaml_test_file_gives_the_same_config() {
    let (c, _) = import_fixture("hooks.yaml.tmpl");
    check_the_twenty_hooks(&c, "yaml");
    // The two documented differences of the YAML template.
    assert!(c["programs"]["warn-on-space"]["args"].is_null());
    let (j, _) = import_fixture("hooks.json.tmpl");
    let mut j = j;
    j["programs"]["warn-on-space"].as_mapping_mut().unwrap().remove("args");
    assert_eq!(j["sources"], c["sources"]);
    assert_eq!(j["programs"], c["programs"]);
    assert_eq!(j["mappings"], c["mappings"]);
}

#[test]
fn flags_of_adnanh_change_the_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(&dir, "hooks.json.tmpl");
    let mut a = args(&[&path]);
    a.http_methods = Some("Post ,get".into());
    a.urlprefix = Some("api/v1".into());
    a.headers = vec!["X-Served-By=adnanh".into(), "content-type=text/plain".into()];
    let r = run(&a);
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    let c: Value = serde_yaml::from_str(&r.stdout).unwrap();
    assert_eq!(s(&c["server"]["prefix"]), "/api/v1");
    // Hooks without their own `http-methods` get the global list; `github` keeps its own.
    assert_eq!(strs(&c["sources"]["bitbucket"]["methods"]), ["POST", "GET"]);
    assert_eq!(strs(&c["sources"]["github"]["methods"]), ["POST"]);
    let h = &c["sources"]["gitlab"]["response"]["headers"];
    assert_eq!(s(&h["X-Served-By"]), "adnanh");
    assert_eq!(s(&h["Content-Type"]), "text/plain");
    assert!(r.stdout.contains("served at /api/v1/sendgrid/dir"));
    a.headers = vec!["no-equals".into()];
    assert_eq!(run(&a).code, exit::USAGE);
}

#[test]
fn what_cannot_be_translated_is_listed_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = file(
        &dir,
        "hooks.yaml",
        "- id: scalr\n  execute-command: /bin/true\n  trigger-rule:\n    match: {type: scalr-signature, secret: s}\n\
         - id: not-sig\n  execute-command: /bin/true\n  trigger-rule:\n    and:\n    - match: {type: value, value: main, parameter: {source: payload, name: ref}}\n    - not: {match: {type: payload-hmac-sha256, secret: s, parameter: {source: header, name: X-Sig}}}\n\
         - id: fine\n  execute-command: /bin/true\n\
         - id: onlyempty\n  execute-command: /bin/true\n  http-methods: [\"\"]\n\
         - id: nocmd\n\
         - id: strfile\n  execute-command: /bin/true\n  pass-file-to-command:\n  - {source: string, name: fixed, envname: F}\n\
         - id: \"bad id\"\n  execute-command: /bin/true\n",
    );
    let out = dir.path().join("webhook.yaml");
    let mut a = args(&[&hooks]);
    a.output = Some(out.clone());
    let r = run(&a);
    assert_eq!(r.code, exit::GAPS, "{}", r.stderr);
    assert!(!out.exists());
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains("cannot translate")).collect();
    assert_eq!(lines.len(), 6, "{}", r.stderr);
    assert!(lines[0].starts_with(&format!(
        "{}:1: hook `scalr`: cannot translate: `scalr-signature`",
        hooks.display()
    )));
    assert!(lines[1]
        .contains("hook `not-sig`: cannot translate: a `payload-hmac-sha256` match that must not necessarily hold"));
    assert!(r.stderr.contains("nothing was written"));

    // With --allow-partial the rest is written; a rule with a gap never runs.
    a.allow_partial = true;
    let r = run(&a);
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let c: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(s(&rule(&c, "scalr")["if"]), "false");
    assert_eq!(s(&rule(&c, "not-sig")["if"]), "false");
    assert!(rule(&c, "fine")["if"].is_null());
    assert!(text.contains("# NOT TRANSLATED"));
    assert!(
        text.contains("ref == \"main\""),
        "the translatable part is in the comment:\n{text}"
    );
    // Every gap is a comment in the file, where the hook is or at the top.
    for line in &lines {
        let gap = line.split_once("cannot translate: ").unwrap().1;
        assert!(
            text.contains(&format!("NOT TRANSLATED: {gap}")) || text.contains(gap),
            "{gap}\n{text}"
        );
    }
    assert!(text.contains("# NOT TRANSLATED, left out: hook `bad id`"), "{text}");
    // adnanh answers 405 to every request of a hook whose methods are all
    // empty: nothing runs here either.
    assert_eq!(s(&rule(&c, "onlyempty")["if"]), "false");
    assert_eq!(
        c["mappings"]["nocmd"]["*"]["rules"].as_sequence().map(Vec::len),
        Some(0)
    );
}

#[test]
fn files_adnanh_refuses_are_refused_with_the_place() {
    let dir = tempfile::tempdir().unwrap();
    for (text, wanted) in [
        (
            "- id: a\n  success-http-response-code: \"201\"\n",
            ":2:31: `[0].success-http-response-code`",
        ),
        ("- id: a\n  http-methods: POST\n", ":2:17: `[0].http-methods`"),
        ("[{\"id\": \"a\"\n", "adnanh cannot load this file either"),
        ("", "no hooks were found"),
    ] {
        let p = file(&dir, "hooks.json", text);
        let r = run(&args(&[&p]));
        assert_eq!(r.code, exit::USAGE, "{text}");
        assert!(r.stderr.contains(wanted), "{text}: {}", r.stderr);
    }
    let r = run(&args(&[&dir.path().join("missing.json")]));
    assert_eq!(r.code, exit::USAGE);
    assert!(r.stderr.contains("cannot read"));
    // The same file twice: adnanh would see every id twice.
    let p = file(
        &dir,
        "hooks.json",
        "[{\"id\": \"a\", \"execute-command\": \"/bin/true\"}]",
    );
    let r = run(&args(&[&p, &p]));
    assert_eq!(r.code, exit::USAGE);
    assert!(r.stderr.contains("is given twice"), "{}", r.stderr);
}

#[test]
fn what_is_written_loads_or_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    // A header name no request can carry is read as not found (an empty
    // argument, as adnanh), not a config that fails to load.
    let p = file(
        &dir,
        "hooks.yaml",
        "- id: q\n  execute-command: /bin/true\n  pass-arguments-to-command:\n  - {source: header, name: 'X-A\"b'}\n",
    );
    let r = run(&args(&[&p]));
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("is not a valid header name, so no request carries it"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("args: ['']") || r.stdout.contains("args: [\"\"]"),
        "{}",
        r.stdout
    );
    // A prefix it refuses: the written config would not load.
    let mut a = args(&[&file(&dir, "ok.yaml", "- id: ok\n  execute-command: /bin/true\n")]);
    a.urlprefix = Some("../x y".into());
    let r = run(&a);
    assert_eq!(r.code, exit::GAPS, "{}", r.stderr);
    assert!(r.stderr.contains("`server.prefix`"), "{}", r.stderr);
    // Not even with --allow-partial: a config that does not load would
    // take every hook down.
    a.allow_partial = true;
    let r = run(&a);
    assert_eq!(r.code, exit::GAPS, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("nothing was written"), "{}", r.stderr);
}

#[test]
fn quirks_of_the_format_are_read_as_adnanh_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = file(
        &dir,
        "hooks.yaml",
        "- ID: quirks\n  Execute-Command: run.sh\n  command-working-directory: /srv/app\n\
         \x20 trigger-rule:\n    match: {type: value, value: n, parameter: {source: payload, name: flag}}\n\
         \x20 pass-arguments-to-command:\n  - {source: string, name: 'a {b} $c'}\n  - {source: request, name: path}\n\
         \x20 pass-file-to-command:\n  - {source: payload, name: data.txt, base64decode: yes}\n  - {source: payload, name: g, envname: /tmp/escape}\n\
         \x20 success-http-response-code: 201.0\n  trigger-rules: {}\n",
    );
    let r = run(&args(&[&hooks]));
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    let c: Value = serde_yaml::from_str(&r.stdout).unwrap();
    // `n` is YAML 1.1's false; the key is matched case-insensitively.
    assert_eq!(s(&rule(&c, "quirks")["if"]), "str::from(flag) == \"false\"");
    // A relative command with a working directory: joined, not searched in PATH.
    let p = &c["programs"]["quirks"];
    assert_eq!(s(&p["command"]), "/srv/app/run.sh");
    // Fixed text is escaped for templates and `${}`; an unknown request value is an empty argument.
    assert_eq!(strs(&p["args"]), ["a {{b}} $$c", ""]);
    assert_eq!(s(&p["param_files"]["HOOK_DATA.TXT"]["param"]), "data_txt");
    assert_eq!(p["param_files"]["HOOK_DATA.TXT"]["base64"], Value::Bool(true));
    // A file name with `/` (Go's CreateTemp refuses it): no file, here either.
    assert_eq!(p["param_files"].as_mapping().map(|m| m.len()), Some(1));
    assert!(r.stderr.contains("file `/tmp/escape`: not a file name"), "{}", r.stderr);
    assert_eq!(c["sources"]["quirks"]["response"]["status"], Value::from(201));
    assert!(
        r.stderr.contains("`trigger-rules` is not an adnanh option"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("source `request` has no `path`"), "{}", r.stderr);
}

#[test]
fn template_values_become_references_not_pasted_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = file(
        &dir,
        "hooks.yaml",
        "- id: deploy\n  execute-command: '{{ getenv \"HOME_OF_IMPORT_TEST\" }}/deploy.sh'\n\
         \x20 response-message: 'hi {{ getenv \"IMPORT_TEST_NAME\" }}'\n\
         \x20 trigger-rule:\n    and:\n    - match:\n        type: payload-hmac-sha256\n        secret: \"{{ getenv \"IMPORT_TEST_SECRET\" | js }}\"\n        parameter: {source: header, name: X-Signature}\n\
         \x20   - match: {type: value, value: main, parameter: {source: payload, name: ref}}\n\
         - id: token\n  execute-command: /bin/true\n  trigger-rule:\n    match: {type: value, value: '{{ credential \"hook-token\" }}', parameter: {source: url, name: token}}\n",
    );
    let mut a = args(&[&hooks]);
    a.template = true;
    let r = run_with(&a, &|k| (k == "IMPORT_TEST_NAME").then(|| "there".to_string()));
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    let c: Value = serde_yaml::from_str(&r.stdout).unwrap();
    assert_eq!(s(&c["sources"]["deploy"]["auth"]["secret"]), "${IMPORT_TEST_SECRET}");
    assert_eq!(
        s(&c["programs"]["deploy"]["command"]),
        "${HOME_OF_IMPORT_TEST:-}/deploy.sh"
    );
    // Where hookrunner expands nothing, the value is pasted, and the user told.
    assert_eq!(s(&c["sources"]["deploy"]["response"]["body"]), "hi there");
    assert!(
        r.stderr
            .contains("`response-message`: `hi {{ getenv \"IMPORT_TEST_NAME\" }}` was evaluated at import time"),
        "{}",
        r.stderr
    );
    // A secret token compared in a rule becomes the source's token auth.
    let t = &c["sources"]["token"]["auth"];
    assert_eq!(s(&t["token"]), "${credential:hook-token}");
    assert_eq!(s(&t["query"]), "token");
    assert!(rule(&c, "token")["if"].is_null());

    // Without --template the braces are text, and the user is told.
    let r = run(&args(&[&hooks]));
    assert!(r.stderr.contains("only with -template"), "{}", r.stderr);
}

/// The config `--template` makes of `text` (file `name`) while `var` is `value`; and the notes.
fn templated(name: &str, text: &str, var: &'static str, value: &'static str) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let hooks = file(&dir, name, text);
    let mut a = args(&[&hooks]);
    a.template = true;
    let r = run_with(&a, &move |k| (k == var).then(|| value.to_string()));
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    (serde_yaml::from_str(&r.stdout).unwrap(), r.stderr)
}

#[test]
fn a_templated_command_is_joined_to_the_working_directory_only_when_relative() {
    let hooks = "- id: tp\n  execute-command: '{{ getenv \"TP_CMD\" }}'\n  command-working-directory: /srv/app\n";
    let command = |value: &'static str| {
        let (c, notes) = templated("hooks.yaml", hooks, "TP_CMD", value);
        (s(&c["programs"]["tp"]["command"]).to_string(), notes)
    };
    let (abs, notes) = command("/opt/tools/deploy.sh");
    assert_eq!(abs, "${TP_CMD:-}");
    assert!(
        notes.contains("is a template that is absolute here, so it was not joined"),
        "{notes}"
    );
    let (rel, notes) = command("deploy.sh");
    assert_eq!(rel, "/srv/app/${TP_CMD:-}");
    assert!(
        notes.contains("is a template that is relative here, so it was joined"),
        "{notes}"
    );
}

#[test]
fn a_js_escaped_value_evaluated_at_import_time_is_unescaped_as_yaml_would() {
    let hooks =
        r#"[{"id": "m", "execute-command": "/bin/true", "response-message": "hello {{ getenv "TP_MSG" | js }}"}]"#;
    let (c, _) = templated("hooks.json", hooks, "TP_MSG", r#"a"b\c"#);
    assert_eq!(s(&c["sources"]["m"]["response"]["body"]), r#"hello a"b\c"#);
}

#[test]
fn what_hookrunner_would_refuse_is_a_gap_or_translated_so_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    // A digits payload name at the top, an env name given twice, and a
    // response header hookrunner owns.
    let hooks = file(
        &dir,
        "hooks.yaml",
        "- id: h\n  execute-command: /bin/true\n  response-headers: [{name: X-Request-Id, value: a}, {name: X-Ok, value: b}]\n\
         \x20 pass-arguments-to-command: [{source: payload, name: '2024'}]\n\
         \x20 pass-environment-to-command: [{source: payload, name: a, envname: DUP}]\n\
         \x20 pass-file-to-command: [{source: payload, name: b, envname: DUP}]\n",
    );
    let r = run(&args(&[&hooks]));
    assert_eq!(r.code, exit::GAPS, "{}", r.stderr);
    assert!(r.stderr.contains("`response-headers` `X-Request-Id`"), "{}", r.stderr);
    assert!(!r.stderr.contains("would not load"), "{}", r.stderr);
    let mut a = args(&[&hooks]);
    a.allow_partial = true;
    let r = run(&a);
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    assert!(r.stderr.contains("the file's path wins"), "{}", r.stderr);
    let c: Value = serde_yaml::from_str(&r.stdout).unwrap();
    assert_eq!(
        c["mappings"]["h"]["*"]["params"]["p_2024"],
        Value::from(r#"payload."2024""#)
    );
    assert!(c["programs"]["h"]["param_env"]["DUP"].is_null(), "{}", r.stdout);
    assert!(!c["programs"]["h"]["param_files"]["DUP"].is_null(), "{}", r.stdout);
    assert_eq!(c["sources"]["h"]["response"]["headers"]["X-Ok"], Value::from("b"));
    assert!(c["sources"]["h"]["response"]["headers"]["X-Request-Id"].is_null());
    // And it loads.
    crate::config::parse(&r.stdout, &dir.path().join("webhook.yaml")).unwrap();
}

#[test]
fn a_literal_token_compared_in_a_rule_becomes_token_auth_and_is_never_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = file(
        &dir,
        "hooks.json",
        r#"[{"id": "secret2", "execute-command": "/bin/true",
             "trigger-rule": {"match": {"type": "value", "value": "tokSECRETimport",
                                        "parameter": {"source": "url", "name": "token"}}}},
            {"id": "hdr", "execute-command": "/bin/true",
             "trigger-rule": {"match": {"type": "value", "value": "hdrSECRET",
                                        "parameter": {"source": "header", "name": "X-Api-Key"}}}},
            {"id": "plain", "execute-command": "/bin/true",
             "trigger-rule": {"match": {"type": "value", "value": "main",
                                        "parameter": {"source": "url", "name": "branch"}}}}]"#,
    );
    let r = run(&args(&[&hooks]));
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    let c: Value = serde_yaml::from_str(&r.stdout).unwrap();
    let t = &c["sources"]["secret2"]["auth"];
    assert_eq!((s(&t["token"]), s(&t["query"])), ("tokSECRETimport", "token"));
    assert!(rule(&c, "secret2")["if"].is_null(), "{}", r.stdout);
    let t = &c["sources"]["hdr"]["auth"];
    assert_eq!((s(&t["token"]), s(&t["header"])), ("hdrSECRET", "X-Api-Key"));
    assert!(rule(&c, "hdr")["if"].is_null(), "{}", r.stdout);
    // Only in the config's auth, where the daemon never shows it.
    assert_eq!(r.stdout.matches("tokSECRETimport").count(), 1, "{}", r.stdout);
    assert!(!r.stderr.contains("SECRET"), "{}", r.stderr);
    // A value that is no credential stays a condition.
    assert!(c["sources"]["plain"]["auth"]["token"].is_null(), "{}", r.stdout);
    assert!(s(&rule(&c, "plain")["if"]).contains("main"), "{}", r.stdout);
}

#[test]
fn hooks_reading_hookrunners_own_url_parameters_or_keeping_a_secret_in_a_condition_are_noted() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = file(
        &dir,
        "hooks.json",
        r#"[{"id": "q", "execute-command": "/bin/true",
             "pass-arguments-to-command": [{"source": "url", "name": "wait"}, {"source": "url", "name": "dry_run"}]},
            {"id": "slack", "execute-command": "/bin/true",
             "trigger-rule": {"match": {"type": "value", "value": "slackTokSECRET",
                                        "parameter": {"source": "payload", "name": "token"}}}},
            {"id": "plain", "execute-command": "/bin/true",
             "pass-arguments-to-command": [{"source": "url", "name": "waiting"}],
             "trigger-rule": {"match": {"type": "value", "value": "main",
                                        "parameter": {"source": "payload", "name": "ref"}}}}]"#,
    );
    let r = run(&args(&[&hooks]));
    assert_eq!(r.code, exit::OK, "{}", r.stderr);
    assert!(r.stderr.contains("reads the URL parameter `wait`"), "{}", r.stderr);
    assert!(r.stderr.contains("reads the URL parameter `dry_run`"), "{}", r.stderr);
    assert!(
        r.stderr.contains("`value` match on payload `token` stays a condition"),
        "{}",
        r.stderr
    );
    // The note names the match, never the value.
    assert!(!r.stderr.contains("SECRET"), "{}", r.stderr);
    // A parameter merely named alike, and a value that is no credential: no note.
    assert_eq!(r.stderr.matches("reads the URL parameter").count(), 2, "{}", r.stderr);
    assert!(!r.stderr.contains("`ref` stays a condition"), "{}", r.stderr);
}

#[test]
fn a_config_written_with_output_is_its_owners_alone_or_keeps_the_permissions_it_had() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let hooks = file(
        &dir,
        "hooks.json",
        r#"[{"id": "gh", "execute-command": "/bin/true",
             "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "s3cret",
                                        "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}}}]"#,
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut a = args(&[&hooks]);
    let new = dir.path().join("new.yaml");
    a.output = Some(new.clone());
    assert_eq!(run(&a).code, exit::OK);
    assert_eq!(mode(&new), 0o600);
    let kept = dir.path().join("kept.yaml");
    std::fs::write(&kept, "old").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    a.output = Some(kept.clone());
    assert_eq!(run(&a).code, exit::OK);
    assert_eq!(mode(&kept), 0o640);
    assert!(std::fs::read_to_string(&kept).unwrap().contains("s3cret"));
}
