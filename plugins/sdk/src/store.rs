//! Write a **store backend**: a component of the `notes:store` world
//! (`wit/store.wit`), which the host serves in place of a SQLite file or a
//! PostgreSQL database. Implement [`Guest`] and export it:
//!
//! ```ignore
//! use notes_plugin_sdk::store::{Error, Guest, Note, StoreInfo};
//! struct MyStore;
//! impl Guest for MyStore { /* info, get, put, … */ }
//! notes_plugin_sdk::store::export_store_backend!(MyStore);
//! ```
//!
//! A store gets only what the operator grants it: [`config::get`] answers
//! the `--store-config KEY=VALUE` values, and [`http`] (feature `http`)
//! sends requests to the origins allowed with `--store-allow-http`.
//! `docs/plugins.md`, "Writing a store backend", walks through one.

/// The wit-bindgen bindings of the `store-backend` world.
#[allow(clippy::all, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "store-backend",
        path: "wit-store/store.wit",
        pub_export_macro: true,
        export_macro_name: "export_store_backend",
        default_bindings_module: "notes_plugin_sdk::store::bindings",
    });
}

pub use bindings::exports::notes::store::backend::Guest;
pub use bindings::export_store_backend;
pub use bindings::notes::store::config;
pub use bindings::notes::store::types::{Error, Note, StoreInfo};

/// Ids as a `note-id-list`: each followed by a line feed.
pub fn id_list<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for id in ids {
        out.push_str(id);
        out.push('\n');
    }
    out
}

/// The first `limit` of sorted `ids` that sort after `after` ("": from the
/// first): `first-ids` for a store that can only list everything.
pub fn first_after(ids: &[String], after: &str, limit: u32) -> Vec<String> {
    let start = if after.is_empty() { 0 } else { ids.partition_point(|id| id.as_str() <= after) };
    ids[start..].iter().take(limit as usize).cloned().collect()
}

/// Outgoing HTTP over `wasi:http/outgoing-handler`, blocking the plugin (not
/// the host: the host serves other requests while it waits). Only origins
/// the operator allowed answer; any other fails with `HTTP-request-denied`.
#[cfg(feature = "http")]
pub mod http {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    /// A response: its status and its whole body.
    pub struct Response {
        pub status: u16,
        pub body: Vec<u8>,
    }

    /// Sends `body` to `url` (`http://host:port/path`) with `method` and the
    /// given headers, and reads the whole response.
    pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let fields = Fields::new();
        for (name, value) in headers {
            fields.append(name, value.as_bytes()).map_err(|e| format!("header {name}: {e:?}"))?;
        }
        let request = OutgoingRequest::new(fields);
        let method = match method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            other => Method::Other(other.to_owned()),
        };
        request.set_method(&method).map_err(|()| "bad method".to_owned())?;
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.to_owned()),
        };
        request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme".to_owned())?;
        request.set_authority(Some(authority)).map_err(|()| format!("bad authority {authority:?}"))?;
        request.set_path_with_query(Some(path)).map_err(|()| format!("bad path {path:?}"))?;
        let outgoing = request.body().map_err(|()| "the request body was taken".to_owned())?;
        let future = outgoing_handler::handle(request, None).map_err(|e| describe(&e))?;
        // The body goes out as the host sends the request; if the host
        // gave up on it meanwhile (the upstream refused, or answered early),
        // the response future says why, so a failed write is only kept
        // as the reason when the future has none.
        let mut written = Ok(());
        {
            let stream = outgoing.write().map_err(|()| "the request body stream was taken".to_owned())?;
            for chunk in body.chunks(4096) {
                if let Err(e) = stream.blocking_write_and_flush(chunk) {
                    written = Err(format!("writing the request: {e:?}"));
                    break;
                }
            }
        }
        if written.is_ok() {
            OutgoingBody::finish(outgoing, None).map_err(|e| describe(&e))?;
        }
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(describe(&e)),
            Some(Err(())) | None => return Err("the response was already taken".to_owned()),
        };
        written?;
        let status = response.status();
        let incoming = response.consume().map_err(|()| "the response body was taken".to_owned())?;
        let mut body = Vec::new();
        {
            let stream = incoming.stream().map_err(|()| "the response body stream was taken".to_owned())?;
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => return Err(format!("reading the response: {}", e.to_debug_string())),
                }
            }
        }
        Ok(Response { status, body })
    }

    fn describe(e: &ErrorCode) -> String {
        match e {
            ErrorCode::HttpRequestDenied => "HTTP request denied: the origin is not on the host's allow-list (--store-allow-http)".to_owned(),
            ErrorCode::ConnectionRefused => "connection refused".to_owned(),
            ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionTimeout => "timed out".to_owned(),
            other => format!("{other:?}"),
        }
    }
}
