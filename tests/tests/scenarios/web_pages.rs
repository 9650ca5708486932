//! A host without an admin token (protected mode: loopback only, the default
//! of `cargo xtask run`) against the web pages its operator's browser opens:
//! a page of another origin, in a real Chromium, cannot press the kill
//! switch or create an account, and a DNS-rebinding page (its own name
//! resolving to 127.0.0.1) cannot read anything.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use notes_scenarios::Host;
use notes_scenarios::browser::Browser;

/// Serves `page` to every request on a port of its own: another origin than
/// the host's. Runs until the test process ends.
fn serve_page(page: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let mut stream = reader.into_inner();
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}", page.len());
        }
    });
    // `localhost`, not 127.0.0.1: a name of its own, as an attacker's page has.
    format!("http://localhost:{port}/")
}

#[test]
fn a_page_of_another_origin_cannot_press_the_kill_switch_or_create_an_account() {
    let host = Host::start();
    let migrating = host.create_account(true);
    let before = host.get("/accounts").json().as_array().unwrap().len();
    // What the probe's page did: fetch(…, {mode: "no-cors"}) with a text
    // body, which a browser sends without asking the host first.
    let page = serve_page(format!(
        r#"<!doctype html><p id="done"></p><script>
        (async () => {{
          const sent = [];
          for (const [path, body] of [["/migration/kill-switch", ""], ["/accounts", '{{"name":"Mallory"}}'], ["/migration/rollout", '{{"percent":0}}']]) {{
            try {{
              await fetch("{base}" + path, {{ method: "POST", mode: "no-cors", body, headers: {{ "Content-Type": "text/plain" }} }});
              sent.push("sent " + path);
            }} catch (e) {{ sent.push("failed " + path + ": " + e); }}
          }}
          document.getElementById("done").textContent = sent.join("; ");
        }})();
        </script>"#,
        base = host.base
    ));
    let browser = Browser::open(800, 600);
    browser.goto(&page);
    let sent = browser.wait_text("#done", |t| !t.is_empty());
    assert!(sent.contains("sent /migration/kill-switch"), "the browser sent the requests (opaque answers): {sent}");
    assert!(host.is_migrating(&migrating), "the kill switch did not run");
    let accounts = host.get("/accounts").json();
    assert_eq!(accounts.as_array().unwrap().len(), before, "no account was created: {accounts}");
    assert!(!accounts.to_string().contains("Mallory"));
    // Nothing reached a handler: no flip, no account, no rollout in the audit log.
    let audit = host.get("/audit?kind=kill-switch").json();
    assert_eq!(audit["entries"], serde_json::json!([]), "{audit}");
}

/// One raw request with exactly this `Host` header; the status.
fn status_with_host(base: &str, path: &str, host_header: &str) -> u16 {
    let mut stream = TcpStream::connect(notes_scenarios::load::authority(base)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line")
}

#[test]
fn a_dns_rebinding_page_reads_nothing_but_loopback_names_are_served() {
    let host = Host::start();
    let account = host.create_account(false);
    let note = host.create_note(&account, "secret");
    for path in ["/accounts".to_owned(), format!("/accounts/{account}/notes/{note}"), "/ui/".to_owned()] {
        assert_eq!(status_with_host(&host.base, &path, "rebind.evil.example:8090"), 403, "{path}");
    }
    let port = host.base.rsplit(':').next().unwrap();
    for name in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "[::1]".to_owned()] {
        assert_eq!(status_with_host(&host.base, "/accounts", &name), 200, "{name}");
    }
    // With an admin token, any name is served (behind a proxy, say): the token guards it.
    let guarded = Host::builder().admin_token("web-pages-admin-token").start();
    assert_eq!(status_with_host(&guarded.base, "/healthz", "notes.example.com"), 200);
    assert_eq!(status_with_host(&guarded.base, "/accounts", "notes.example.com"), 401);
}
