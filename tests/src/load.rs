//! Load as a real client makes it, over plain sockets: HTTP/1.1 requests
//! written and answers read by `Content-Length`, so the test's own cost per
//! request stays far below the host's (the typed client's is not). Two
//! shapes: keep-alive connections (many requests each), and a new connection
//! per request (Go's client past its two idle connections).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a load run got back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Answers with any other status.
    pub refused: u64,
    /// Requests that got no answer on a connection the host had accepted:
    /// it was reset or closed early.
    pub broken: u64,
    /// Connections that could not be opened (refused, or the client ran out
    /// of local ports): the client's side, not an answer of the host.
    pub unconnected: u64,
}

/// `host:port` of a base URL `http://host:port`.
pub fn authority(base: &str) -> String {
    base.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

/// Sends `GET path` on `stream` and reads the answer; its status.
fn get(stream: &mut BufReader<TcpStream>, authority: &str, path: &str) -> std::io::Result<u16> {
    // One write: pieces written one by one would wait for delayed ACKs (Nagle).
    stream.get_mut().write_all(format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())?;
    let mut line = String::new();
    if stream.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
    let mut length = 0usize;
    loop {
        line.clear();
        if stream.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(|_| std::io::ErrorKind::InvalidData)?;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(status)
}

type Counts = [AtomicU64; 4];

fn count(tally: &Counts, answer: std::io::Result<u16>) {
    let slot = match answer {
        Ok(status) if (200..300).contains(&status) => 0,
        Ok(_) => 1,
        Err(_) => 2,
    };
    tally[slot].fetch_add(1, Ordering::Relaxed);
}

fn unconnected(tally: &Counts) {
    tally[3].fetch_add(1, Ordering::Relaxed);
}

fn total(tally: &Counts) -> Tally {
    let [ok, refused, broken, unconnected] = tally.each_ref().map(|c| c.load(Ordering::Relaxed));
    Tally { ok, refused, broken, unconnected }
}

fn counts() -> Arc<Counts> {
    Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
}

/// `requests` GETs of `paths` (round robin) over `connections` keep-alive
/// connections; a connection that breaks is opened again.
pub fn keep_alive(base: &str, paths: &[String], requests: u64, connections: usize) -> Tally {
    let authority = authority(base);
    let tally = counts();
    let next = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for _ in 0..connections {
            let (tally, next, authority) = (Arc::clone(&tally), Arc::clone(&next), authority.as_str());
            scope.spawn(move || {
                let mut stream: Option<BufReader<TcpStream>> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return;
                    }
                    if stream.is_none() {
                        match TcpStream::connect(authority) {
                            Ok(s) => stream = Some(BufReader::new(s)),
                            Err(_) => {
                                unconnected(&tally);
                                continue;
                            }
                        }
                    }
                    let connection = stream.as_mut().expect("connected above");
                    let answer = get(connection, authority, &paths[i as usize % paths.len()]);
                    if answer.is_err() {
                        stream = None;
                    }
                    count(&tally, answer);
                }
            });
        }
    });
    total(&tally)
}

/// For `seconds`, `clients` threads each open a new connection per `GET
/// path`, read the answer and close the connection themselves.
pub fn connection_per_request(base: &str, path: &str, clients: usize, seconds: Duration) -> Tally {
    let authority = authority(base);
    let tally = counts();
    let end = Instant::now() + seconds;
    std::thread::scope(|scope| {
        for _ in 0..clients {
            let (tally, authority) = (Arc::clone(&tally), authority.as_str());
            scope.spawn(move || {
                while Instant::now() < end {
                    match TcpStream::connect(authority) {
                        Ok(s) => count(&tally, get(&mut BufReader::new(s), authority, path)),
                        Err(_) => unconnected(&tally),
                    }
                }
            });
        }
    });
    total(&tally)
}
