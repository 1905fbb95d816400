//! The shared HTTP polling layer: per-request timeout, retries with backoff and `Retry-After`, a
//! per-source rate limit and concurrency bound, and accounting of every request.
//!
//! API clients only build requests and parse responses; everything about how a request is sent,
//! retried and counted lives here. This file starts with the bounded label sets the accounting
//! uses (the metrics module encodes them); it never sees response bodies' meaning.

use std::fmt;
use std::time::Duration;

macro_rules! label_set {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value (all series are exported at 0 from start-up).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_set!(
    /// Which API a request went to (`source` label).
    Source {
        Cxone => "cxone",
        Cognigy => "cognigy",
    }
);

label_set!(
    /// The fixed set of endpoints (`endpoint` label); never a URL.
    Endpoint {
        CxoneOpenidConfiguration => "openid_configuration",
        CxoneToken => "token",
        CxoneConfiguration => "cxone_configuration",
        CxoneContactsCompleted => "contacts_completed",
        CxoneContact => "contact",
        CxoneStateHistory => "state_history",
        CxoneCustomData => "custom_data",
        CognigySessions => "odata_sessions",
        CognigyConversations => "odata_conversations",
        CognigyAnalytics => "odata_analytics",
        CognigyLogs => "logs",
    }
);

impl Endpoint {
    /// The source an endpoint belongs to.
    pub fn source(self) -> Source {
        match self {
            Endpoint::CognigySessions
            | Endpoint::CognigyConversations
            | Endpoint::CognigyAnalytics
            | Endpoint::CognigyLogs => Source::Cognigy,
            _ => Source::Cxone,
        }
    }
}

label_set!(
    /// The outcome class of one HTTP attempt (`code` label).
    CodeClass {
        Success => "2xx",
        NoContent => "204",
        Unauthorized => "401",
        NotFound => "404",
        TooManyRequests => "429",
        ClientError => "4xx",
        ServerError => "5xx",
        Timeout => "timeout",
        Error => "error",
    }
);

impl CodeClass {
    /// Classifies an HTTP status.
    pub fn from_status(status: u16) -> CodeClass {
        match status {
            204 => CodeClass::NoContent,
            401 => CodeClass::Unauthorized,
            404 => CodeClass::NotFound,
            429 => CodeClass::TooManyRequests,
            200..=299 => CodeClass::Success,
            500..=599 => CodeClass::ServerError,
            _ => CodeClass::ClientError,
        }
    }
}

label_set!(
    /// Why a request was retried (`cause` label).
    RetryCause {
        RateLimited => "rate_limited",
        ServerError => "server_error",
        RequestTimeout => "request_timeout",
        Timeout => "timeout",
        Connect => "connect",
        Reauthenticate => "reauthenticate",
    }
);

/// Receives the accounting of every HTTP attempt; implemented by the metrics registry.
pub trait RequestObserver: Send + Sync {
    /// One attempt finished (any outcome).
    fn observe_request(&self, endpoint: Endpoint, code: CodeClass, elapsed: Duration);
    /// An attempt is about to be retried.
    fn observe_retry(&self, source: Source, cause: RetryCause);
}

/// An observer that discards everything (CLI one-shots, tests that do not count).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl RequestObserver for NoopObserver {
    fn observe_request(&self, _: Endpoint, _: CodeClass, _: Duration) {}
    fn observe_retry(&self, _: Source, _: RetryCause) {}
}
