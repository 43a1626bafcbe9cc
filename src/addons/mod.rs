//! Hooks that look at a request before it leaves and may answer it locally, so that no server connection
//! is ever opened for it: today the CA download page (`onboarding`).

pub mod onboarding;

/// A complete response made by strata itself.
#[derive(Debug, Clone)]
pub struct LocalResponse {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    /// Further header fields, e.g. `content-disposition`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}
