//! The schedule use cases of the [`Engine`]: validate, store, and re-arm the
//! timer loop when a schedule's next tick is sooner than anything it knew.
//! Firing itself happens in [`Engine::tick`], inside the store.

use taskwheel_core::firing::ScheduleId;
use taskwheel_core::recurring::{ScheduleRecord, ScheduleRequest};
use taskwheel_core::{FieldError, Job, Timestamp};
use taskwheel_store::ScheduleKey;

use crate::engine::{Engine, Result};

/// The most fire times `next` computes in one call.
pub(crate) const MAX_NEXT: usize = 1000;

/// A schedule is named in paths by its id or by its name.
pub(crate) fn schedule_key(raw: &str) -> ScheduleKey {
    match raw.parse::<ScheduleId>() {
        Ok(id) => ScheduleKey::Id(id),
        Err(_) => ScheduleKey::Name(raw.to_string()),
    }
}

impl Engine {
    pub async fn create_schedule(
        &self,
        tenant: &str,
        request: ScheduleRequest,
    ) -> Result<ScheduleRecord> {
        let paused = request.paused.unwrap_or(false);
        let record =
            ScheduleRecord::create(tenant, request.into_definition()?, paused, self.now())?;
        let record = self.store.create_schedule(record).await?;
        self.arm_schedule(&record);
        Ok(record)
    }

    pub async fn get_schedule(&self, tenant: &str, key: &str) -> Result<ScheduleRecord> {
        Ok(self.store.get_schedule(tenant, &schedule_key(key)).await?)
    }

    pub async fn list_schedules(&self, tenant: &str) -> Result<Vec<ScheduleRecord>> {
        Ok(self.store.list_schedules(tenant).await?)
    }

    /// Lays `request` over the stored schedule; a new timing restarts from now.
    pub async fn patch_schedule(
        &self,
        tenant: &str,
        key: &str,
        request: ScheduleRequest,
    ) -> Result<ScheduleRecord> {
        let current = self.get_schedule(tenant, key).await?;
        let paused = request.paused;
        let definition = request.apply_to(current.definition.clone());
        let mut record = current.redefine(definition, self.now())?;
        if let Some(paused) = paused {
            record.paused = paused;
        }
        let record = self.store.update_schedule(record).await?;
        self.arm_schedule(&record);
        Ok(record)
    }

    /// Pauses or resumes; ticks missed while paused follow the misfire policy on resume.
    pub async fn set_paused(
        &self,
        tenant: &str,
        key: &str,
        paused: bool,
    ) -> Result<ScheduleRecord> {
        let mut record = self.get_schedule(tenant, key).await?;
        record.paused = paused;
        record.updated_at = self.now();
        let record = self.store.update_schedule(record).await?;
        self.arm_schedule(&record);
        Ok(record)
    }

    pub async fn delete_schedule(&self, tenant: &str, key: &str) -> Result<()> {
        let record = self.get_schedule(tenant, key).await?;
        Ok(self.store.delete_schedule(tenant, record.id).await?)
    }

    /// Fires the schedule once now, outside its timing (overlap policy not applied).
    pub async fn trigger_schedule(&self, tenant: &str, key: &str) -> Result<Job> {
        let record = self.get_schedule(tenant, key).await?;
        let job = self
            .store
            .trigger_schedule(tenant, record.id, self.now())
            .await?;
        self.dispatch.wake(&job.tenant, &job.queue);
        Ok(job)
    }

    /// The next `count` fire times, from the next unfired tick on.
    pub async fn next_fires(
        &self,
        tenant: &str,
        key: &str,
        count: usize,
    ) -> Result<Vec<Timestamp>> {
        if count == 0 || count > MAX_NEXT {
            return Err(FieldError::new("count", format!("must be 1 to {MAX_NEXT}")).into());
        }
        let record = self.get_schedule(tenant, key).await?;
        let schedule = record.definition.schedule(record.created_at)?;
        let Some(first) = record.next_fire_at else {
            return Ok(Vec::new());
        };
        let end = record.definition.end_at;
        Ok(std::iter::once(first)
            .chain(schedule.upcoming(first))
            .take_while(|t| end.is_none_or(|end| *t <= end))
            .take(count)
            .collect())
    }

    fn arm_schedule(&self, record: &ScheduleRecord) {
        if let (false, Some(next)) = (record.paused, record.next_fire_at) {
            self.timers.arm(next);
        }
    }
}
