//! Outgoing HTTP for a store plugin (`wasi:http/outgoing-handler`): only to
//! the origins the operator allowed at start (`--store-allow-http`), over one
//! pooled client, with a connect and a response timeout and a cap on the
//! response's size. A request anywhere else fails in the plugin with
//! `HTTP-request-denied`, and the host's log names the origin it tried.
//!
//! Plain `http://` only: the host is built without a TLS stack (it would add
//! rustls and its crypto to every build). An upstream reached over TLS goes
//! through a local proxy that terminates it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// What the operator granted a store plugin's outgoing HTTP.
#[derive(Debug, Clone)]
pub struct HttpGrant {
    /// Origins (`http://host:port`) the plugin may send requests to.
    pub allowed: Vec<String>,
    pub connect_timeout: Duration,
    /// From the request sent to the response's headers.
    pub response_timeout: Duration,
    /// A larger response (by its `Content-Length`, or as it streams) fails.
    pub max_response_bytes: u64,
}

/// The defaults of `serve`'s flags (`--store-connect-timeout-ms`,
/// `--store-response-timeout-ms`, `--store-max-response-mib`), which
/// `plugin check --profile store` uses too: a plugin is checked under the
/// limits it will be served with.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_MAX_RESPONSE_MIB: u64 = 16;

impl Default for HttpGrant {
    fn default() -> Self {
        HttpGrant {
            allowed: Vec::new(),
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
            response_timeout: Duration::from_millis(DEFAULT_RESPONSE_TIMEOUT_MS),
            max_response_bytes: DEFAULT_MAX_RESPONSE_MIB << 20,
        }
    }
}

/// The origin of an allow-list entry, as requests are compared with it:
/// `http://host:port`, lower case, the port spelled out. Refuses anything
/// but a plain `http://` origin (no path, query or credentials).
pub fn parse_origin(text: &str) -> anyhow::Result<String> {
    let uri: http::Uri = text.parse().map_err(|e| anyhow::anyhow!("{text:?} is not an origin (http://host:port): {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => anyhow::bail!(
            "{text:?}: https is not supported; the host has no TLS stack, so reach a TLS upstream through a local proxy and allow that proxy's http:// origin"
        ),
        _ => anyhow::bail!("{text:?} is not an origin: write it as http://host:port"),
    }
    if uri.path_and_query().is_some_and(|p| !matches!(p.as_str(), "" | "/")) {
        anyhow::bail!("{text:?} is not an origin: an origin has no path or query (http://host:port)");
    }
    let Some(authority) = uri.authority() else { anyhow::bail!("{text:?} names no host") };
    if authority.as_str().contains('@') {
        anyhow::bail!("{text:?}: an origin carries no credentials; pass a token with --store-config");
    }
    origin(&uri).ok_or_else(|| anyhow::anyhow!("{text:?} names no host"))
}

/// `http://host:port` of a request's URI.
fn origin(uri: &http::Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(format!("{scheme}://{host}:{port}"))
}

/// The grant and the pooled client behind it: one per store plugin, shared
/// by all its instances, so connections to the upstream are reused.
pub struct Outgoing {
    grant: HttpGrant,
    client: Client<HttpConnector, WasiBody>,
    /// Which plugin: the log line of a refused request names it.
    plugin: String,
}

impl Outgoing {
    pub fn new(grant: HttpGrant, plugin: &str) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(grant.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).pool_max_idle_per_host(32).build(connector);
        Arc::new(Outgoing { grant, client, plugin: plugin.to_owned() })
    }

    pub fn grant(&self) -> &HttpGrant {
        &self.grant
    }

    async fn send(self: Arc<Self>, request: http::Request<WasiBody>, options: Option<RequestOptions>) -> Result<http::Response<WasiBody>, Error> {
        // Credentials in the authority (`http://evil@allowed/`) would be
        // checked as the host after the `@` and sent, in `Host`, as written.
        if request.uri().authority().is_some_and(|a| a.as_str().contains('@')) {
            tracing::warn!(plugin = %self.plugin, "a store plugin's request was refused: credentials in its URL's authority");
            return Err(Error::HttpRequestDenied);
        }
        let Some(origin) = origin(request.uri()) else { return Err(Error::HttpRequestUriInvalid) };
        if !self.grant.allowed.contains(&origin) {
            tracing::warn!(plugin = %self.plugin, origin = %origin, "a store plugin's request was refused: its origin is not on the allow-list (--store-allow-http)");
            return Err(Error::HttpRequestDenied);
        }
        // A plugin may ask for shorter timeouts, never longer ones.
        let connect = options.and_then(|o| o.connect_timeout).map_or(self.grant.connect_timeout, |t| t.min(self.grant.connect_timeout));
        let first_byte = options.and_then(|o| o.first_byte_timeout).map_or(self.grant.response_timeout, |t| t.min(self.grant.response_timeout));
        let response = match tokio::time::timeout(connect + first_byte, self.client.request(request)).await {
            Err(_) => return Err(Error::ConnectionReadTimeout),
            Ok(Err(e)) if e.is_connect() => {
                tracing::debug!(plugin = %self.plugin, origin = %origin, error = %e, "a store plugin's request could not connect");
                return Err(Error::ConnectionRefused);
            }
            Ok(Err(e)) => {
                tracing::debug!(plugin = %self.plugin, origin = %origin, error = ?e, "a store plugin's request failed");
                return Err(Error::InternalError(Some(e.to_string())));
            }
            Ok(Ok(response)) => response,
        };
        let cap = self.grant.max_response_bytes;
        if response.body().size_hint().lower() > cap {
            return Err(Error::HttpResponseBodySize(Some(response.body().size_hint().lower())));
        }
        Ok(response.map(|body| Capped { body, left: cap, cap }.boxed_unsync()))
    }
}

/// A response body that fails once it passed `cap` bytes.
struct Capped {
    body: hyper::body::Incoming,
    left: u64,
    cap: u64,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > self.left {
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.cap)))));
                }
                self.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The hooks of one instance: its plugin's [`Outgoing`].
pub(super) struct Hooks(pub(super) Arc<Outgoing>);

impl WasiHttpHooks for Hooks {
    fn is_supported_scheme(&mut self, scheme: &http::uri::Scheme) -> bool {
        *scheme == http::uri::Scheme::HTTP
    }

    fn default_scheme(&mut self) -> Option<http::uri::Scheme> {
        Some(http::uri::Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>)>> + Send>
    {
        let outgoing = self.0.clone();
        Box::new(async move {
            let response = outgoing.send(request, options).await?;
            // The pooled client drives the connection itself: nothing left to wait for.
            Ok((response, Box::new(async { Ok(()) }) as Box<dyn Future<Output = Result<(), Error>> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credentials_in_the_authority_cannot_smuggle_a_request_past_the_allow_list() {
        let grant = HttpGrant { allowed: vec![parse_origin("http://127.0.0.1:9").unwrap()], ..HttpGrant::default() };
        let outgoing = Outgoing::new(grant, "test");
        for uri in ["http://evil.example@127.0.0.1:9/", "http://127.0.0.1:10/", "http://localhost:9/"] {
            let request = http::Request::builder().uri(uri).body(http_body_util::Empty::new().map_err(|e| match e {}).boxed_unsync()).unwrap();
            let refused = outgoing.clone().send(request, None).await;
            assert!(matches!(refused, Err(Error::HttpRequestDenied)), "{uri}: {refused:?}");
        }
    }

    /// An upstream on loopback that answers every request with `answer`,
    /// after `delay`; returns its origin.
    async fn upstream(answer: impl Into<Bytes>, delay: Duration) -> String {
        let answer: Bytes = answer.into();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    tokio::time::sleep(delay).await;
                    let _ = socket.write_all(&answer).await;
                });
            }
        });
        origin
    }

    fn limited(origin: &str) -> Arc<Outgoing> {
        let grant = HttpGrant {
            allowed: vec![parse_origin(origin).unwrap()],
            connect_timeout: Duration::from_millis(200),
            response_timeout: Duration::from_millis(200),
            max_response_bytes: 1000,
        };
        Outgoing::new(grant, "test")
    }

    async fn get(outgoing: &Arc<Outgoing>, origin: &str) -> Result<http::Response<WasiBody>, Error> {
        let request = http::Request::builder().uri(format!("{origin}/")).body(http_body_util::Empty::new().map_err(|e| match e {}).boxed_unsync()).unwrap();
        outgoing.clone().send(request, None).await
    }

    #[tokio::test]
    async fn an_upstream_slower_than_the_response_timeout_fails_the_request_in_time() {
        let origin = upstream(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..], Duration::from_secs(3)).await;
        let started = std::time::Instant::now();
        let answer = get(&limited(&origin), &origin).await;
        assert!(matches!(answer, Err(Error::ConnectionReadTimeout)), "{answer:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "failed after {:?}, not when the upstream answered", started.elapsed());
    }

    #[tokio::test]
    async fn a_response_over_the_size_cap_fails_by_its_length_or_as_it_streams() {
        let origin = upstream(&b"HTTP/1.1 200 OK\r\ncontent-length: 1500\r\n\r\n"[..], Duration::ZERO).await;
        let answer = get(&limited(&origin), &origin).await;
        assert!(matches!(answer, Err(Error::HttpResponseBodySize(Some(1500)))), "refused by its Content-Length: {answer:?}");

        // No length given: 3 chunks of 400 bytes; the third passes 1,000.
        let chunk = format!("190\r\n{}\r\n", "x".repeat(400)); // 0x190 = 400
        let chunked = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{}0\r\n\r\n", chunk.repeat(3));
        let origin = upstream(chunked, Duration::ZERO).await;
        let response = get(&limited(&origin), &origin).await.expect("the head arrives");
        let body = response.into_body().collect().await;
        assert!(matches!(body, Err(Error::HttpResponseBodySize(Some(1000)))), "refused as it streamed past the cap: {:?}", body.map(|b| b.to_bytes().len()));
    }

    #[tokio::test]
    async fn an_upstream_that_is_down_is_a_refused_connection() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let origin = format!("http://{closed}");
        let answer = get(&limited(&origin), &origin).await;
        assert!(matches!(answer, Err(Error::ConnectionRefused)), "{answer:?}");
    }

    #[test]
    fn an_allowed_origin_is_a_plain_http_origin_spelled_one_way() {
        assert_eq!(parse_origin("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(parse_origin("http://Proxy.Local/").unwrap(), "http://proxy.local:80");
        for bad in ["https://x.example", "http://x.example/notes", "ftp://x", "x.example:80", "http://u:p@x.example"] {
            assert!(parse_origin(bad).is_err(), "{bad} is refused");
        }
    }
}
