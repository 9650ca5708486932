//! Names the HTTP API's server (`notes-host`) and its clients (`notes-client`:
//! the CLI, the simulator) share, so that a job's kind or state is spelled
//! once: here, in its serde form. The server's OpenAPI document describes
//! them (feature `openapi`), and the console reads them from the API's
//! answers.

mod jobs;

pub use jobs::{JobKind, JobState, UnknownName, any_of};
