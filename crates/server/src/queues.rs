//! The queue use cases of the [`Engine`]: statistics and flow-control
//! settings. Limits are enforced by the store inside each lease; this side
//! validates changes and wakes the queue's waiting workers when a change may
//! let them have jobs (resumed, or a limit raised or lifted).

use taskwheel_core::queue::{QueuePatch, QueueSettings, QueueStats};
use taskwheel_core::wire::validate_name;

use crate::engine::{Engine, Result};

impl Engine {
    /// Every queue that has jobs or settings, by name.
    pub async fn list_queues(&self, tenant: &str) -> Result<Vec<QueueStats>> {
        Ok(self.store.queue_stats(tenant, None, self.now()).await?)
    }

    /// One queue; a queue nobody used yet is empty and unlimited.
    pub async fn get_queue(&self, tenant: &str, name: &str) -> Result<QueueStats> {
        validate_name("name", name)?;
        let mut found = self
            .store
            .queue_stats(tenant, Some(name), self.now())
            .await?;
        Ok(found.pop().unwrap_or_default())
    }

    /// Changes a queue's settings; every field of `patch` is checked before anything is written.
    pub async fn patch_queue(
        &self,
        tenant: &str,
        name: &str,
        patch: QueuePatch,
    ) -> Result<QueueSettings> {
        validate_name("name", name)?;
        patch.apply_to(QueueSettings::default())?;
        let settings = self
            .store
            .update_queue(tenant, name, patch, self.now())
            .await?;
        self.dispatch.wake(tenant, name);
        Ok(settings)
    }
}
