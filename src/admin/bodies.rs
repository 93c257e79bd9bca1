//! The endpoint as the API reads and writes it (SPEC 3, camelCase): typed
//! bodies that serde maps field by field, instead of renaming the keys of a
//! JSON document at run time. The configuration file's form is
//! [`EndpointConfig`] (snake_case); the two convert into each other.

use serde::{Deserialize, Serialize};

use crate::config::{EndpointAuth, EndpointConfig, EndpointLimits, Sampling};

/// What `auth.jwtSecret` reads as in answers and in the audit log.
pub const REDACTED: &str = "********";

/// An endpoint in a request (`POST`; a `PATCH` is merged into the stored
/// one's body first) or an answer. `createdAt`/`updatedAt` are shown in
/// answers and ignored in requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointBody {
    /// Slug (absent in a `POST`: generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// `ws://` or `wss://`.
    pub target_url: String,
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Limits.
    #[serde(default)]
    pub limits: LimitsBody,
    /// Sampling.
    #[serde(default)]
    pub sampling: SamplingBody,
    /// Client JWT requirement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthBody>,
    /// Allowed `Origin` values.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// RFC 3339 (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339 (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

fn yes() -> bool {
    true
}

/// `limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LimitsBody {
    /// Sessions across all shards.
    pub max_connections: usize,
    /// Bytes per message.
    pub max_message_size: u64,
    /// Idle timeout, ms.
    pub timeout_ms: u64,
    /// Messages per second per session and direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages_per_second: Option<u32>,
}

impl Default for LimitsBody {
    fn default() -> Self {
        EndpointLimits::default().into()
    }
}

/// `sampling`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SamplingBody {
    /// On or off.
    pub enabled: bool,
    /// 0–100.
    pub percentage: u32,
    /// Kept per endpoint.
    pub max_samples: u32,
}

impl Default for SamplingBody {
    fn default() -> Self {
        Sampling::default().into()
    }
}

/// `auth`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthBody {
    /// HS256 secret ([`REDACTED`] in answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// RS256 public key, PEM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key_pem: Option<String>,
    /// Required `aud`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Required `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

impl From<EndpointLimits> for LimitsBody {
    fn from(l: EndpointLimits) -> Self {
        LimitsBody {
            max_connections: l.max_connections,
            max_message_size: l.max_message_size,
            timeout_ms: l.timeout_ms,
            max_messages_per_second: l.max_messages_per_second,
        }
    }
}

impl From<LimitsBody> for EndpointLimits {
    fn from(l: LimitsBody) -> Self {
        EndpointLimits {
            max_connections: l.max_connections,
            max_message_size: l.max_message_size,
            timeout_ms: l.timeout_ms,
            max_messages_per_second: l.max_messages_per_second,
        }
    }
}

impl From<Sampling> for SamplingBody {
    fn from(s: Sampling) -> Self {
        SamplingBody {
            enabled: s.enabled,
            percentage: s.percentage,
            max_samples: s.max_samples,
        }
    }
}

impl From<SamplingBody> for Sampling {
    fn from(s: SamplingBody) -> Self {
        Sampling {
            enabled: s.enabled,
            percentage: s.percentage,
            max_samples: s.max_samples,
        }
    }
}

impl From<EndpointAuth> for AuthBody {
    fn from(a: EndpointAuth) -> Self {
        AuthBody {
            jwt_secret: a.jwt_secret,
            jwt_public_key_pem: a.jwt_public_key_pem,
            audience: a.audience,
            issuer: a.issuer,
        }
    }
}

impl From<AuthBody> for EndpointAuth {
    fn from(a: AuthBody) -> Self {
        EndpointAuth {
            jwt_secret: a.jwt_secret,
            jwt_public_key_pem: a.jwt_public_key_pem,
            audience: a.audience,
            issuer: a.issuer,
        }
    }
}

impl EndpointBody {
    /// The endpoint as stored, with its secret (for the store and the
    /// shards; never sent).
    pub fn with_secret(e: &EndpointConfig) -> EndpointBody {
        EndpointBody {
            id: Some(e.id.clone()),
            name: e.name.clone(),
            target_url: e.target_url.clone(),
            enabled: e.enabled,
            limits: e.limits.clone().into(),
            sampling: e.sampling.clone().into(),
            auth: e.auth.clone().map(Into::into),
            allowed_origins: e.allowed_origins.clone(),
            created_at: None,
            updated_at: None,
        }
    }

    /// The endpoint as answers and the audit log show it: the secret
    /// [`REDACTED`].
    pub fn shown(e: &EndpointConfig) -> EndpointBody {
        let mut b = EndpointBody::with_secret(e);
        if let Some(s) = b.auth.as_mut().and_then(|a| a.jwt_secret.as_mut()) {
            *s = REDACTED.to_string();
        }
        b
    }
}

impl From<EndpointBody> for EndpointConfig {
    fn from(b: EndpointBody) -> Self {
        EndpointConfig {
            id: b.id.unwrap_or_default(),
            name: b.name,
            target_url: b.target_url,
            enabled: b.enabled,
            limits: b.limits.into(),
            sampling: b.sampling.into(),
            auth: b.auth.map(Into::into),
            allowed_origins: b.allowed_origins,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_round_trips_and_its_secret_is_redacted_when_shown() {
        let body: EndpointBody = serde_json::from_value(serde_json::json!({
            "id": "e", "targetUrl": "ws://127.0.0.1:1/",
            "limits": {"maxConnections": 5, "maxMessagesPerSecond": 3},
            "auth": {"jwtSecret": "s3cret"},
            "createdAt": "ignored"
        }))
        .unwrap();
        let cfg: EndpointConfig = body.into();
        assert_eq!(cfg.limits.max_connections, 5);
        assert_eq!(cfg.limits.max_messages_per_second, Some(3));
        assert_eq!(cfg.limits.timeout_ms, EndpointLimits::default().timeout_ms);
        assert!(cfg.enabled);
        assert_eq!(EndpointConfig::from(EndpointBody::with_secret(&cfg)), cfg);
        let shown = serde_json::to_value(EndpointBody::shown(&cfg)).unwrap();
        assert_eq!(shown["auth"]["jwtSecret"], REDACTED);
        assert_eq!(shown["limits"]["maxConnections"], 5);
        assert!(shown.get("createdAt").is_none());
        assert!(shown["auth"].get("issuer").is_none(), "absent, not null");
        let e = serde_json::from_value::<EndpointBody>(serde_json::json!({
            "id": "e", "targetUrl": "ws://x/", "limits": {"max_connections": 5}
        }))
        .unwrap_err();
        assert!(
            e.to_string().contains("unknown field `max_connections`"),
            "{e}"
        );
    }
}
