//! `/ui`: the operator console, a page that drives the public API.
//!
//! The files are compiled into the binary (no CDN, no Node at build or run
//! time) and served to anyone: they hold no data. Every figure the page shows
//! and every change it makes goes through the admin routes with the token the
//! operator types, so the console is guarded exactly as they are, and
//! anything it does can be done with curl.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::error::ApiError;

/// (name under `/ui/`, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("index.html")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("console.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("console.css")),
    ("htm-preact-standalone-3.1.1.js", "text/javascript; charset=utf-8", include_bytes!("vendor/htm-preact-standalone-3.1.1.js")),
];

/// Scripts and styles from this host only, no inline script, no framing:
/// what a page holding an admin token should allow, and no more.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// `names.js`: the API's names the page compares and sends (job kinds and
/// states), written from the types that spell them (`notes_api_types`), so
/// the page never spells one itself.
static NAMES_JS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use notes_api_types::{JobKind, JobState};
    let object = |pairs: Vec<(String, &str)>| {
        let fields: Vec<String> = pairs.into_iter().map(|(variant, name)| format!("{variant}: '{name}'")).collect();
        format!("Object.freeze({{ {} }})", fields.join(", "))
    };
    let kinds = object(JobKind::ALL.iter().map(|k| (format!("{k:?}"), k.as_str())).collect());
    let states = object(JobState::ALL.iter().map(|s| (format!("{s:?}"), s.as_str())).collect());
    format!("// Written by the host from notes-api-types.\nexport const JobKind = {kinds};\nexport const JobState = {states};\n")
});

/// Bytes of every console file together (reported in BENCHMARKS).
pub fn asset_bytes() -> usize {
    FILES.iter().map(|(_, _, bytes)| bytes.len()).sum()
}

pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { file("index.html") }))
        .route("/ui/{file}", get(|Path(name): Path<String>| async move { file(&name) }))
}

fn file(name: &str) -> Response {
    let found = match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => Some((*content_type, *bytes)),
        None if name == "names.js" => Some(("text/javascript; charset=utf-8", NAMES_JS.as_bytes())),
        None => None,
    };
    let Some((content_type, bytes)) = found else {
        return ApiError::new(StatusCode::NOT_FOUND, format!("the console has no file {name:?}")).into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated each load, so a new host version's console is never mixed
    // with an old cached script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_the_page_loads_is_served() {
        let index = std::str::from_utf8(super::FILES[0].2).unwrap();
        let script = std::str::from_utf8(super::FILES[1].2).unwrap();
        for (name, _, _) in &super::FILES[1..] {
            assert!(index.contains(name) || script.contains(name), "{name} is served but nothing loads it");
        }
        for (name, _, _) in super::FILES {
            assert!(!name.contains('/'), "served from /ui/{{file}}: {name}");
        }
    }

    #[test]
    fn the_page_reads_job_kinds_and_states_from_the_names_the_host_writes() {
        let names = &*super::NAMES_JS;
        for kind in notes_api_types::JobKind::ALL {
            assert!(names.contains(&format!("{kind:?}: '{}'", kind.as_str())), "{names}");
        }
        for state in notes_api_types::JobState::ALL {
            assert!(names.contains(&format!("{state:?}: '{}'", state.as_str())), "{names}");
        }
        let script = std::str::from_utf8(super::FILES[1].2).unwrap();
        assert!(script.contains("from './names.js'"), "console.js imports the names");
        // Compared, sent or used as a key: each through the names, never spelled.
        for name in notes_api_types::JobKind::NAMES.iter().chain(notes_api_types::JobState::NAMES) {
            for spelled in [format!("=== '{name}'"), format!("!== '{name}'"), format!("kind: '{name}'"), format!("  {name}: '")] {
                assert!(!script.contains(&spelled), "console.js spells {name:?} itself: {spelled:?}");
            }
        }
    }
}
