//! The console (`/ui`) and the endpoints it added, against the dev environment's Apache Kafka:
//! `POST /pipelines/{name}/validate`, `GET /backups` and `GET /backups/{index}` (the same JSON
//! as `ferry ls --json`), and the pages driven in headless Chromium through chromedriver's
//! WebDriver protocol (raw HTTP: no client crate).

mod common;

use base64::Engine;
use common::worker::{http, Worker};
use ferry_testkit::{env_or_skip, env_required, unique, TestEnv};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "console-test-token";

/// A worker of its own group with the token and the backup locations `backups`.
fn start_worker(env: &TestEnv, port: u16, dir: &Path, backups: &[&Path]) -> Worker {
    let mut args = Vec::new();
    for b in backups {
        args.push("--backup");
        args.push(b.to_str().expect("utf-8 path"));
    }
    Worker::start(
        env,
        &unique("console"),
        port,
        dir,
        &args,
        &[("FERRY_API_TOKEN", TOKEN)],
    )
}

/// The console tests' calls: YAML bodies, with or without the token.
trait Api {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        yaml: Option<&str>,
    ) -> Option<(u16, Value)>;
    fn api(&self, method: &str, path: &str, yaml: Option<&str>) -> (u16, Value);
    fn api_json(&self, method: &str, path: &str, body: &Value) -> (u16, Value);
}

impl Api for Worker {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        yaml: Option<&str>,
    ) -> Option<(u16, Value)> {
        self.request(method, path, token, yaml.map(|y| ("application/yaml", y)))
    }

    fn api(&self, method: &str, path: &str, yaml: Option<&str>) -> (u16, Value) {
        self.call(method, path, Some(TOKEN), yaml)
            .unwrap_or_else(|| panic!("no answer to {method} {path}"))
    }

    fn api_json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let text = body.to_string();
        self.request(method, path, Some(TOKEN), Some(("application/json", &text)))
            .unwrap_or_else(|| panic!("no answer to {method} {path}"))
    }
}

/// Produces `count` records `k<i>`/`v<i>` spread over the topic's partitions.
fn produce(env: &TestEnv, topic: &str, count: u64) {
    common::worker::produce(env, topic, 0, count);
}

fn backup_yaml(name: &str, brokers: &str, topic: &str, dir: &Path, stop: &str) -> String {
    format!(
        "name: {name}\nsource: {{type: kafka, brokers: [\"{brokers}\"], topics: [{topic}], stop: {stop}}}\nsink: {{type: storage, uri: \"file://{}\", roll: {{max_records: 700, max_age: 2s}}, commit_interval: 1s}}\ndelivery: {{checkpoint_interval: 1s}}\n",
        dir.display()
    )
}

/// Takes a snapshot of `topic` into `dir` through the API and waits until it finished.
fn snapshot_through_the_api(w: &Worker, env: &TestEnv, name: &str, topic: &str, dir: &Path) {
    let yaml = backup_yaml(name, &env.kafka, topic, dir, "high_watermark");
    let (code, body) = w.api("PUT", &format!("/pipelines/{name}"), Some(&yaml));
    assert_eq!(code, 201, "{body}");
    w.wait_until(Duration::from_secs(90), "finished the snapshot", |w| {
        w.api("GET", &format!("/pipelines/{name}/status"), None).1["state"] == "FINISHED"
    });
}

/// A pipeline whose sink has a field it does not know, on line 5.
const BAD_YAML: &str = "name: NAME\nsource: {type: kafka, brokers: [\"h:1\"], topics: [x]}\nsink:\n  type: storage\n  urii: file:///tmp/x\n";

#[test]
fn validate_and_backup_endpoints() {
    let Some(env) = env_or_skip() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("console-api");
    common::create_topic(&env, &topic, 3, &[]);
    produce(&env, &topic, 2500);
    let backup = dir.path().join("backup");
    let empty = dir.path().join("nothing-yet");
    let w = start_worker(&env, 31210, dir.path(), &[&backup, &empty]);

    // validate: the checks of PUT, nothing stored.
    let bad = BAD_YAML.replace("NAME", "v1");
    let (code, body) = w.api("POST", "/pipelines/v1/validate", Some(&bad));
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        (body["line"].as_u64(), body["column"].as_u64()),
        (Some(5), Some(3)),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap_or("").contains("urii"),
        "{body}"
    );
    let good = backup_yaml("v1", &env.kafka, &topic, &backup, "never");
    let (code, body) = w.api("POST", "/pipelines/v1/validate", Some(&good));
    assert_eq!((code, &body), (200, &json!({"valid": true})));
    let (code, body) = w.api("POST", "/pipelines/other/validate", Some(&good));
    assert_eq!(code, 400, "a name that differs from the URL: {body}");
    assert_eq!(
        w.api("GET", "/pipelines/v1", None).0,
        404,
        "validate stored it"
    );
    assert_eq!(
        w.call("POST", "/pipelines/v1/validate", None, Some(&good))
            .map(|r| r.0),
        Some(401)
    );

    // backups: the list (queries never shown), a missing location and a bad index.
    let (code, list) = w.api("GET", "/backups", None);
    assert_eq!(code, 200, "{list}");
    assert_eq!(
        list,
        json!([
            {"index": 0, "uri": backup.display().to_string(), "added": false},
            {"index": 1, "uri": empty.display().to_string(), "added": false}
        ])
    );
    let (code, body) = w.api("GET", "/backups/1", None);
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("no Ferry backup"),
        "{body}"
    );
    let (code, body) = w.api("GET", "/backups/7", None);
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("has 2"),
        "{body}"
    );
    let (code, body) = w.api("GET", "/backups/first", None);
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("not a backup index"),
        "{body}"
    );
    assert_eq!(
        w.call("GET", "/backups", None, None).map(|r| r.0),
        Some(401)
    );
    assert_eq!(
        w.call("GET", "/backups/0", None, None).map(|r| r.0),
        Some(401)
    );

    // A backup taken through the API: the same JSON as `ferry ls --json`.
    snapshot_through_the_api(&w, &env, "snap", &topic, &backup);
    let (code, summary) = w.api("GET", "/backups/0", None);
    assert_eq!(code, 200, "{summary}");
    let (out, _) = common::ferry_success(&["ls", "--json", backup.to_str().expect("utf-8")], &[]);
    let ls: Value = serde_json::from_str(&out).expect("ferry ls --json");
    assert_eq!(summary, ls);
    let records: u64 = summary["topics"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["records"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(records, 2500, "{summary}");

    // Verify in the background: progress, then the report of `ferry verify`.
    let (code, run) = w.api("GET", "/backups/0/verify", None);
    assert_eq!((code, &run["state"]), (200, &json!("never")), "{run}");
    let (code, run) = w.api("POST", "/backups/0/verify", None);
    assert_eq!(code, 202, "{run}");
    let start = Instant::now();
    let run = loop {
        let (_, run) = w.api("GET", "/backups/0/verify", None);
        if run["state"] != "running" {
            break run;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "verify never ended: {run}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let segments: u64 = summary["topics"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["segments"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(run["state"], "passed", "{run}");
    assert_eq!(run["report"]["records"], 2500, "{run}");
    assert_eq!(run["report"]["segments"], segments, "{run}");
    assert_eq!(run["progress"]["segments_checked"], segments, "{run}");
    assert_eq!(run["progress"]["segments_total"], segments, "{run}");
    let (code, run) = w.api("POST", "/backups/1/verify", None);
    assert_eq!(code, 202, "{run}");
    w.wait_until(
        Duration::from_secs(30),
        "reported the empty location's verify failed",
        |w| {
            let (_, run) = w.api("GET", "/backups/1/verify", None);
            run["state"] == "failed"
                && run["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("no Ferry backup")
        },
    );
    assert_eq!(w.api("POST", "/backups/9/verify", None).0, 404);
    assert_eq!(
        w.call("POST", "/backups/0/verify", None, None).map(|r| r.0),
        Some(401)
    );

    // The console's files: no token needed, nothing may load from elsewhere.
    for (path, ctype) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = http(w.port, "GET", path, &[], None).expect("answer");
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.headers.contains(&format!("content-type: {ctype}")),
            "{path}: {}",
            r.headers
        );
        assert!(
            r.headers
                .contains("content-security-policy: default-src 'none'"),
            "{path}"
        );
        // The SVG namespace is a name, not an address the page loads.
        let text = r.body.replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !text.contains("https://") && !text.contains("http://"),
            "{path} refers elsewhere"
        );
    }
}

#[test]
fn a_bad_backup_flag_is_named() {
    let out = common::ferry_output(
        &[
            "worker",
            "--brokers",
            "127.0.0.1:1",
            "--group",
            "g",
            "--backup",
            "/var/backups/a",
            "--backup",
            "ftp://host/x",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--backup #2"), "{err}");
}

// ------------------------------------------------------------------ the browser

/// A headless Chromium session through chromedriver (WebDriver over raw HTTP).
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

/// WebDriver's key for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts chromedriver and a session; `None` (the test skips) when Chromium is absent.
    fn start(port: u16) -> Option<Browser> {
        let present = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
            .iter()
            .all(|p| Path::new(p).exists());
        if !present {
            assert!(
                !env_required(),
                "FERRY_REQUIRE_ENV=1 but chromium/chromedriver are missing (scripts/dev-env up installs them)"
            );
            eprintln!("SKIPPED: no /usr/bin/chromium or /usr/bin/chromedriver (apt-get install chromium chromium-driver, or scripts/dev-env up)");
            return None;
        }
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
        };
        let start = Instant::now();
        while http(port, "GET", "/status", &[], None).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--hide-scrollbars"]}}}});
        let v = b.cmd("POST", "/session", caps);
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        Some(b)
    }

    /// One WebDriver command; panics with the driver's message when it fails.
    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let text = body.to_string();
        let payload = (!body.is_null()).then_some(("application/json", text.as_str()));
        let r = http(self.port, method, path, &[], payload)
            .unwrap_or_else(|| panic!("chromedriver did not answer {method} {path}"));
        let v = r.json();
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        v["value"].clone()
    }

    fn session_cmd(&self, method: &str, path: &str, body: Value) -> Value {
        self.cmd(method, &format!("/session/{}{path}", self.session), body)
    }

    fn goto(&self, url: &str) {
        self.session_cmd("POST", "/url", json!({ "url": url }));
    }

    fn find(&self, css: &str) -> String {
        let v = self.session_cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.session_cmd("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Replaces a field's text by typing (keys, as a person would).
    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.session_cmd("POST", &format!("/element/{id}/clear"), json!({}));
        self.session_cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    /// Runs a script in the page and returns its value.
    fn js(&self, script: &str) -> Value {
        self.session_cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Waits until `script` returns something truthy; returns it.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(script);
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the page never showed {what}; its text:\n{}",
                self.js("return document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn resize(&self, width: u32, height: u32) {
        self.session_cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.session_cmd("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 text"))
            .expect("a PNG in base64");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                &[],
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go: `FERRY_CONSOLE_SCREENSHOTS` or the test's temporary folder.
fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("FERRY_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

#[test]
fn the_console_in_a_browser() {
    let Some(env) = env_or_skip() else { return };
    let Some(browser) = Browser::start(31290) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("console-ui");
    common::create_topic(&env, &topic, 3, &[]);
    produce(&env, &topic, 1800);
    let snapshot = dir.path().join("snapshot");
    let w = start_worker(&env, 31211, dir.path(), &[&snapshot]);
    snapshot_through_the_api(&w, &env, "nightly", &topic, &snapshot);
    let live = backup_yaml(
        "orders-backup",
        &env.kafka,
        &topic,
        &dir.path().join("live"),
        "never",
    );
    assert_eq!(w.api("PUT", "/pipelines/orders-backup", Some(&live)).0, 201);
    let shots = screenshot_dir();

    // Without the token the page asks for it and shows nothing else.
    browser.goto(&w.url("/ui"));
    browser.wait_for(
        "the sign-in form",
        "return !document.getElementById('login').hidden",
    );
    let hidden = browser.js("return document.getElementById('pipelines').hidden");
    assert_eq!(hidden, json!(true), "pipelines shown without the token");
    browser.type_into("#token", "wrong");
    browser.click("#login-form button[type=submit]");
    browser.wait_for(
        "that the worker refused a wrong token",
        "return document.getElementById('login-error').textContent.includes('refused')",
    );
    browser.screenshot(&shots.join("console-login.png"));

    // With it, by keyboard (the field has the focus, Enter signs in): both pipelines with
    // their states.
    let focused = browser.js("return document.activeElement.id");
    assert_eq!(focused, json!("token"), "the token field has the focus");
    browser.type_into("#token", &format!("{TOKEN}\u{E007}"));
    let state = |name: &str| {
        format!("const s = document.querySelector('article[data-name=\"{name}\"] .state'); return s && s.textContent")
    };
    browser.wait_for(
        "orders-backup RUNNING",
        &format!("{} === 'RUNNING'", state("orders-backup")),
    );
    browser.wait_for(
        "nightly FINISHED",
        &format!("{} === 'FINISHED'", state("nightly")),
    );
    // Its partitions with their offsets: all read (lag 0) once the backup caught up.
    browser.wait_for(
        "orders-backup's three partitions at lag 0",
        "const rows = [...document.querySelectorAll('article[data-name=\"orders-backup\"] tbody tr[data-topic]')]; \
         return rows.length === 3 && rows.every(r => r.cells[2].textContent === '0')",
    );
    produce(&env, &topic, 3000);
    browser.wait_for(
        "a records/s above 0 in the chart",
        "const t = document.querySelector('article[data-name=\"orders-backup\"] .rate .num').textContent; \
         return parseFloat(t) > 0 && document.querySelector('article[data-name=\"orders-backup\"] polyline')",
    );
    browser.screenshot(&shots.join("console-pipelines.png"));

    // Pause and Resume from the card, as the API sees them.
    browser.click("button[aria-label=\"Pause orders-backup\"]");
    browser.wait_for(
        "orders-backup PAUSED",
        &format!("{} === 'PAUSED'", state("orders-backup")),
    );
    assert_eq!(
        w.api("GET", "/pipelines/orders-backup", None).1["state"],
        "PAUSED"
    );
    browser.click("button[aria-label=\"Resume orders-backup\"]");
    browser.wait_for(
        "orders-backup RUNNING again",
        &format!("{} === 'RUNNING'", state("orders-backup")),
    );
    // Edit loads the pipeline's text as stored.
    browser.click("button[aria-label=\"Edit orders-backup\"]");
    browser.wait_for(
        "the pipeline's text in the editor",
        "return document.getElementById('editor-text').value.startsWith('name: orders-backup')",
    );
    browser.click("#editor-cancel");

    // The editor: a bad pipeline shows its error at its line; nothing is saved.
    browser.click("#new-pipeline");
    browser.type_into("#editor-name", "bad-one");
    browser.type_into("#editor-text", &BAD_YAML.replace("NAME", "bad-one"));
    browser.click("#editor-validate");
    let message = browser.wait_for(
        "the validation error",
        "return document.getElementById('editor-message').textContent",
    );
    let message = message.as_str().unwrap_or("");
    assert!(
        message.starts_with("Line 5, column 3:") && message.contains("urii"),
        "{message}"
    );
    let marked = browser
        .js("return [...document.querySelectorAll('#editor-gutter .bad')].map(e => e.textContent)");
    assert_eq!(marked, json!(["5"]), "the gutter marks line 5");
    browser.click("#editor-save");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        w.api("GET", "/pipelines/bad-one", None).0,
        404,
        "a bad pipeline was saved"
    );
    browser.screenshot(&shots.join("console-editor-error.png"));

    // Delete asks first, then the pipeline is gone.
    browser.click("#editor-cancel");
    browser.click("button[aria-label=\"Delete nightly\"]");
    browser.session_cmd("POST", "/alert/accept", json!({}));
    browser.wait_for(
        "nightly gone",
        "return !document.querySelector('article[data-name=\"nightly\"]')",
    );
    assert_eq!(w.api("GET", "/pipelines/nightly", None).0, 404);

    // The backups page: the snapshot's topic with the records the backup holds.
    browser.goto(&w.url("/ui#backups"));
    let shown = browser.wait_for(
        "the snapshot's topic",
        &format!(
            "const s = document.querySelector('section[data-topic=\"{topic}\"]'); \
             return s && [...s.querySelectorAll('tbody tr')].map(r => Number(r.cells[2].textContent))"
        ),
    );
    let total: u64 = shown
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(shown.as_array().map(Vec::len), Some(3), "{shown}");
    assert_eq!(total, 1800, "{shown}");
    assert_eq!(
        browser.js(&format!(
            "return document.querySelectorAll('section[data-topic=\"{topic}\"] svg rect').length"
        )),
        json!(3),
        "one bar per partition, no gaps"
    );
    browser.click("#verify");
    let verdict = browser.wait_for(
        "the verification's result",
        "const s = document.getElementById('verify-status').textContent; return s.startsWith('Passed') && s",
    );
    assert!(
        verdict.as_str().unwrap_or("").contains("1800 records"),
        "{verdict}"
    );
    browser.screenshot(&shots.join("console-backups.png"));

    // A location added from the page: a mistake is shown, a good one is listed (by the API too).
    browser.type_into("#backup-add-uri", "ftp://nowhere/x");
    browser.click("#backup-add");
    let error = browser.wait_for(
        "the refused location's error",
        "const t = document.getElementById('backup-add-error').textContent; return t.length > 0 && t",
    );
    assert!(
        error
            .as_str()
            .unwrap_or("")
            .starts_with("Cannot add it: uri: "),
        "{error}"
    );
    let added = format!(
        "file://{}",
        dir.path().join("added-from-the-page").display()
    );
    browser.js("document.getElementById('backup-add-uri').value = ''; return true");
    browser.type_into("#backup-add-uri", &added);
    browser.click("#backup-add");
    browser.wait_for(
        "the added location in the list",
        &format!(
            "return [...document.querySelectorAll('#backup-select option')].some(o => o.textContent === {})",
            json!(added)
        ),
    );
    let (_, list) = w.api("GET", "/backups", None);
    assert!(
        list.as_array()
            .is_some_and(|l| l.iter().any(|b| b["uri"] == json!(added))),
        "{list}"
    );
    // A configured location cannot be removed through the API; the added one can, from the
    // page (after a confirmation), and its backup is not touched.
    assert_eq!(w.api("DELETE", "/backups/0", None).0, 409);
    assert_eq!(w.api("DELETE", "/backups/99", None).0, 404);
    let added_index = list
        .as_array()
        .and_then(|l| l.iter().find(|b| b["uri"] == json!(added)))
        .map(|b| {
            assert_eq!(b["added"], json!(true), "{b}");
            b["index"].clone()
        })
        .expect("the added location");
    browser.js(&format!("const s = document.getElementById('backup-select'); s.value = '{added_index}'; s.dispatchEvent(new Event('change')); return true"));
    browser.wait_for(
        "the Remove button of an added location",
        "return !document.getElementById('backup-remove').hidden",
    );
    browser.click("#backup-remove");
    browser.session_cmd("POST", "/alert/accept", json!({}));
    browser.wait_for(
        "the removed location gone from the list",
        &format!(
            "return ![...document.querySelectorAll('#backup-select option')].some(o => o.textContent === {})",
            json!(added)
        ),
    );
    let (_, list) = w.api("GET", "/backups", None);
    assert!(
        list.as_array()
            .is_some_and(|l| !l.iter().any(|b| b["uri"] == json!(added))),
        "{list}"
    );
    browser.js("const s = document.getElementById('backup-select'); s.value = '0'; s.dispatchEvent(new Event('change')); return true");
    assert_eq!(
        browser.js("return document.getElementById('backup-remove').hidden"),
        json!(true),
        "no Remove button for a configured location"
    );
    browser.resize(390, 844);
    browser.screenshot(&shots.join("console-backups-phone.png"));
    browser.goto(&w.url("/ui#pipelines"));
    browser.wait_for(
        "orders-backup",
        &format!("{} === 'RUNNING'", state("orders-backup")),
    );
    browser.screenshot(&shots.join("console-pipelines-phone.png"));
    eprintln!("screenshots in {}", shots.display());
}

/// Records per partition a `ferry restore --dry-run` plan prints for `topic` (its rows of
/// TOPIC, PARTITION, RECORDS, ...).
fn dry_run_counts(out: &str, topic: &str) -> std::collections::BTreeMap<i64, u64> {
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match cols.as_slice() {
                [t, p, n, _, _, _] if *t == topic => Some((p.parse().ok()?, n.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// Records per partition of `topic`, read with kcat.
fn kcat_counts(env: &TestEnv, topic: &str) -> std::collections::BTreeMap<i64, u64> {
    let out = Command::new(&env.kcat)
        .args([
            "-C", "-b", &env.kafka, "-t", topic, "-e", "-q", "-f", "%p\\n",
        ])
        .output()
        .expect("kcat runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = std::collections::BTreeMap::new();
    for p in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(p) = p.trim().parse::<i64>() {
            *counts.entry(p).or_insert(0) += 1;
        }
    }
    counts
}

/// The numbers of a column of the rows of a table, by partition (`data-partition`).
fn column_by_partition(
    browser: &Browser,
    table: &str,
    class: &str,
) -> std::collections::BTreeMap<i64, u64> {
    let rows = browser.js(&format!(
        "return [...document.querySelectorAll('#{table} tbody tr')].map(r => [Number(r.dataset.partition), Number(r.querySelector('.{class}').textContent)])"
    ));
    rows.as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| Some((r[0].as_i64()?, r[1].as_u64()?)))
        .collect()
}

#[test]
fn the_restore_wizard_in_a_browser() {
    let Some(env) = env_or_skip() else { return };
    let Some(browser) = Browser::start(31292) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("console-restore");
    common::create_topic(&env, &topic, 3, &[]);
    // 3 × 200 records a second apart from 2025-12-01T00:00:00Z, each partition its own.
    let base = 1_764_547_200_000_i64;
    for p in 0..3 {
        let msgs: Vec<ferry_testkit::KcatMsg> = (0..200)
            .map(|i| {
                let n = format!("{p}-{i}");
                ferry_testkit::KcatMsg::new(Some(n.as_bytes()), Some(n.as_bytes()))
                    .at(base + (i * 1000) + p * 300)
            })
            .collect();
        ferry_testkit::py_produce_to(
            &env,
            &env.kafka,
            &topic,
            Some(p as i32),
            &msgs,
            "none",
            false,
        );
    }
    let snapshot = dir.path().join("snapshot");
    let w = start_worker(&env, 31213, dir.path(), &[&snapshot]);
    snapshot_through_the_api(&w, &env, "nightly", &topic, &snapshot);
    let shots = screenshot_dir();

    // What `ferry restore --dry-run` plans for a point in time: 00:02:10.5 keeps 131 records
    // of partitions 0 and 1 (stamped .000 and .300) and 130 of partition 2 (.600).
    let until = "2025-12-01T00:02:10.500Z";
    let target = format!("{topic}-restored");
    let (out, _) = common::ferry_success(
        &[
            "restore",
            "--from",
            snapshot.to_str().expect("utf-8"),
            "--brokers",
            &env.kafka,
            "--topic",
            &topic,
            "--rename",
            &format!("{topic}={target}"),
            "--until",
            until,
            "--dry-run",
        ],
        &[],
    );
    let cli = dry_run_counts(&out, &target);
    assert_eq!(cli.len(), 3, "{out}");
    assert!(cli.values().all(|n| *n > 0 && *n < 200), "{out}");
    let planned: u64 = cli.values().sum();

    // The same through the API.
    let request =
        json!({"backup": 0, "topics": [topic], "renames": {&topic: &target}, "until": until});
    let (code, plan) = w.api_json("POST", "/restore/plan", &request);
    assert_eq!(code, 200, "{plan}");
    assert_eq!(plan["total_records"], planned, "{plan}");
    assert_eq!(plan["targets"]["topics"][0]["exists"], false, "{plan}");
    let (code, body) = w.api_json(
        "POST",
        "/restore/plan",
        &json!({"backup": 0, "topics": ["nope"]}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("holds no such topic"),
        "{body}"
    );
    assert_eq!(
        w.request(
            "POST",
            "/restore/plan",
            None,
            Some(("application/json", "{}"))
        )
        .map(|r| r.0),
        Some(401)
    );

    // The wizard, by keyboard where a person would type.
    browser.goto(&w.url("/ui#restore"));
    browser.wait_for(
        "the sign-in form",
        "return !document.getElementById('login').hidden",
    );
    browser.type_into("#token", &format!("{TOKEN}\u{E007}"));
    browser.wait_for(
        "the backup's topic",
        &format!("return document.querySelector('#restore-topics input[type=checkbox][data-topic=\"{topic}\"]')"),
    );
    browser.type_into(&format!("input.rename[data-topic=\"{topic}\"]"), &target);
    browser.click("#restore-pit");
    // The slider moves by keyboard and changes the time…
    let slider = browser.find("#restore-slider");
    browser.session_cmd(
        "POST",
        &format!("/element/{slider}/value"),
        json!({"text": "\u{E012}\u{E012}"}),
    );
    browser.wait_for(
        "the slider's time below the newest record",
        "const v = document.getElementById('restore-until').value; return v && v < '2025-12-01T00:03:19.600Z'",
    );
    // …and the time typed gives the records each partition keeps then: the dry run's.
    browser.type_into("#restore-until", until);
    browser.wait_for(
        "the records kept at that time",
        &format!("return document.getElementById('restore-kept-status').textContent.startsWith('Until {until}: {planned} of 600')"),
    );
    assert_eq!(column_by_partition(&browser, "restore-kept", "kept"), cli);
    browser.screenshot(&shots.join("console-restore-wizard.png"));

    // The target named (the same cluster, as the dry run's --brokers), then the plan before
    // anything runs: the dry run's counts, the target as it is.
    browser.type_into("#restore-target", &env.kafka);
    browser.click("#restore-plan");
    browser.wait_for(
        "the plan",
        "return !document.getElementById('restore-result').hidden && document.querySelectorAll('#restore-partitions tbody tr').length",
    );
    assert_eq!(
        column_by_partition(&browser, "restore-partitions", "records"),
        cli
    );
    let summary = browser.js("return document.getElementById('restore-summary').textContent");
    assert!(
        summary.as_str().unwrap_or("").starts_with(&format!(
            "{planned} record(s) in 3 partition(s) would be restored"
        )),
        "{summary}"
    );
    let note = browser.js(&format!(
        "return document.querySelector('#restore-targets tr[data-topic=\"{target}\"]').textContent"
    ));
    assert!(
        note.as_str()
            .unwrap_or("")
            .contains("new: created with 3 partition(s)"),
        "{note}"
    );
    assert_eq!(
        browser.js("return document.activeElement.id"),
        json!("restore-result-title"),
        "the plan takes the focus"
    );
    let (_, now) = w.api_json("POST", "/restore/progress", &json!({"topics": [&target]}));
    assert_eq!(
        now[&target]["exists"], false,
        "a plan created the target: {now}"
    );
    browser.screenshot(&shots.join("console-restore-plan.png"));

    // Run: a pipeline through the pipeline API, followed to its end.
    browser.click("#restore-run");
    let done = browser.wait_for(
        "the restore finished",
        "const t = document.getElementById('restore-progress-text').textContent; return t.startsWith('Finished') && t",
    );
    assert!(
        done.as_str()
            .unwrap_or("")
            .contains(&format!("{planned} of {planned} records written")),
        "{done}"
    );
    let name = plan["name"].as_str().expect("a name").to_string();
    let shown = browser.js("return document.getElementById('restore-result-title').textContent");
    assert!(
        shown.as_str().unwrap_or("").contains(&name),
        "the same restore as the API's: {shown}"
    );
    assert_eq!(
        w.api("GET", &format!("/pipelines/{name}/status"), None).1["state"],
        "FINISHED"
    );
    assert_eq!(
        kcat_counts(&env, &target),
        cli,
        "the restored topic, read with kcat"
    );
    browser
        .js("document.getElementById('restore-progress-panel').scrollIntoView({block: 'center'})");
    browser.screenshot(&shots.join("console-restore-progress.png"));
    // Its card on the pipelines page: FINISHED, with its last checkpoint.
    browser.goto(&w.url("/ui#pipelines"));
    let line = browser.wait_for(
        "the restore's last checkpoint on its card",
        &format!("const c = document.querySelector('article[data-name=\"{name}\"] .checkpoint'); return c && c.textContent.startsWith('Last checkpoint: 20') && c.textContent"),
    );
    assert!(
        line.as_str()
            .unwrap_or("")
            .contains("offsets of 3 partitions"),
        "{line}"
    );
    browser.goto(&w.url("/ui#restore"));
    browser.wait_for(
        "the wizard again",
        &format!("return document.querySelector('#restore-topics input[data-topic=\"{topic}\"]')"),
    );
    browser.resize(390, 844);
    browser.screenshot(&shots.join("console-restore-phone.png"));
    eprintln!("screenshots in {}", shots.display());
}
