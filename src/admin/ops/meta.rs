//! Per-message metadata on `/ops`: shards tap an endpoint's messages only
//! while some reader asked for them.

use crate::admin::state::AppState;

/// One reader's interest in an endpoint's per-message metadata; shards tap
/// an endpoint while at least one reader holds such an interest.
pub(super) struct MetaInterest {
    st: AppState,
    endpoint: String,
}

impl MetaInterest {
    pub(super) fn new(st: &AppState, endpoint: &str) -> MetaInterest {
        let first = {
            let mut subs = st.meta_subs.lock().expect("meta_subs");
            let n = subs.entry(endpoint.to_string()).or_default();
            *n += 1;
            *n == 1
        };
        if first {
            tell_shards(st, endpoint, true);
        }
        MetaInterest {
            st: st.clone(),
            endpoint: endpoint.to_string(),
        }
    }
}

impl Drop for MetaInterest {
    fn drop(&mut self) {
        let last = {
            let mut subs = self.st.meta_subs.lock().expect("meta_subs");
            let n = subs.entry(self.endpoint.clone()).or_default();
            *n = n.saturating_sub(1);
            if *n == 0 {
                subs.remove(&self.endpoint);
                true
            } else {
                false
            }
        };
        if last {
            tell_shards(&self.st, &self.endpoint, false);
        }
    }
}

fn tell_shards(st: &AppState, endpoint: &str, on: bool) {
    let commands = st.commands.clone();
    let endpoint = endpoint.to_string();
    tokio::spawn(async move {
        for c in commands {
            let _ = c
                .send(crate::bridge::ShardCommand::MessageMeta {
                    endpoint: endpoint.clone(),
                    on,
                })
                .await;
        }
    });
}
