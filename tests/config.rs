//! `hookrunner check` and config errors: every refusal names the file, line,
//! column and key path, and `serve` refuses to start on a bad config.

mod common;
use common::*;
use std::process::Command;

/// Runs `hookrunner check` on `yaml`; returns (exit code, stdout, stderr).
fn check(yaml: &str) -> (i32, String, String) {
    check_with(yaml, &[])
}

/// [`check`] with more arguments.
fn check_with(yaml: &str, more: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    install_handlers(dir.path());
    std::fs::write(dir.path().join("webhook.yaml"), yaml).unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["check", "--config", "webhook.yaml"])
        .args(more)
        .env_remove("HOOKRUNNER_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_config_is_valid_and_warns_about_default_secrets() {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(format!("{ROOT}/webhook.yaml"))
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok (4 sources"));
    assert!(
        stderr.contains("warning: `sources.github.secret` uses the default value of `${GITHUB_WEBHOOK_SECRET}`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("change-me-github"),
        "a secret value reached the output"
    );

    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(format!("{ROOT}/webhook.yaml"))
        .env("GITHUB_WEBHOOK_SECRET", "real-secret")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("GITHUB_WEBHOOK_SECRET"), "{stderr}");
    assert!(!stderr.contains("real-secret"));
}

#[test]
fn unknown_keys_are_refused_with_line_column_and_path() {
    let (code, _, err) = check("programs:\n  deploy:\n    comand: x\n");
    assert_eq!(code, 2);
    assert!(
        err.starts_with("webhook.yaml:3:5: `programs.deploy`: unknown field `comand`, expected one of `command`"),
        "{err}"
    );
    assert!(err.contains("1 error in webhook.yaml"));
}

#[test]
fn every_error_is_reported_at_once_with_its_place() {
    let yaml = r#"sources:
  gh:
    provider: github
    secret: abc
    allow_ips: [10.0.0.0/33]
  gl:
    provider: gitlab
  x:
    provider: bitbucket-ish
programs:
  deploy:
    command: x
    params: [ref, repo]
mappings:
  gh:
    push:
      params:
        ref: payload.ref
        bad: body.ref
      rules:
        - if: ref ==
          run: deploy-prod
        - if: foo == 1
          run: log-event
        - run: deploy
  nope:
    push:
      rules: []
"#;
    let (code, _, err) = check(yaml);
    assert_eq!(code, 2);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        vec![
            "webhook.yaml:5:5: `sources.gh.allow_ips[0]`: `10.0.0.0/33` is not an IP address or CIDR range",
            "webhook.yaml:6:3: `sources.gl`: provider `gitlab` needs a `token` (the webhook's secret token, sent as `X-Gitlab-Token`)",
            "webhook.yaml:9:5: `sources.x.provider`: unknown provider: expected one of `github`, `gitlab`, `gitea`, `forgejo`, `gogs`, `bitbucket`, `jira`, `slack`, `standard`, `stripe`, `generic`",
            "webhook.yaml:19:9: `mappings.gh.push.params.bad`: invalid param source `body.ref`: expected `payload.<path>`, `headers.<Name>`, `query.<name>`, `headers`, `query`, `payload` or `request.<field>` (`method`, `path`, `remote_addr`, `client_ip`, `body`)",
            "webhook.yaml:21:11: `mappings.gh.push.rules[0].if`: invalid expression: `==` is missing an operand",
            "webhook.yaml:22:11: `mappings.gh.push.rules[0].run`: `deploy-prod` is neither a program in `programs` nor a script `handlers/deploy-prod.*`",
            "webhook.yaml:23:11: `mappings.gh.push.rules[1].if`: expression uses `foo`, which is not a param of this mapping nor one of `source`, `event`, `action`",
            "webhook.yaml:25:11: `mappings.gh.push.rules[2].run`: program `deploy` takes `repo`, which this mapping's `params` does not extract",
            "webhook.yaml:26:3: `mappings.nope`: mappings name source `nope`, which is not in `sources`",
            "9 errors in webhook.yaml",
        ]
    );
}

#[test]
fn environment_variables_missing_defaults_and_secrets() {
    let (code, _, err) = check("sources:\n  gh:\n    provider: github\n    secret: ${HOOKRUNNER_TEST_UNSET_VAR}\n");
    assert_eq!(code, 2);
    assert!(
        err.starts_with(
            "webhook.yaml:4:13: `sources.gh.secret`: environment variable `HOOKRUNNER_TEST_UNSET_VAR` is not set"
        ),
        "{err}"
    );
    let (code, _, err) = check("sources:\n  gh:\n    provider: github\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("`sources.gh`: provider `github` needs a `secret`"),
        "{err}"
    );
    let (code, _, err) = check("sources:\n  ci:\n    provider: generic\n");
    assert_eq!(code, 2);
    assert!(err.contains("provider `generic` needs `auth`"), "{err}");
}

#[test]
fn bad_values_and_duplicates() {
    let (_, _, err) = check("programs:\n  a:\n    command: x\n    timeout: 10 minutes\n");
    assert!(
        err.contains("webhook.yaml:4:14: `programs.a.timeout`: invalid duration `10 minutes`"),
        "{err}"
    );
    // `keep: 0` would still keep the newest record: refused rather than half-honoured.
    let (code, _, err) = check("tasks:\n  keep: 0\ndeliveries:\n  keep: 0\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("webhook.yaml:2:3: `tasks.keep`: must be at least 1"),
        "{err}"
    );
    assert!(
        err.contains("webhook.yaml:4:3: `deliveries.keep`: must be at least 1"),
        "{err}"
    );
    let (_, _, err) = check("server:\n  max_body: 1MB\n");
    assert!(err.contains("`server.max_body`: invalid size `1MB`"), "{err}");
    let (_, _, err) = check("server:\n  listen: somewhere\n");
    assert!(
        err.contains("`server.listen`: `somewhere` is not an address and port"),
        "{err}"
    );
    let (_, _, err) = check("programs:\n  a:\n    command: x\n  a:\n    command: y\n");
    // Shown where the key is written the second time, not where the map starts.
    assert!(err.contains("webhook.yaml:4:3: `programs`: duplicate key `a`"), "{err}");
    let (_, _, err) = check("programs:\n  a:\n    command: x\n    timeout: 5s\n    command: y\n");
    assert!(
        err.contains("webhook.yaml:5:5: `programs.a`: duplicate field `command`"),
        "{err}"
    );
    let (_, _, err) = check("tasks:\n  keep: 5\nprograms: {}\ntasks:\n  keep: 6\n");
    assert!(err.contains("webhook.yaml:4:1: duplicate field `tasks`"), "{err}");
    let (_, _, err) = check("programs:\n  a:\n    command: x\n    params: [ok, ok]\n");
    assert!(
        err.contains("`programs.a.params[1]`: param `ok` is listed twice"),
        "{err}"
    );
    let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
    let yaml = format!("sources:\n  s:\n    provider: generic\n    auth: none\nmappings:\n  s:\n    '*':\n      rules:\n        - if: {deep}\n          run: log-event\n");
    let (code, _, err) = check(&yaml);
    assert_eq!(code, 2);
    assert!(err.contains("nests parentheses deeper than"), "{err}");
    // A condition left blank is refused, not taken as "always".
    for blank in ["if:", "if: ~", "if: \"\""] {
        let yaml = format!("sources:\n  s:\n    provider: generic\n    auth: none\nmappings:\n  s:\n    '*':\n      rules:\n        - {blank}\n          run: log-event\n");
        let (code, _, err) = check(&yaml);
        assert_eq!(code, 2, "{blank}: {err}");
        assert!(
            err.contains(r#"`mappings.s."*".rules[0].if`"#) && err.contains("the expression is empty"),
            "{blank}: {err}"
        );
    }
    // A duration too long for a date is refused at load, not a panic later.
    let (code, _, err) =
        check("programs:\n  a:\n    command: x\n    retry: {attempts: 2, backoff: 6000000d, max_backoff: 6000000d}\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("`programs.a.retry.backoff`: invalid duration `6000000d`: longer than 3650d"),
        "{err}"
    );
    let (_, _, err) = check("sources: [1, 2]\n");
    assert!(
        err.contains("webhook.yaml:1:10: `sources`: invalid type: sequence, expected a map"),
        "{err}"
    );
    let (_, _, err) = check("server: {listen: [unclosed\n");
    assert!(err.starts_with("webhook.yaml:"), "{err}");
}

/// The config file, and a file `${file:...}` names, are read up to 16 MiB:
/// `/dev/zero` is refused at once, not read until memory runs out.
#[test]
fn files_larger_than_16_mib_are_refused_not_read_whole() {
    let limit = "it holds more than 16 MiB, the most hookrunner reads of a config or of a file it names";
    for args in [
        &["check", "--config", "/dev/zero"][..],
        &["tasks", "--config", "/dev/zero"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("HOOKRUNNER_URL")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("/dev/zero: cannot read the config file: {limit}\n")),
            "{err}"
        );
    }
    let (code, _, err) = check("api:\n  tokens: [\"${file:/dev/zero}\"]\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("`api.tokens[0]`: cannot read `/dev/zero`: {limit}")),
        "{err}"
    );
    // So are a TLS listener's certificate and key files.
    let (code, _, err) =
        check("server:\n  listen:\n    - address: 127.0.0.1:0\n      tls: {cert: /dev/zero, key: key.pem}\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "`server.listen[0].tls.cert`: cannot read `/dev/zero`: {limit}"
        )),
        "{err}"
    );
    // 16 MiB itself is read (a comment, as a config might hold).
    let (code, _, err) = check(&format!("#{}\n", "x".repeat((16 << 20) - 2)));
    assert_eq!(code, 0, "{err}");
}

/// A word that is not one of a key's choices is not repeated: a secret is
/// as easily written there by mistake (`auth: <token>`).
#[test]
fn a_wrong_choice_is_not_repeated_in_the_error() {
    let source = |body: &str| format!("sources:\n  s:\n{body}");
    let cases = [
        (
            source("    provider: generic\n    auth: mytoken-LEAK\n"),
            "webhook.yaml:4:11: `sources.s.auth`: unknown auth: expected `none`, or a map with `token`, `hmac` or `basic`",
        ),
        (
            source("    provider: generic\n    auth: {hmac: hmac-LEAK, secret: x, header: X-Sig}\n"),
            "`sources.s.auth.hmac`: unknown hmac algorithm: expected `sha1`, `sha256` or `sha512`",
        ),
        (source("    provider: provider-LEAK\n"), "webhook.yaml:3:5: `sources.s.provider`: unknown provider: expected one of `github`"),
        (
            source("    provider: generic\n    auth: none\n    dedup: dedup-LEAK\n"),
            "`sources.s.dedup`: unknown dedup setting: expected `off` or a map",
        ),
        (
            source("    provider: generic\n    auth: none\n    dedup: {key: key-LEAK}\n"),
            "`sources.s.dedup`: unknown dedup key: expected `delivery_id` or `body_sha256`",
        ),
    ];
    for (yaml, expected) in cases {
        let (code, out, err) = check(&yaml);
        assert_eq!(code, 2, "{yaml}");
        assert!(err.contains(expected), "{yaml}\n{err}");
        assert!(!err.contains("LEAK") && !out.contains("LEAK"), "{err}");
    }
}

/// An exit code no process can exit with is refused where it is written.
#[test]
fn exit_codes_are_0_to_255() {
    let yaml =
        "programs:\n  p:\n    command: /bin/true\n    exit_codes:\n      success: [0, 256]\n      retry: [-1, 75]\n";
    let (code, _, err) = check(yaml);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("webhook.yaml:5:7: `programs.p.exit_codes.success[1]`: `256` is not an exit code: a process exits with 0 to 255"),
        "{err}"
    );
    assert!(
        err.contains("webhook.yaml:6:7: `programs.p.exit_codes.retry[0]`: `-1` is not an exit code: a process exits with 0 to 255"),
        "{err}"
    );
    assert!(err.contains("2 errors in webhook.yaml"), "{err}");
    let (code, _, err) =
        check("programs:\n  p:\n    command: /bin/true\n    exit_codes: {success: [0, 255], retry: [75]}\n");
    assert_eq!(code, 0, "{err}");
}

/// The URLs hookrunner sends requests to are checked as the HTTP client
/// will read them (a host, a valid port), and a callback is tried at least
/// once: `attempts: 0` is refused, not taken as 1.
#[test]
fn callback_and_node_urls_need_a_host_and_callbacks_an_attempt() {
    let callback = |entry: &str| format!("programs:\n  p:\n    command: /bin/true\n    on_finish:\n      - {entry}\n");
    let cases = [
        (callback("{url: \"http://\"}"), "webhook.yaml:5:7: `programs.p.on_finish[0].url`: is not a valid URL: empty host"),
        // The URL parser would take `secret` for the host and show it unmasked.
        (callback("{url: \"http:///secret/abc/def\"}"), "`programs.p.on_finish[0].url`: is not a valid URL: it names no host"),
        (callback("{url: \"https://user:pw@hooks.example:99999/done\"}"), "`programs.p.on_finish[0].url`: is not a valid URL: invalid port number"),
        (callback("{url: \"ftp://hooks.example/\"}"), "`programs.p.on_finish[0].url`: must be an http:// or https:// URL"),
        (callback("{url: \"https://hooks.example/\", attempts: 0}"), "webhook.yaml:5:7: `programs.p.on_finish[0].attempts`: `attempts` counts the first POST too, so it must be at least 1"),
        ("node:\n  url: \"https://:9000\"\n".to_string(), "webhook.yaml:2:3: `node.url`: is not a valid URL: empty host"),
        // The HTTP client reads `\` as `/`: masking would show what follows.
        (callback("{url: 'http://127.0.0.1:9\\services\\T0\\B0\\BSLASHSECRET', attempts: 1}"), "webhook.yaml:5:7: `programs.p.on_finish[0].url`: is not a valid URL: it holds a backslash"),
        ("node:\n  url: 'http://h\\x'\n".to_string(), "webhook.yaml:2:3: `node.url`: is not a valid URL: it holds a backslash"),
        // It drops a tab, which would join `%` and `2F` behind the mask.
        (callback("{url: \"http://h/a%\\t2FTABSECRET\"}"), "webhook.yaml:5:7: `programs.p.on_finish[0].url`: is not a valid URL: it holds white space or a control character"),
    ];
    for (yaml, expected) in cases {
        let (code, _, err) = check(&yaml);
        assert_eq!(code, 2, "{yaml}");
        assert!(err.contains(expected), "{yaml}\n{err}");
        assert!(!err.contains("pw@") && !err.contains("SECRET"), "{err}");
    }
    let (code, _, err) = check(&callback("{url: \"http://[::1]:8080/done?t=1\", attempts: 1}"));
    assert_eq!(code, 0, "{err}");
}

/// A CORS origin names a host a browser could send: one without a host, or
/// with a port no URL can have, is refused.
#[test]
fn a_cors_origin_needs_a_host() {
    let cors = |origin: &str| {
        format!("sources:\n  s:\n    provider: generic\n    auth: none\n    cors:\n      origins: [\"{origin}\"]\n")
    };
    for origin in ["http://:8080", "https://app.example:99999"] {
        let (code, _, err) = check(&cors(origin));
        assert_eq!(code, 2, "{origin}: {err}");
        assert!(
            err.contains(&format!("webhook.yaml:6:7: `sources.s.cors.origins[0]`: `{origin}` is not an origin such as `https://app.example`")),
            "{err}"
        );
    }
    let (code, _, err) = check(&cors("http://[::1]:8080"));
    assert_eq!(code, 0, "{err}");
}

/// An API token no client could send in `Authorization: Bearer` (white
/// space at an end, a control character, a character outside ASCII) is
/// refused at load, without repeating it.
#[test]
fn api_tokens_a_client_could_never_send_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    // `${file:}` drops one newline; a second one stays in the token.
    std::fs::write(&file, "from-a-file\n\n").unwrap();
    let trims = "begins or ends with white space, which the daemon trims from the `Authorization` header it reads, so no client could use this token";
    let control = "holds a control character or one outside ASCII, which the daemon does not read in an `Authorization` header, so no client could use this token";
    let cases = [
        ("' secret-one'", trims),
        ("\"secret-two\\t\"", trims),
        (&format!("\"${{file:{}}}\"", file.display()), trims),
        ("\"secret\\u0007three\"", control),
        ("\"sécret-four\"", control),
    ];
    for (token, why) in cases {
        let (code, _, err) = check(&format!("api:\n  tokens:\n    - {token}\n"));
        assert_eq!(code, 2, "{token}: {err}");
        assert!(
            err.contains(&format!("webhook.yaml:3:5: `api.tokens[0]`: {why}")),
            "{token}: {err}"
        );
        assert!(!err.contains("secret") && !err.contains("from-a-file"), "{err}");
    }
    let (code, _, err) = check("api:\n  tokens: [\"two words\", \"~!@#$$%^&*()_+\"]\n");
    assert_eq!(code, 0, "{err}");
}

/// A condition that reads no variable is the same on every delivery: one
/// that is not a boolean, or fails, is refused at load with its error.
#[test]
fn a_constant_condition_that_cannot_be_evaluated_is_refused() {
    let rules = |cond: &str| {
        format!("sources:\n  s: {{provider: generic, auth: none}}\nmappings:\n  s:\n    \"*\":\n      rules:\n        - if: {cond}\n          run: log-event\n")
    };
    let (code, _, err) = check(&rules("1"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("webhook.yaml:7:11: `mappings.s.\"*\".rules[0].if`: the expression reads no variable and can never be evaluated: expression gave 1 instead of true or false"),
        "{err}"
    );
    let (code, _, err) = check(&rules("'1 + \"a\" == 2'"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`mappings.s.\"*\".rules[0].if`: the expression reads no variable and can never be evaluated: "),
        "{err}"
    );
    for fine in [
        "false",
        "'1 == 1'",
        "'len(\"ab\") == 2'",
        "'event == \"push\" || 1 == 2'",
    ] {
        let (code, _, err) = check(&rules(fine));
        assert_eq!(code, 0, "{fine}: {err}");
    }
}

/// A name of the right characters but longer than 128 is refused as too
/// long, not as having characters it does not have.
#[test]
fn a_name_longer_than_128_is_said_to_be_too_long() {
    let long = |c: &str, n: usize| c.repeat(n);
    let yaml = format!(
        "sources:\n  {}: {{provider: generic, auth: none}}\n  ok: {{provider: generic, auth: none}}\nprograms:\n  {}: {{command: /bin/true}}\n  p: {{command: /bin/true, run_on: [{}]}}\nmappings:\n  ok:\n    \"*\": {{rules: [{{run: {}}}]}}\nnode: {{name: {}}}\n",
        long("team/app", 17),
        long("p", 129),
        long("l", 129),
        long("r", 129),
        long("n", 129),
    );
    let (code, _, err) = check(&yaml);
    assert_eq!(code, 2, "{err}");
    for (what, n) in [
        ("source name", 136),
        ("program name", 129),
        ("label", 129),
        ("node name", 129),
    ] {
        assert!(
            err.contains(&format!(
                "` is not a valid {what}: it is {n} characters long, and the most is 128"
            )),
            "{what}: {err}"
        );
    }
    assert!(err.contains("5 errors in webhook.yaml"), "{err}");
    assert!(!err.contains("use letters"), "{err}");
    // Given with --node-name, as with node.name.
    let (code, _, err) = check_with("", &["--node-name", &long("n", 129)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not a valid node name: it is 129 characters long, and the most is 128"),
        "{err}"
    );
    // 128 is fine.
    let (code, _, err) = check_with("", &["--node-name", &long("n", 128)]);
    assert_eq!(code, 0, "{err}");
}

/// A program with an error of its own is still a program: a rule that runs
/// it gets no second, false error (`neither a program nor a script`).
#[test]
fn a_program_with_errors_is_still_known_to_its_rules() {
    for program in ["p: {command: /bin/true, timeout: 0s}", "\"p q\": {command: /bin/true}"] {
        let name = if program.starts_with('p') { "p" } else { "p q" };
        let yaml = format!(
            "sources:\n  s: {{provider: generic, auth: none}}\nprograms:\n  {program}\nmappings:\n  s:\n    \"*\":\n      rules:\n        - run: {name:?}\n"
        );
        let (code, _, err) = check(&yaml);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("1 error in webhook.yaml"), "{err}");
        assert!(!err.contains("rules[0]"), "{err}");
    }
}

#[test]
fn serve_refuses_a_bad_config_and_the_config_path_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.yaml");
    std::fs::write(&path, "tasks:\n  max_concurrent: 0\n").unwrap();
    let out = Command::new(BIN)
        .env("HOOKRUNNER_CONFIG", &path)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("custom.yaml:2:3: `tasks.max_concurrent`: must be at least 1"),
        "{err}"
    );
    // No subcommand means serve.
    let out = Command::new(BIN).env("HOOKRUNNER_CONFIG", &path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bodies_params_and_program_environment_are_checked_at_load() {
    let source = "sources:\n  s:\n    provider: generic\n    auth: none\n";
    let cases = [
        (
            format!("{source}    bodies: [json, yaml]\n"),
            "webhook.yaml:5:5: `sources.s.bodies[1]`: unknown kind of body `yaml`: expected `json`, `form`, `multipart`, `xml`, `text` or `any`",
        ),
        (format!("{source}    bodies: []\n"), "webhook.yaml:5:5: `sources.s.bodies`: must list at least one kind of body"),
        (
            format!("{source}    content_type: json\n"),
            "webhook.yaml:5:5: `sources.s.content_type`: `json` is not a media type such as `application/json` or `text/plain; charset=utf-8`",
        ),
        (
            format!("{source}mappings:\n  s:\n    '*':\n      parse_json: [request.body]\n"),
            "webhook.yaml:8:7: `mappings.s.\"*\".parse_json[0]`: `request.body` cannot be parsed as JSON: `parse_json` takes `payload.<path>`, `headers.<Name>` or `query.<name>`",
        ),
        (
            format!("{source}mappings:\n  s:\n    '*':\n      params: {{a: request.host}}\n"),
            "`mappings.s.\"*\".params.a`: invalid param source `request.host`",
        ),
        (
            "programs:\n  p:\n    command: x\n    param_env: {HOOK_TASK_ID: a}\n".to_string(),
            "webhook.yaml:4:5: `programs.p.param_env.HOOK_TASK_ID`: `HOOK_TASK_ID` is set by hookrunner itself (write `hook_env: false` to set none of the `HOOK_*` variables)",
        ),
        (
            "programs:\n  p:\n    command: x\n    env: {A: x}\n    param_files: {A: a}\n".to_string(),
            "webhook.yaml:5:5: `programs.p.param_files.A`: variable `A` is set twice (by `env`, `param_env` or `param_files`)",
        ),
        (
            "programs:\n  p:\n    command: x\n    param_env: {\"A=B\": a}\n".to_string(),
            "`programs.p.param_env.A=B`: `A=B` cannot name an environment variable (it is empty or holds `=` or NUL)",
        ),
        (
            "programs:\n  p:\n    command: x\n    param_files: {/tmp/x: a}\n".to_string(),
            "`programs.p.param_files./tmp/x`: `/tmp/x` names the file as well as the variable, so it cannot hold `/` or be `.` or `..`",
        ),
        (
            "programs:\n  p:\n    command: x\n    param_files: {'..': a}\n".to_string(),
            "`..` names the file as well as the variable",
        ),
        (
            "programs:\n  p:\n    command: x\n    param_files: {F: {param: a, gzip: true}}\n".to_string(),
            "unknown field `gzip`, expected `param` or `base64`",
        ),
    ];
    for (yaml, expected) in cases {
        let (code, _, err) = check(&yaml);
        assert_eq!(code, 2, "{yaml}");
        assert!(err.contains(expected), "{yaml}\n{err}");
    }
    // With `hook_env: false`, HOOK_ names are the user's (adnanh's own defaults).
    let (code, _, err) =
        check("programs:\n  p:\n    command: x\n    hook_env: false\n    param_env: {HOOK_head_commit.id: a}\n");
    assert_eq!(code, 0, "{err}");
    // A program's param_env and param_files params must be extracted.
    let (_, _, err) = check(&format!(
        "{source}programs:\n  p:\n    command: x\n    param_files: {{F: {{param: blob, base64: true}}}}\nmappings:\n  s:\n    '*':\n      rules: [{{run: p}}]\n"
    ));
    assert!(
        err.contains("program `p` takes `blob`, which this mapping's `params` does not extract"),
        "{err}"
    );
}

const RUN_ON: &str = "sources:\n  s: {provider: generic, auth: none}\nprograms:\n  dump:\n    command: handlers/log-event.sh\n    run_on: [web]\nmappings:\n  s:\n    \"*\": {rules: [{run: dump}]}\n";

#[test]
fn check_serve_and_reload_agree_about_the_node() {
    // Without a cluster this node must be able to run every program: `check`
    // says so as `serve` does.
    let (code, _, err) = check(RUN_ON);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "webhook.yaml:6:5: `programs.dump.run_on`: program `dump` runs on nodes labelled `web`, and this node"
        ),
        "{err}"
    );
    let bad_name = Command::new(BIN)
        .args(["check", "--config", "/dev/null"])
        .env("HOOKRUNNER_NODE_NAME", "a b")
        .output()
        .unwrap();
    assert_eq!(bad_name.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("`a b` is not a valid node name"));
    // Empty, as a unit file's `Environment=HOOKRUNNER_NODE_NAME=` sets it: not given.
    for env in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("webhook.yaml"), "node: {name: from-the-file}\n").unwrap();
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path()).args(["check", "--config", "webhook.yaml"]);
        if env {
            cmd.env("HOOKRUNNER_NODE_NAME", "");
        } else {
            cmd.args(["--node-name", ""]);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // The labels `serve` would get make it valid, given as a flag too.
    let (code, _, err) = check_with(RUN_ON, &["--node-labels", "eu,web"]);
    assert_eq!(code, 0, "{err}");

    // Started with the node named and labelled from the environment (as
    // CLUSTER.md suggests), the daemon reloads its unchanged file...
    let plain = RUN_ON.replace("    run_on: [web]\n", "");
    let d = Daemon::with(&plain)
        .env("HOOKRUNNER_NODE_NAME", "node-7")
        .env("HOOKRUNNER_NODE_LABELS", "eu")
        .start();
    let r = d.post("/-/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text);
    // ...and refuses a file whose program this node could never run.
    std::fs::write(d.path("webhook.yaml"), RUN_ON).unwrap();
    let r = d.post("/-/reload", &[], b"");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error().contains("program `dump` runs on nodes labelled `web`"),
        "{}",
        r.error()
    );
    // The old config is still in force: the delivery runs.
    let ids = Daemon::task_ids(&d.post_json("/hooks/s", &[], b"{}"));
    assert_eq!(d.wait_task(&ids[0])["status"], "succeeded");
    assert_eq!(d.get("/-/overview").json()["node"], "node-7");
}

#[test]
fn programs_that_cannot_start_are_named_before_a_delivery_finds_out() {
    let program = |body: &str| {
        format!("sources:\n  s: {{provider: generic, auth: none}}\nprograms:\n  a:\n{body}mappings:\n  s:\n    \"*\": {{rules: [{{run: a}}]}}\n")
    };
    let cases = [
        (
            "    command: /nonexistent/cmd\n",
            "program `a`: command `/nonexistent/cmd` does not exist: its tasks will fail to start",
        ),
        (
            "    command: no-such-command-anywhere\n",
            "program `a`: command `no-such-command-anywhere` is not in PATH",
        ),
        (
            "    command: handlers/not-executable.sh\n",
            "handlers/not-executable.sh` is not executable: its tasks will fail to start (chmod +x)",
        ),
        (
            "    command: handlers/log-event.sh\n    working_dir: /nonexistent/dir\n",
            "program `a`: working_dir `/nonexistent/dir` is not a directory",
        ),
    ];
    for (body, warning) in cases {
        let (code, out, err) = check(&program(body));
        assert_eq!(code, 0, "{body}: {err}");
        assert!(out.contains(": ok ("), "{out}");
        assert!(err.contains(warning), "{body}: {err}");
    }
    let (code, _, err) = check(&program("    command: handlers/log-event.sh\n"));
    assert_eq!(code, 0);
    assert!(!err.contains("program `a`"), "{err}");
    // A NUL no process can receive is an error where it is written.
    for (body, place) in [
        ("    command: [\"sh\\0x\"]\n", "`programs.a.command`"),
        (
            "    command: handlers/log-event.sh\n    args: [\"a\\0b\"]\n",
            "`programs.a.args[0]`",
        ),
        (
            "    command: handlers/log-event.sh\n    env: {X: \"a\\0b\"}\n",
            "`programs.a.env.X`",
        ),
    ] {
        let (code, _, err) = check(&program(body));
        assert_eq!(code, 2, "{body}");
        assert!(err.contains(&format!("{place}: contains a NUL byte")), "{body}: {err}");
    }
    // At run time, a missing working directory is named as the cause.
    let d = Daemon::start(&program(
        "    command: handlers/log-event.sh\n    working_dir: /nonexistent/dir\n",
    ));
    let ids = Daemon::task_ids(&d.post_json("/hooks/s", &[], b"{}"));
    let task = d.wait_task(&ids[0]);
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .contains("its working directory `/nonexistent/dir` does not exist"),
        "{task}"
    );
}

/// A secret written where another type belongs (a token where a list is
/// expected, `user:password` where a map is) is not repeated by the error,
/// at load nor at a reload, whose answer and log line a client may read.
#[test]
fn an_error_about_a_value_of_the_wrong_type_does_not_repeat_the_value() {
    for yaml in [
        "api:\n  tokens: apitok-SUPERSECRET\n",
        "sources:\n  a:\n    provider: github\n    secret: [x]\n    secrets: gh-SUPERSECRET\n",
        "sources:\n  a:\n    provider: generic\n    auth:\n      basic: \"user:pw-SUPERSECRET\"\n",
        "state: \"postgres://u:pw-SUPERSECRET@db/x\"\n",
    ] {
        let (code, out, err) = check(yaml);
        assert_eq!(code, 2, "{yaml}: {err}");
        assert!(err.contains("webhook.yaml:"), "{err}");
        assert!(!format!("{out}{err}").contains("SUPERSECRET"), "{yaml}: {out}{err}");
    }
    let mut d = Daemon::start("sources:\n  a: {provider: generic, auth: none}\n");
    std::fs::write(d.path("webhook.yaml"), "api:\n  tokens: apitok-SUPERSECRET\n").unwrap();
    let r = d.post("/-/reload", &[], b"");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("invalid type: a string"), "{}", r.text);
    assert!(!r.text.contains("SUPERSECRET"), "{}", r.text);
    d.terminate();
    assert!(!d.logs().contains("SUPERSECRET"), "{}", d.logs());
}

/// A secret of only white space is refused like an empty one.
#[test]
fn a_secret_of_only_white_space_is_refused() {
    for yaml in [
        "sources:\n  s:\n    provider: slack\n    secret: \"   \"\n",
        "sources:\n  g:\n    provider: github\n    secrets: [ok-secret, \"\\t\"]\n",
    ] {
        let (code, _, err) = check(yaml);
        assert_eq!(code, 2, "{yaml}: {err}");
        assert!(err.contains("is only white space, which is no secret"), "{err}");
    }
}

#[test]
fn a_database_url_with_a_second_at_sign_is_refused_without_showing_it() {
    let (code, _, err) = check("state:\n  postgres: postgres://app:pg@PASS10@127.0.0.1:5432/app\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`state.postgres`: the database URL holds more than one `@`: write an `@` in the user name or password as `%40`"),
        "{err}"
    );
    assert!(!err.contains("PASS10") && !err.contains("pg@"), "{err}");
}
