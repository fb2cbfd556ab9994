//! The live status page at `/` and its icon over real sockets: content types, size, `HEAD`, the headers
//! that keep it self-contained, the key check it starts with, and (when `node` is installed) its
//! formatting functions.

mod support;

use std::process::Command;

use hydrogen_ws::{Config, Hydrogen, Mode, Server};
use serde_json::Value;
use support::RawClient;

const KEY: &str = "s3cret-key";

fn start(mode: Mode) -> Server {
    let config = Config {
        mode,
        key: Some(KEY.to_string()),
        ..support::config()
    };
    Server::start(config, Hydrogen).expect("server starts")
}

fn http(server: &Server, method: &str, target: &str) -> support::HttpResponse {
    let mut c = RawClient::connect(server.local_addr());
    c.send_raw(format!("{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let r = c.read_response().expect("response");
    assert_eq!(r.header("connection"), Some("close"), "{method} {target}");
    r
}

/// The page the server serves at `/`.
fn page() -> String {
    let server = start(Mode::Hydrogen);
    let r = http(&server, "GET", "/?key=s3cret-key");
    server.shutdown();
    assert_eq!(r.status, 200);
    r.body
}

#[test]
fn the_page_is_html_small_and_loads_nothing_from_elsewhere() {
    let server = start(Mode::Hydrogen);
    let r = http(&server, "GET", "/?key=s3cret-key");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(len, r.body.len());
    assert!(len < 30 * 1024, "the page is {len} bytes");

    // Served whole from the binary: no URL of another host, no script, style or image to fetch.
    let body = r.body.to_ascii_lowercase();
    for needle in [
        "http://",
        "https://",
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "<script src",
        "<link rel=\"stylesheet\"",
        "@import",
        "url(",
    ] {
        assert!(!body.contains(needle), "the page contains {needle:?}");
    }
    // The one link: the icon this server answers.
    assert!(r.body.contains("<link rel=\"icon\" href=\"favicon.ico\""));
    // And the browser is told so: nothing but this server, the page never framed, the key in its URL
    // never cached nor sent as a referrer.
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));

    // What it does: checks the key over HTTP, then connects back with the subprotocol and subscribes.
    for needle in [
        "new WebSocket(url, \"hydrogen\")",
        "fetch(statusUrl",
        "\"key refused\"",
        ": open this page with ?key=...",
        "type: \"subscribe\", topic: \"status\"",
        "prefers-color-scheme: dark",
        "<meta name=\"viewport\"",
        "role=\"img\"",
        "scope=\"row\"",
        "<details>",
    ] {
        assert!(r.body.contains(needle), "the page lacks {needle:?}");
    }
    server.shutdown();
}

#[test]
fn the_favicon_is_answered_so_the_console_stays_clean() {
    let server = start(Mode::Hydrogen);
    let r = http(&server, "GET", "/favicon.ico");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
    assert!(r.body.starts_with("<svg xmlns="), "{}", r.body);
    assert!(r.body.trim_end().ends_with("</svg>"), "{}", r.body);
    assert!(r.body.len() < 1024);
    assert!(r.header("cache-control").unwrap().starts_with("max-age="));
    server.shutdown();
}

#[test]
fn head_gets_the_heads_of_the_page_and_the_icon() {
    let server = start(Mode::Hydrogen);
    for (target, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/favicon.ico", "image/svg+xml"),
    ] {
        let get = http(&server, "GET", target);
        let head = http(&server, "HEAD", target);
        assert_eq!(head.status, 200, "HEAD {target}");
        assert_eq!(head.header("content-type"), Some(content_type));
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str()),
            "HEAD {target}"
        );
        assert_eq!(head.body, "", "HEAD {target}");
    }
    server.shutdown();
}

#[test]
fn echo_mode_serves_neither_the_page_nor_its_icon() {
    let server = start(Mode::Echo);
    assert_eq!(http(&server, "GET", "/").status, 426);
    assert_eq!(http(&server, "GET", "/favicon.ico").status, 404);
    server.shutdown();
}

/// The page checks its key with `GET /status?key=` before it connects (a failed WebSocket handshake
/// hides its status from a script), then reads these fields from every push.
#[test]
fn the_key_check_and_the_fields_the_page_reads() {
    let server = start(Mode::Hydrogen);
    for target in ["/status", "/status?key=wrong-key-1"] {
        let r = http(&server, "GET", target);
        assert_eq!(r.status, 401, "{target}");
        assert!(
            r.body.contains("key"),
            "the 401 names its reason: {}",
            r.body
        );
    }
    let r = http(&server, "GET", "/status?key=s3cret-key");
    assert_eq!(r.status, 200);
    let doc: Value = serde_json::from_str(&r.body).expect("JSON");
    for (path, number) in [
        ("/uptime_s", true),
        ("/connections/active", true),
        ("/connections/capacity", true),
        ("/connections/total", true),
        ("/connections/pending", true),
        ("/requests/total", true),
        ("/requests/upgrades", true),
        ("/requests/http", true),
        ("/requests/refused", true),
        ("/requests/refused_full", true),
        ("/messages/in", true),
        ("/messages/out", true),
        ("/bytes/in", true),
        ("/bytes/out", true),
        ("/pool/workers", true),
        ("/pool/capacity", true),
        ("/pool/busy", true),
        ("/memory", false),
        ("/limits", false),
        ("/server", false),
        ("/version", false),
        ("/listen", false),
        ("/mode", false),
        ("/shutting_down", false),
    ] {
        let v = doc
            .pointer(path)
            .unwrap_or_else(|| panic!("{path} missing"));
        assert!(!number || v.is_number(), "{path} = {v}");
    }
    for (k, v) in doc["limits"].as_object().expect("limits") {
        // The page formats limits by name: sizes as bytes, timeouts and intervals as durations.
        if k.ends_with("timeout") || k.ends_with("interval") {
            assert!(v.is_null() || v.is_string(), "{k} = {v}");
        } else {
            assert!(v.is_number(), "{k} = {v}");
        }
    }
    server.shutdown();
}

/// The page's formatting functions, run under node if it is installed (skipped otherwise: the project
/// does not install node).
#[test]
fn the_formatting_functions_under_node() {
    let page = page();
    let tag = "<script id=\"format\">";
    let start = page.find(tag).expect("the format block") + tag.len();
    let end = start + page[start..].find("</script>").expect("its end");
    let script = format!(
        "{}\n{}",
        &page[start..end],
        r#"
const cases = [
  [count(1234567), "1,234,567"], [count(0), "0"], [count(null), "–"],
  [bytes(0), "0 B"], [bytes(1023), "1,023 B"], [bytes(2.7 * 1048576), "2.7 MiB"],
  [bytes(300 * 1048576), "300 MiB"], [bytes(1.5 * 2 ** 40), "1.5 TiB"], [bytes(null), "–"],
  [rate(0), "0/s"], [rate(0.5), "0.5/s"], [rate(12.34), "12.3/s"], [rate(4321.2), "4,321/s"],
  [byteRate(1536), "1.5 KiB/s"], [rate(null), "–"],
  [duration(0.25), "250 ms"], [duration(3.86), "3.8 s"], [duration(59.9), "59 s"],
  [duration(192), "3 min 12 s"], [duration(3 * 3600 + 12 * 60 + 5), "3 h 12 min"],
  [duration(3600), "1 h"], [duration(2 * 86400 + 3 * 3600), "2 d 3 h"],
  [limitDuration("5s"), "5 s"], [limitDuration("500ms"), "500 ms"], [limitDuration("1500ms"), "1.5 s"],
  [limitDuration("90s"), "1 min 30 s"], [limitDuration(null), "off"],
];
let bad = 0;
for (const [got, want] of cases) if (got !== want) { console.log("got " + JSON.stringify(got) + ", want " + JSON.stringify(want)); bad++; }
console.log(cases.length + " cases, " + bad + " wrong");
process.exitCode = bad ? 1 : 0;
"#
    );
    let out = match Command::new("node")
        .arg("-e")
        .arg(&script)
        .env("LC_ALL", "en_US.UTF-8")
        .env("LANG", "en_US.UTF-8")
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: node could not be run ({e})");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 wrong"), "{stdout}");
}

/// A real browser opens the page, whose WebSocket offers permessage-deflate: the server agrees, sends
/// the status compressed, and the browser shows it. Run under headless Chromium if it is installed
/// (skipped otherwise: the project does not install a browser).
#[test]
fn a_browser_on_the_page_agrees_to_permessage_deflate() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("skipped: no chromium on PATH");
        return;
    };
    let server = start(Mode::Hydrogen);
    let profile = std::env::temp_dir().join(format!("hydrogen-ws-chromium-{}", std::process::id()));
    let url = format!("http://{}/?key={KEY}", server.local_addr());
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium starts");
    // With a virtual time budget, Chromium prints the page as it stands and exits by itself.
    let exited = support::wait_until(std::time::Duration::from_secs(60), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let _ = child.kill();
    let out = child.wait_with_output().expect("chromium's output");
    let _ = std::fs::remove_dir_all(&profile);
    let s = server.handle().stats();
    server.shutdown();
    assert!(exited, "chromium did not finish");
    assert!(s.deflate_connections >= 1, "no deflate connection: {s:?}");
    assert!(s.deflated_messages >= 1, "no compressed message: {s:?}");
    assert!(s.deflated_bytes_wire < s.deflated_bytes_raw, "{s:?}");
    // The page's two requests (status, subscribe) came in, compressed by the browser and inflated
    // here, and were answered; a status message the browser could not inflate would have failed its
    // connection, which the page reports in its alert line (left empty).
    assert!(s.messages_in >= 2, "{s:?}");
    assert_eq!(s.protocol_errors, 0, "{s:?}");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("id=\"what\" role=\"alert\"></p>"), "{dom}");
}
