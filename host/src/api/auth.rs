//! Credentials: the admin token, and per-account keys (see `authorize`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::error::ApiError;
use crate::app::{App, AppError};

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

/// Who may call what. With an admin token configured, every route but
/// `/healthz` needs a credential: the admin token reaches every route; an
/// account's key (`nk_…`) reaches that account (`GET /accounts/{id}`) and
/// its notes (`/accounts/{id}/notes…`), and is refused 403 anywhere else,
/// the same answer whether or not the other account exists. Without an
/// admin token the host is in protected mode (loopback only) and no key can
/// exist. Failed authentications are counted, and a client address that
/// offers too many wrong credentials is answered 429 for its wrong ones for a
/// while (its allowance refills, one a second; a right credential always
/// passes). A request
/// without credentials is counted but not throttled: it guesses no secret,
/// and a monitor probing without a token must not lock out its address.
#[derive(Clone)]
pub(super) struct AuthState {
    pub token: Option<AdminToken>,
    pub app: Arc<App>,
    pub failures: Arc<FailureLimiter>,
}

/// The client address a connection came from (set by `server`).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

/// The request, passed on if its credentials reach its route; else the refusal.
pub(super) async fn authorize(auth: &AuthState, req: Request) -> Result<Request, Response> {
    let Some(token) = &auth.token else { return Ok(req) };
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
    // A throttled address is refused only its wrong credentials: the right
    // token or key still passes, so an attacker sharing the operator's
    // address (a NAT, a proxy) cannot lock the operator out. The secrets are
    // too long to guess at any rate; the throttle bounds the work and noise.
    let blocked = client.is_some_and(|ip| auth.failures.is_blocked(ip));
    let throttled = || {
        ApiError::from(AppError::TooManyRequests("too many failed authentications from this address; retry shortly".into())).into_response()
    };
    // The scheme is case-insensitive (RFC 9110, section 11.1).
    let offered = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, credentials) = v.trim_start().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim().to_owned())
    });
    let failed = |reason: &'static str| {
        metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => reason).increment(1);
        if let Some(ip) = client.filter(|_| reason != "missing") {
            auth.failures.record(ip);
        }
    };
    Err(match offered {
        None => {
            failed("missing");
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <admin token or account key>").into_response();
            response.headers_mut().insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
            response
        }
        Some(offered) if token.matches(&offered) => return Ok(req),
        Some(offered) if offered.starts_with("nk_") => {
            let app = auth.app.clone();
            match tokio::task::spawn_blocking(move || app.key_account(&offered)).await {
                Ok(Ok(Some(account))) if key_may_call(&req, account) => return Ok(req),
                Ok(Ok(Some(_))) => ApiError::new(StatusCode::FORBIDDEN, "this key reaches only its own account and its notes").into_response(),
                Ok(Ok(None)) if blocked => throttled(),
                Ok(Ok(None)) => {
                    failed("key");
                    ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked account key").into_response()
                }
                Ok(Err(e)) => ApiError::from(e).into_response(),
                Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("key check failed: {e}")).into_response(),
            }
        }
        Some(_) if blocked => throttled(),
        Some(_) => {
            failed("wrong");
            ApiError::new(StatusCode::FORBIDDEN, "wrong admin token").into_response()
        }
    })
}

/// `GET /accounts/{its account}`, and anything under `/accounts/{its account}/notes`.
/// The raw path is compared with the account's canonical id: another
/// spelling of an id (upper case, percent-encoded) is refused, never let through.
fn key_may_call(req: &Request, account: Uuid) -> bool {
    let own = account.to_string();
    let mut segments = req.uri().path().trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("accounts"), Some(id), None) => id == own && req.method() == Method::GET,
        (Some("accounts"), Some(id), Some("notes")) => id == own,
        _ => false,
    }
}

/// Failed authentications per client address: a burst (`--auth-failure-burst`,
/// [`DEFAULT_AUTH_FAILURE_BURST`]) is allowed, then one per second.
pub(super) struct FailureLimiter {
    table: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    burst: f64,
}

/// Wrong credentials an address may send at once before it is throttled.
pub const DEFAULT_AUTH_FAILURE_BURST: u32 = 20;

impl FailureLimiter {
    pub(super) fn new(burst: u32) -> Self {
        FailureLimiter { table: Mutex::default(), burst: f64::from(burst.max(1)) }
    }

    /// Addresses remembered at most; past it the table starts over (an
    /// attacker with that many addresses is not stopped by a per-address limit).
    const MAX_CLIENTS: usize = 100_000;

    fn allowance(&self, ip: IpAddr) -> f64 {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.get(&ip).map_or(self.burst, |(left, at)| (left + at.elapsed().as_secs_f64()).min(self.burst))
    }

    fn is_blocked(&self, ip: IpAddr) -> bool {
        self.allowance(ip) < 1.0
    }

    fn record(&self, ip: IpAddr) {
        let left = self.allowance(ip) - 1.0;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= Self::MAX_CLIENTS {
            table.clear();
        }
        table.insert(ip, (left.max(0.0), Instant::now()));
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
