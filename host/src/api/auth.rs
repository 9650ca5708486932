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
    pub fn new(token: String) -> anyhow::Result<Self> {
        if token.trim().len() < 16 {
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
    let offered = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match offered {
        None => {
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <admin token>").into_response();
            response.headers_mut().insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
            response
        }
        Some(offered) if token.matches(offered.trim()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::FORBIDDEN, "wrong admin token").into_response(),
    }
}
