//! Durable migration jobs: what one does, and where it is.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a job does: `backfill` moves an account's notes to the new store,
/// `rollback` back to legacy, `verify` checks them (read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backfill,
    Rollback,
    Verify,
}

/// Where a job is: `running` (its host steps it), `paused` (by an operator),
/// or finished: `cancelled`, `done` or `failed` (its detail says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Paused,
    Cancelled,
    Done,
    Failed,
}

/// A name that is no kind (or no state) of job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// "job kind" or "job state".
    pub what: &'static str,
    pub name: String,
    /// Every valid name, in order.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be {}, got {:?}", self.what, any_of(self.expected), self.name)
    }
}

/// "a, b or c": the names a value may take, for a message.
pub fn any_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_owned(),
        None => String::new(),
    }
}

impl std::error::Error for UnknownName {}

/// `as_str`, `ALL`, `NAMES` and `FromStr` from one list of (variant, name):
/// the names are written once, and must match serde's (a test checks).
macro_rules! named {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+ $(,)?) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;

            fn from_str(name: &str) -> Result<Self, UnknownName> {
                match name {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName { what: $what, name: name.to_owned(), expected: Self::NAMES }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named!(JobKind, "job kind", Backfill => "backfill", Rollback => "rollback", Verify => "verify");
named!(JobState, "job state", Running => "running", Paused => "paused", Cancelled => "cancelled", Done => "done", Failed => "failed");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_is_the_one_serde_writes_and_reads() {
        for kind in JobKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(kind.as_str().parse::<JobKind>().unwrap(), *kind);
            assert_eq!(serde_json::from_value::<JobKind>(kind.as_str().into()).unwrap(), *kind);
        }
        for state in JobState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), *state);
        }
    }

    #[test]
    fn an_unknown_name_is_refused_with_every_valid_one() {
        let err = "backfil".parse::<JobKind>().unwrap_err().to_string();
        assert_eq!(err, r#"job kind must be backfill, rollback or verify, got "backfil""#);
        assert!("Running".parse::<JobState>().is_err(), "names are exact");
    }
}
