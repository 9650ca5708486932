//! How a plugin's instances are made: recorded per plugin in the catalog,
//! followed by the plugin runtime, shown by `GET /plugins`.

/// How a plugin's instances are made. The default, and the only mode
/// that needs no trust in the plugin's code: a fresh instance per request.
/// `per-account` is for plugins that are costly to make (Python and
/// JavaScript: 9–13 MiB each): an instance is kept after a call and serves
/// later requests of the same account only, at most `maxRequests` requests
/// and for `maxSeconds`, and is dropped after any trap or limit. No state
/// can cross accounts: an instance never serves two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "kebab-case", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum Instances {
    #[default]
    Fresh,
    PerAccount {
        /// Requests one instance serves at most, 1 to 1,000,000.
        max_requests: u32,
        /// Seconds one instance serves at most, 1 to 3,600.
        max_seconds: u32,
    },
}

impl Instances {
    pub const MAX_REQUESTS: u32 = 1_000_000;
    pub const MAX_SECONDS: u32 = 3_600;

    /// Refuses bounds an instance could outlive the host with, or serve nothing within.
    pub fn checked(self) -> Result<Self, String> {
        match self {
            Instances::PerAccount { max_requests, .. } if !(1..=Self::MAX_REQUESTS).contains(&max_requests) => {
                Err(format!("maxRequests must be between 1 and {}, not {max_requests}", Self::MAX_REQUESTS))
            }
            Instances::PerAccount { max_seconds, .. } if !(1..=Self::MAX_SECONDS).contains(&max_seconds) => {
                Err(format!("maxSeconds must be between 1 and {}, not {max_seconds}", Self::MAX_SECONDS))
            }
            checked => Ok(checked),
        }
    }

    /// As recorded in a catalog: its JSON form.
    pub fn to_text(self) -> String {
        serde_json::to_string(&self).expect("a plain enum serializes")
    }

    /// From a catalog; a value this host cannot read is a fresh instance
    /// per request, the mode that needs no trust.
    pub fn from_text(text: &str) -> Self {
        serde_json::from_str::<Instances>(text).ok().and_then(|i| i.checked().ok()).unwrap_or_default()
    }
}
