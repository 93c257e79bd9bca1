//! Load shedding on resident memory (`limits.max_memory_bytes`): a thread
//! samples the resident size and turns [`MemoryPressure`] on and off.

use std::sync::Arc;
use std::time::Duration;

use crate::shard::limits::MemoryPressure;

/// How often resident memory is sampled against `limits.max_memory_bytes`.
pub const MEMORY_SAMPLE: Duration = Duration::from_millis(100);

/// Samples the resident size on a thread of its own (when a ceiling is
/// set) and turns load shedding on and off.
pub fn watch(memory: &Arc<MemoryPressure>) -> std::io::Result<()> {
    if memory.limit == 0 {
        return Ok(());
    }
    let memory = memory.clone();
    let mut tick = 0u64;
    std::thread::Builder::new()
        .name("memory".into())
        .spawn(move || loop {
            tick += 1;
            if memory.shedding() && tick % 10 == 0 {
                // Once a second while shedding: what sessions freed goes
                // back to the kernel, so the footprint can fall below 80 %.
                crate::sys::release_free_memory();
            }
            if let Some(rss) = crate::sys::resident_bytes() {
                match memory.update(rss) {
                    Some(true) => tracing::warn!(
                        rss,
                        limit = memory.limit,
                        "resident memory above 90 % of limits.max_memory_bytes: new upgrades get 503"
                    ),
                    Some(false) => tracing::info!(
                        rss,
                        limit = memory.limit,
                        "resident memory below 80 % of limits.max_memory_bytes: admitting again"
                    ),
                    None => {}
                }
            }
            std::thread::sleep(MEMORY_SAMPLE);
        })
        .map(|_| ())
}
