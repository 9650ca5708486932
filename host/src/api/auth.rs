//! The admin token: with one configured, every route but `/healthz` needs
//! `Authorization: Bearer <token>` (401 without, 403 when wrong).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;

#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token a client can send in a header: visible ASCII only, so one
    /// with surrounding spaces or other characters (which could never match
    /// what a client sends) is refused at start, not silently unusable.
    pub fn new(token: String) -> anyhow::Result<Self> {
        if token.trim() != token {
            anyhow::bail!("the admin token has spaces or line breaks around it; remove them");
        }
        if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic()) {
            anyhow::bail!("the admin token may hold only visible ASCII characters (no spaces), but it has {c:?}");
        }
        if token.len() < 16 {
            anyhow::bail!("the admin token must be at least 16 characters");
        }
        Ok(AdminToken(token))
    }

    fn matches(&self, offered: &str) -> bool {
        self.0.as_bytes().ct_eq(offered.as_bytes()).into()
    }
}

pub async fn require_admin(State(token): State<Option<AdminToken>>, req: Request, next: Next) -> Response {
    let Some(token) = token else { return next.run(req).await };
    // The scheme is case-insensitive (RFC 9110, section 11.1).
    let offered = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, credentials) = v.trim_start().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
    });
    match offered {
        None => {
            metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => "missing").increment(1);
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <admin token>").into_response();
            response.headers_mut().insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
            response
        }
        Some(offered) if token.matches(offered.trim()) => next.run(req).await,
        Some(_) => {
            metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => "wrong").increment(1);
            ApiError::new(StatusCode::FORBIDDEN, "wrong admin token").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_a_client_could_never_send_is_refused_at_start() {
        assert!(AdminToken::new(" 0123456789abcdef".into()).is_err(), "leading space");
        assert!(AdminToken::new("0123456789abcdef\n".into()).is_err(), "trailing newline");
        assert!(AdminToken::new("0123456789abcdéf".into()).is_err(), "non-ASCII");
        assert!(AdminToken::new("0123456789 abcdef".into()).is_err(), "inner space");
        assert!(AdminToken::new("short".into()).is_err(), "too short");
        assert!(AdminToken::new("0123456789abcdef".into()).is_ok());
    }
}
