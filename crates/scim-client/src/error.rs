//! What can go wrong talking to a SCIM service, sorted by what the caller must do about it.

use scim::ScimError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service rejected this request for this object (4xx other than 401/403/429): the
    /// object fails alone, the run goes on.
    #[error("{0}")]
    Rejected(ScimError),
    /// The credentials were refused: the run must stop once, not fail every object.
    #[error("the SCIM service refused the credentials from {credential} (HTTP {status}): {detail}")]
    Unauthorized {
        status: u16,
        credential: String,
        detail: String,
    },
    /// No answer (connection refused, DNS, TLS, timeout) after the retries allowed.
    #[error("cannot reach the SCIM service at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The connection failed (reset, timeout) after a request that is not safe to repeat
    /// (a create, a Bulk request) was sent: the service may or may not have applied it. The
    /// caller finds out (a create looks its object up by externalId) before sending it again.
    #[error(
        "the connection to the SCIM service at {url} failed during a request that may have been applied: {reason}"
    )]
    Interrupted { url: String, reason: String },
    /// 5xx or 429 still after the retries allowed, or a 5xx to a request that is not safe to
    /// repeat.
    #[error("the SCIM service failed with HTTP {status}: {detail}")]
    Server { status: u16, detail: String },
    /// The service (or the OAuth2 token endpoint) answered with a redirect. Redirects are never
    /// followed: the request carries a token, a password or a client secret that must not go
    /// to another URL. Every request would be redirected the same way, so the run stops.
    #[error(
        "{url} answered HTTP {status} with a redirect to {location}; redirects are not followed \
         because the request carries credentials (configure the URL the service really answers on)"
    )]
    Redirected {
        status: u16,
        /// The URL asked for, without its query.
        url: String,
        /// The `Location` header, shortened and stripped of control characters.
        location: String,
    },
    /// A response that does not follow the protocol (bad JSON, missing fields).
    #[error("unexpected response from the SCIM service: {0}")]
    Protocol(String),
    /// The client could not be built (bad URL, bad proxy setting).
    #[error("invalid SCIM client setting: {0}")]
    Config(String),
}

impl ClientError {
    /// True when no further request to this service can succeed in this run.
    pub fn stops_run(&self) -> bool {
        matches!(
            self,
            ClientError::Unauthorized { .. }
                | ClientError::Unreachable { .. }
                | ClientError::Redirected { .. }
        )
    }

    /// The SCIM error of a rejected request, if that is what this is.
    pub fn scim(&self) -> Option<&ScimError> {
        match self {
            ClientError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}
