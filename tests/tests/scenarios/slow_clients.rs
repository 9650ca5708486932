//! Clients that are slow, many or careless cannot hold the host, and get a
//! clear JSON answer; a data dir and a token that cannot work are refused at
//! start with a message that says why.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use notes_scenarios::Host;
use serde_json::json;

fn connect(host: &Host) -> TcpStream {
    let addr = host.base.strip_prefix("http://").unwrap();
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream
}

/// Everything the host sends until it closes the connection.
fn read_to_close(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let host = Host::builder().args(["--header-read-timeout-ms", "300"]).start();
    let mut stream = connect(&host);
    stream.write_all(b"GET /accounts HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    let started = Instant::now();
    let answer = read_to_close(stream);
    assert!(started.elapsed() < Duration::from_secs(10), "closed after the header timeout, not held");
    assert!(!answer.contains("200 OK"), "the half-sent request was not served: {answer:?}");
    host.get("/healthz").expect(200);
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408_in_json() {
    let host = Host::builder().args(["--body-read-timeout-ms", "300"]).start();
    let mut stream = connect(&host);
    stream.write_all(b"POST /accounts HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"name\":").unwrap();
    let answer = read_to_close(stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains(r#"{"error":"the request body did not arrive within 300 ms","requestId":""#), "{answer:?}");
    assert!(host.get("/accounts").expect(200).json().as_array().unwrap().is_empty(), "nothing was created");
}

#[test]
fn an_oversized_upload_announced_with_expect_100_continue_gets_413_in_json_without_continue() {
    let host = Host::builder().args(["--max-body-bytes", "1000"]).start();
    let mut stream = connect(&host);
    stream
        .write_all(b"POST /plugins HTTP/1.1\r\nHost: localhost\r\nContent-Length: 999999999\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_to_close(stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "no 100 Continue first: {answer:?}");
    assert!(answer.contains(r#""error":"the request body is larger than"#), "{answer:?}");
    // A note body over the limit gets the same JSON answer.
    let big = vec![b'x'; 5000];
    let r = host.request_bytes("POST", "/accounts", Some(big), &[]).expect(413);
    assert!(r.error().contains("larger than"), "{}", r.body);
}

#[test]
fn at_the_connection_cap_new_connections_wait_and_are_served_when_one_closes() {
    let host = Host::builder().args(["--max-connections", "3"]).start();
    let idle: Vec<TcpStream> = (0..3).map(|_| connect(&host)).collect();
    let waiting = std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let started = Instant::now();
            host.get("/healthz").expect(200);
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(host.log().contains("connection limit reached"), "the log says the cap was reached");
        drop(idle);
        waiting.join().unwrap()
    });
    assert!(waiting >= Duration::from_millis(250), "the fourth connection waited for a free slot ({waiting:?})");
}

#[test]
fn a_data_dir_that_lost_accounts_db_refuses_to_start_and_names_it() {
    let host = Host::start();
    let account = host.create_account(false);
    for i in 0..30 {
        host.create_note(&account, &format!("note {i}"));
    }
    let data = host.stop();
    for file in ["accounts.db", "accounts.db-wal", "accounts.db-shm"] {
        let _ = std::fs::remove_file(data.path.join(file));
    }
    let err = Host::builder().data_dir(&data.path).start_fails();
    assert!(err.contains("missing accounts.db"), "{err}");
    assert!(!data.path.join("accounts.db").exists(), "refusing to start created nothing");
    let err = Host::builder().data_dir(&data.path).args(["--shards", "2"]).start_fails();
    assert!(err.contains("missing accounts.db"), "another shard count is refused the same way: {err}");
}

#[test]
fn a_token_that_could_never_authenticate_is_refused_at_start_and_an_empty_one_is_unset() {
    for bad in [" correct-horse-battery-staple", "correct-horse-battery-staple\n", "correct-horse-batterý-staple"] {
        let err = Host::builder().admin_token(bad).start_fails();
        assert!(err.contains("admin token"), "{bad:?}: {err}");
    }
    let host = Host::builder().admin_token("").start();
    host.get("/accounts").expect(200); // no token: protected mode on loopback
}

#[test]
fn a_host_with_a_tiny_sqlite_cache_still_serves_every_note_and_a_zero_cache_is_refused() {
    let err = Host::builder().args(["--sqlite-cache-mib", "0"]).start_fails();
    assert!(err.contains("--sqlite-cache-mib"), "{err}");
    // 2 MB of notes through a 1 MiB cap: SQLite must drop and re-read pages.
    let host = Host::builder().args(["--sqlite-cache-mib", "1"]).start();
    let account = host.create_account(false);
    let written: Vec<(String, String)> = (0..400)
        .map(|i| {
            let content = format!("{i:05}").repeat(1_000);
            (host.create_note(&account, &content), content)
        })
        .collect();
    let listed = host.get(&format!("/accounts/{account}/notes")).expect(200).json();
    assert_eq!(listed.as_array().unwrap().len(), written.len(), "every note is listed");
    for (id, content) in &written {
        let note = host.get(&format!("/accounts/{account}/notes/{id}")).expect(200).json();
        assert_eq!(note["content"].as_str(), Some(content.as_str()), "note {id} reads back as written");
    }
}

#[test]
fn an_account_name_with_control_characters_is_refused() {
    let host = Host::start();
    for name in ["Ada\u{0}", "A\u{7}da", "Ada\nLovelace"] {
        let r = host.post("/accounts", json!({ "name": name })).expect(400);
        assert!(r.error().contains("control characters"), "{}", r.body);
    }
    assert!(host.get("/accounts").expect(200).json().as_array().unwrap().is_empty());
}

#[test]
fn every_error_body_is_json_even_when_the_framework_refuses_the_request() {
    let host = Host::start();
    // A path segment that is not UTF-8 once decoded: refused by axum's extractor.
    let r = host.get("/accounts/%FF").expect(400);
    assert!(!r.error().is_empty(), "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn one_client_cannot_hold_every_connection() {
    let host = Host::builder().args(["--max-connections-per-client", "2", "--header-read-timeout-ms", "1000"]).start();
    // Two busy connections hold the client's two slots: each sends a request every 200 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keepers: Vec<_> = (0..2)
        .map(|_| {
            let (mut stream, stop) = (connect(&host), stop.clone());
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
                    assert!(stream.read(&mut buffer).unwrap() > 0, "a held connection is served");
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // both accepted
    let mut third = connect(&host);
    let started = Instant::now();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(read_to_close(third).is_empty(), "a third connection from the same client is closed unanswered");
    assert!(started.elapsed() >= Duration::from_millis(900), "after waiting for one of the two to close: {:?}", started.elapsed());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for keeper in keepers {
        keeper.join().unwrap();
    }
    host.get("/healthz").expect(200);
    assert!(host.log().contains("holds 2 open connections, its maximum"), "the log says how many the address holds");
}
