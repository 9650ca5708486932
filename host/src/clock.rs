//! Wall-clock time as the host records it: Unix milliseconds. Its own module
//! so that every layer can read it without importing `app` (which would tie
//! the lower modules back to the top of the house).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
