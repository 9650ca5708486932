//! What every request passes before and after its route, written as plain
//! tower services rather than a stack of library layers and `from_fn`s: the
//! stack (request id, trace span, timeout, metrics, query check, credentials,
//! body) as four `from_fn`s, tower-http's trace and timeout layers cost 5–10%
//! of a GET's CPU more (BENCHMARKS.md, "Where a GET's CPU goes"). A `from_fn`
//! clones and boxes a service, splits the request to extract its state, and
//! boxes a future per request; here the frame and the route guard box one
//! future each, and nothing else wraps the router (no outer `Router`, no
//! per-connection `Extension` layer: the frame carries the client address).
//!
//! - [`Frame`], around the whole router: the client's address and the body
//!   limit on the request, the request id (kept if plain, else a new UUID),
//!   the protected mode's refusals (before anything else runs, a 404
//!   included), the request's task-local tag (id, method, path: what its log
//!   lines carry), the 30 s timeout (an upload's: 300 s), errors as JSON
//!   bodies carrying the id, and the id on the answer.
//! - [`RouteGuard`], once a route matched (its template is known): the
//!   request counted and timed by route, a query parameter the route does not
//!   document refused (400), and on protected routes the credentials checked,
//!   then the body read within its limits.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{self, ApiError};
use super::{REQUEST_ID, auth, body, guard, observe};

/// A request still running after this is answered 503. Plugin calls stop at
/// their own, shorter deadline; this catches everything else (lock waits).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An upload (`POST /plugins`) compiles the component before it answers: a
/// componentize-py or componentize-js plugin (12–19 MB) takes 10–20 s on 2
/// busy cores. Answering 503 "retry" while the compile goes on and stores
/// the plugin anyway would mislead the operator; the body's own limits
/// bound what can be sent.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// How long `request` may run before it is answered 503.
fn timeout_of(request: &Request) -> Duration {
    if request.method() == axum::http::Method::POST && request.uri().path() == "/plugins" { UPLOAD_TIMEOUT } else { REQUEST_TIMEOUT }
}

/// The outermost service; see the module's comment.
#[derive(Clone)]
pub struct Frame<S> {
    inner: S,
    /// No admin token: the host answers loopback clients only.
    protected: bool,
    /// What axum's body extractors may read (`DefaultBodyLimit`).
    body_limit: DefaultBodyLimit,
    /// The connection's client (`auth`); none in process.
    client: Option<auth::ClientAddr>,
}

impl<S> Frame<S> {
    pub fn new(inner: S, protected: bool, body_limit: DefaultBodyLimit) -> Self {
        Frame { inner, protected, body_limit, client: None }
    }
}

impl<S: Clone> Frame<S> {
    /// This service for the requests of one connection, from `client`.
    pub fn for_client(&self, client: std::net::IpAddr) -> Self {
        Frame { client: Some(auth::ClientAddr(client)), ..self.clone() }
    }
}

impl<S, B> tower::Service<axum::http::Request<B>> for Frame<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let mut request = request.map(Body::new);
        self.body_limit.apply(&mut request);
        if let Some(client) = self.client {
            request.extensions_mut().insert(client);
        }
        let id = guard::plain_request_id(&mut request);
        if let Some(refused) = guard::protected_mode_refusal(self.protected, &request) {
            return Box::pin(async move { Ok(answer(refused, id).await) });
        }
        let tag = request_tag(&id, &request);
        let limit = timeout_of(&request);
        let served = self.inner.call(request);
        Box::pin(async move {
            let timed = tokio::time::timeout(limit, crate::request_id::on_task(tag, served));
            let response = match timed.await {
                Ok(Ok(response)) => response,
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the request did not finish within {} s; retry", limit.as_secs()),
                )
                .into_response(),
            };
            Ok(answer(response, id).await)
        })
    }
}

/// The id on the answer, and an error made a JSON body carrying it.
async fn answer(mut response: Response, id: HeaderValue) -> Response {
    response.headers_mut().insert(REQUEST_ID, id);
    error::json_errors(response).await
}

/// What every line logged while the request runs carries: its id, method
/// and path (no query, no body). Not a span: see `request_id`.
fn request_tag(id: &HeaderValue, request: &Request) -> crate::request_id::Current {
    let method = match request.method().as_str() {
        "GET" => "GET".into(),
        "POST" => "POST".into(),
        "PUT" => "PUT".into(),
        "PATCH" => "PATCH".into(),
        "DELETE" => "DELETE".into(),
        other => other.to_owned().into(),
    };
    let id = id.to_str().unwrap_or("").to_owned();
    Some(Arc::new(crate::request_id::Tag { id, method, path: request.uri().path().to_owned() }))
}

/// What the routes behind credentials need.
pub(super) struct ProtectedState {
    pub query_names: Arc<guard::QueryNames>,
    pub auth: auth::AuthState,
    pub limits: body::BodyLimits,
}

/// The layer every matched route passes (`Router::route_layer`).
#[derive(Clone)]
pub(super) enum RouteGuard {
    /// Health, the API document, the console's files: the query names each
    /// documents.
    Open(Arc<guard::QueryNames>),
    /// Behind credentials.
    Protected(Arc<ProtectedState>),
}

impl<S> tower::Layer<S> for RouteGuard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded { inner, guard: self.clone() }
    }
}

/// A matched route behind its [`RouteGuard`]: counted, its query checked,
/// then (protected) the credentials, before a byte of the body is read, then
/// the body.
#[derive(Clone)]
pub(super) struct Guarded<S> {
    inner: S,
    guard: RouteGuard,
}

impl<S> tower::Service<Request> for Guarded<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let tracked = observe::Tracked::start(&request);
        let names = match &self.guard {
            RouteGuard::Open(names) => names,
            RouteGuard::Protected(state) => &state.query_names,
        };
        if let Some(refused) = guard::unknown_query_refusal(names, &request) {
            tracked.finish(&refused);
            return Box::pin(std::future::ready(Ok(refused)));
        }
        match &self.guard {
            RouteGuard::Open(_) => {
                let served = self.inner.call(request);
                Box::pin(async move {
                    let Ok(response) = served.await;
                    tracked.finish(&response);
                    Ok(response)
                })
            }
            RouteGuard::Protected(state) => {
                let (state, mut inner) = (Arc::clone(state), self.inner.clone());
                Box::pin(async move {
                    let response = match auth::authorize(&state.auth, request).await {
                        Err(refused) => refused,
                        Ok(request) => match body::read_body(&state.limits, request).await {
                            Ok(request) => {
                                let Ok(response) = inner.call(request).await;
                                response
                            }
                            Err(refused) => refused,
                        },
                    };
                    tracked.finish(&response);
                    Ok(response)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> Request {
        Request::builder().method(method).uri(path).body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn an_upload_may_compile_for_longer_than_any_other_request_may_run() {
        assert_eq!(timeout_of(&request("POST", "/plugins")), UPLOAD_TIMEOUT);
        assert_eq!(timeout_of(&request("POST", "/plugins?check=true")), UPLOAD_TIMEOUT);
        assert_eq!(timeout_of(&request("GET", "/plugins")), REQUEST_TIMEOUT);
        assert_eq!(timeout_of(&request("PUT", "/plugins/active")), REQUEST_TIMEOUT);
        assert_eq!(timeout_of(&request("POST", "/accounts/x/notes")), REQUEST_TIMEOUT);
    }
}
