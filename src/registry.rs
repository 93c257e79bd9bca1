//! Builds endpoint snapshots from configuration. The per-endpoint admission
//! counters are kept here across versions so that a changed endpoint keeps
//! counting the sessions it already has.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::bridge::{ClientAuth, Endpoint, EndpointSnapshot};
use crate::config::{EndpointAuth, EndpointConfig, TargetUrl};

/// Leeway for `exp`/`nbf`, seconds (the spec allows at most 30).
pub const JWT_LEEWAY_S: u64 = 10;

/// Produces snapshots; lives on the control side.
#[derive(Default)]
pub struct Registry {
    version: u64,
    counters: HashMap<String, Arc<AtomicUsize>>,
    /// The ids of the last snapshot made.
    ids: Vec<String>,
}

impl Registry {
    /// A snapshot of `endpoints` (already validated).
    pub fn snapshot(
        &mut self,
        endpoints: &[EndpointConfig],
    ) -> Result<Arc<EndpointSnapshot>, String> {
        self.version += 1;
        let mut map = HashMap::with_capacity(endpoints.len());
        for cfg in endpoints {
            let target = TargetUrl::parse(&cfg.target_url)
                .map_err(|m| format!("endpoint {}: target_url {m}", cfg.id))?;
            let auth = cfg
                .auth
                .as_ref()
                .map(compile_auth)
                .transpose()
                .map_err(|m| format!("endpoint {}: auth: {m}", cfg.id))?;
            let active = self.counters.entry(cfg.id.clone()).or_default().clone();
            let mut cfg = cfg.clone();
            if cfg.name.is_empty() {
                cfg.name = cfg.id.clone();
            }
            map.insert(
                cfg.id.clone(),
                Arc::new(Endpoint {
                    cfg,
                    target,
                    auth,
                    active,
                }),
            );
        }
        let mut ids: Vec<String> = map.keys().cloned().collect();
        ids.sort_unstable();
        self.ids = ids;
        Ok(Arc::new(EndpointSnapshot {
            version: self.version,
            endpoints: map,
        }))
    }

    /// The endpoint ids of the last snapshot, sorted (what the shards route
    /// by, once it is published).
    pub fn endpoint_ids(&self) -> &[String] {
        &self.ids
    }
}

fn compile_auth(a: &EndpointAuth) -> Result<ClientAuth, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let (key, alg) = match (&a.jwt_secret, &a.jwt_public_key_pem) {
        (Some(s), None) => (
            DecodingKey::from_secret(s.as_bytes()).map_err(|e| e.to_string())?,
            Algorithm::HS256,
        ),
        (None, Some(p)) => (
            DecodingKey::from_rsa_pem(p.as_bytes()).map_err(|e| e.to_string())?,
            Algorithm::RS256,
        ),
        _ => return Err("needs exactly one of jwt_secret or jwt_public_key_pem".into()),
    };
    let mut v = Validation::new(alg);
    v.leeway = JWT_LEEWAY_S;
    v.validate_exp = true;
    v.validate_nbf = true;
    // A configured audience or issuer must be present, not only right when
    // present; `nbf` is checked when given; a claim of the wrong type fails.
    let mut required = vec!["exp"];
    match &a.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    if let Some(iss) = &a.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    v.set_required_spec_claims(&required);
    Ok(ClientAuth { key, validation: v })
}
