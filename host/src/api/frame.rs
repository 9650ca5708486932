//! What every request passes before and after its route, written as plain
//! tower services rather than a stack of library layers and `from_fn`s: the
//! stack (request id, trace span, timeout, metrics, query check, credentials,
//! body) as four `from_fn`s, tower-http's trace and timeout layers cost 5–10%
//! of a GET's CPU more (BENCHMARKS.md, "Where a GET's CPU goes"). Each `from_fn` clones and boxes
//! a service and boxes a future per request; here the outer frame boxes one
//! future, and each matched route passes one `from_fn`.
//!
//! - [`Frame`], around the whole router: the request id (kept if plain, else
//!   a new UUID), the protected mode's refusals (before anything else runs,
//!   a 404 included), the request's task-local tag (id, method, path: what
//!   its log lines carry), the 30 s
//!   timeout (an upload's: 300 s), errors as JSON bodies carrying the id,
//!   and the id on the answer.
//! - [`open_route`] and [`protected_route`], once a route matched (its
//!   template is known): the request counted and timed by route, a query
//!   parameter the route does not document refused (400), and on protected
//!   routes the credentials checked, then the body read within its limits.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
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

/// Wraps a service (the router) in [`Frame`].
#[derive(Clone, Copy)]
pub struct FrameLayer {
    /// No admin token: the host answers loopback clients only.
    pub protected: bool,
}

impl<S> tower::Layer<S> for FrameLayer {
    type Service = Frame<S>;

    fn layer(&self, inner: S) -> Frame<S> {
        Frame { inner, protected: self.protected }
    }
}

/// The outermost service; see the module's comment.
#[derive(Clone)]
pub struct Frame<S> {
    inner: S,
    protected: bool,
}

impl<S> tower::Service<Request> for Frame<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
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

/// What the routes anyone may call need: the query names each documents.
pub type OpenState = Arc<guard::QueryNames>;

/// What the routes behind credentials need.
#[derive(Clone)]
pub struct ProtectedState {
    pub query_names: Arc<guard::QueryNames>,
    pub auth: auth::AuthState,
    pub limits: body::BodyLimits,
}

/// A matched open route (health, the API document, the console's files).
pub async fn open_route(State(names): State<OpenState>, request: Request, next: Next) -> Response {
    let tracked = observe::Tracked::start(&request);
    let response = match guard::unknown_query_refusal(&names, &request) {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    tracked.finish(&response);
    response
}

/// A matched route behind credentials: counted, its query checked, then
/// the credentials (before a byte of the body is read), then the body.
pub async fn protected_route(State(state): State<Arc<ProtectedState>>, request: Request, next: Next) -> Response {
    let tracked = observe::Tracked::start(&request);
    let response = async {
        if let Some(refused) = guard::unknown_query_refusal(&state.query_names, &request) {
            return refused;
        }
        let request = match auth::authorize(&state.auth, request).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
        match body::read_body(&state.limits, request).await {
            Ok(request) => next.run(request).await,
            Err(refused) => refused,
        }
    }
    .await;
    tracked.finish(&response);
    response
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
