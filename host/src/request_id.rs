//! The request being served (`X-Request-Id`, its method and path), for
//! whatever a person will want to trace back to one request: every log line
//! logged while it runs (the host's log formatter adds the tag, see
//! `notes-host`'s `logs`), and records made deep in the app (the reason of an
//! automatic plugin rollback names the request that failed last).
//!
//! Not a `tracing` span: a span per request cost 5% of a GET's CPU (its
//! fields formatted and stored in the subscriber's registry on every
//! request), and a request rarely logs. The tag is made once per request and
//! read only when a line is logged.
//!
//! A note request runs on its tokio task (`api::note_path`), other requests
//! move to a blocking thread (`api::blocking`): the tag is task-local on the
//! first and thread-local on the second.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

/// One request, as its log lines name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Its `X-Request-Id`: the client's if plain, else a new UUID.
    pub id: String,
    pub method: Cow<'static, str>,
    /// The path, without the query.
    pub path: String,
}

/// The tag of the request a task or thread serves, if any.
pub type Current = Option<Arc<Tag>>;

tokio::task_local! {
    static TASK: Current;
}

thread_local! {
    static THREAD: RefCell<Current> = const { RefCell::new(None) };
}

/// Runs `serve` with `tag` as the task's request.
pub async fn on_task<F: Future>(tag: Current, serve: F) -> F::Output {
    TASK.scope(tag, serve).await
}

/// The request of the calling task, if it serves one.
pub fn of_task() -> Current {
    TASK.try_with(Clone::clone).ok().flatten()
}

/// Runs `work` with `tag` as the thread's request, then restores the previous one.
pub fn on_thread<R>(tag: Current, work: impl FnOnce() -> R) -> R {
    let previous = THREAD.with(|current| current.replace(tag));
    let result = work();
    THREAD.with(|current| *current.borrow_mut() = previous);
    result
}

/// The request the calling task or thread serves, if any.
pub fn current_tag() -> Current {
    of_task().or_else(|| THREAD.with(|current| current.borrow().clone()))
}

/// The id of the request the calling task or thread serves, if any.
pub fn current() -> Option<String> {
    current_tag().map(|tag| tag.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(id: &str) -> Current {
        Some(Arc::new(Tag { id: id.into(), method: "GET".into(), path: "/healthz".into() }))
    }

    #[test]
    fn a_thread_serves_its_request_only_while_the_work_runs() {
        assert_eq!(current(), None);
        let seen = on_thread(tag("outer"), || (current(), on_thread(tag("inner"), current), current()));
        assert_eq!(seen, (Some("outer".into()), Some("inner".into()), Some("outer".into())));
        assert_eq!(current(), None);
    }

    #[tokio::test]
    async fn a_task_serves_its_request_across_its_awaits() {
        let seen = on_task(tag("task"), async {
            tokio::task::yield_now().await;
            current_tag()
        })
        .await;
        assert_eq!(seen, tag("task"));
        assert_eq!(current(), None);
    }
}
