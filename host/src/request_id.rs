//! The id of the request being served (`X-Request-Id`), for records made
//! deep in the app that a person will want to trace back to one request: the
//! reason of an automatic plugin rollback names the request that failed
//! last. Log lines carry it through the request's span instead.
//!
//! A note request runs on its tokio task (`api::note_path`), other requests
//! move to a blocking thread (`api::blocking`): the id is task-local on the
//! first and thread-local on the second.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static TASK: Option<String>;
}

thread_local! {
    static THREAD: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `serve` with `id` as the task's request id.
pub async fn on_task<F: Future>(id: Option<String>, serve: F) -> F::Output {
    TASK.scope(id, serve).await
}

/// The request id of the calling task, if it serves a request.
pub fn of_task() -> Option<String> {
    TASK.try_with(Clone::clone).ok().flatten()
}

/// Runs `work` with `id` as the thread's request id, then restores the previous one.
pub fn on_thread<R>(id: Option<String>, work: impl FnOnce() -> R) -> R {
    let previous = THREAD.with(|current| current.replace(id));
    let result = work();
    THREAD.with(|current| *current.borrow_mut() = previous);
    result
}

/// The request id the calling task or thread serves, if any.
pub fn current() -> Option<String> {
    of_task().or_else(|| THREAD.with(|current| current.borrow().clone()))
}
