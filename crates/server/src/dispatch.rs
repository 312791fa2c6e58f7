//! Long-poll waiters per queue. A worker whose lease found nothing registers
//! here for each queue it asked about; when jobs become available in a queue,
//! every waiter on it is woken and tries to lease again. Registration happens
//! before the lease attempt, and a wake-up before the waiter sleeps is kept as
//! a permit, so no wake-up is lost between "found nothing" and "went to sleep".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

type QueueKey = (String, String);

#[derive(Default)]
pub(crate) struct Dispatch {
    // A std Mutex: held for a push or a drain, never across an await.
    waiters: Mutex<HashMap<QueueKey, Vec<Arc<Notify>>>>,
}

impl Dispatch {
    /// Registers one waiter on every queue in `queues`; it unregisters on drop.
    pub(crate) fn register(self: &Arc<Self>, tenant: &str, queues: &[String]) -> Registration {
        let notify = Arc::new(Notify::new());
        let keys: Vec<QueueKey> = queues
            .iter()
            .map(|q| (tenant.to_string(), q.clone()))
            .collect();
        let mut waiters = self.waiters.lock().expect("dispatch lock");
        for key in &keys {
            waiters
                .entry(key.clone())
                .or_default()
                .push(Arc::clone(&notify));
        }
        Registration {
            dispatch: Arc::clone(self),
            notify,
            keys,
        }
    }

    /// Wakes every waiter on this queue.
    pub(crate) fn wake(&self, tenant: &str, queue: &str) {
        let woken = {
            let mut waiters = self.waiters.lock().expect("dispatch lock");
            waiters.remove(&(tenant.to_string(), queue.to_string()))
        };
        for notify in woken.into_iter().flatten() {
            notify.notify_one();
        }
    }

    /// Wakes every waiter of every queue.
    pub(crate) fn wake_all(&self) {
        let woken = std::mem::take(&mut *self.waiters.lock().expect("dispatch lock"));
        for notify in woken.into_values().flatten() {
            notify.notify_one();
        }
    }

    /// How many waiters are registered in all.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiters
            .lock()
            .expect("dispatch lock")
            .values()
            .map(Vec::len)
            .sum()
    }
}

/// One long-poll's place in the waiter lists.
pub(crate) struct Registration {
    dispatch: Arc<Dispatch>,
    notify: Arc<Notify>,
    keys: Vec<QueueKey>,
}

impl Registration {
    /// Resolves when one of the queues was woken since registration.
    pub(crate) async fn woken(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut waiters = self.dispatch.waiters.lock().expect("dispatch lock");
        for key in &self.keys {
            if let Some(list) = waiters.get_mut(key) {
                list.retain(|n| !Arc::ptr_eq(n, &self.notify));
                if list.is_empty() {
                    waiters.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wake_before_waiting_is_not_lost() {
        let dispatch = Arc::new(Dispatch::default());
        let reg = dispatch.register("t", &["q".to_string()]);
        dispatch.wake("t", "q");
        tokio::time::timeout(Duration::from_secs(5), reg.woken())
            .await
            .expect("the permit is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_named_queue_wakes() {
        let dispatch = Arc::new(Dispatch::default());
        let reg = dispatch.register("t", &["a".to_string(), "b".to_string()]);
        dispatch.wake("t", "c");
        dispatch.wake("other-tenant", "a");
        assert!(
            tokio::time::timeout(Duration::from_secs(1), reg.woken())
                .await
                .is_err()
        );
        dispatch.wake("t", "b");
        assert!(
            tokio::time::timeout(Duration::from_secs(1), reg.woken())
                .await
                .is_ok()
        );
    }

    #[test]
    fn dropping_a_registration_unregisters_it() {
        let dispatch = Arc::new(Dispatch::default());
        let reg = dispatch.register("t", &["a".to_string(), "b".to_string()]);
        assert_eq!(dispatch.waiting(), 2);
        drop(reg);
        assert_eq!(dispatch.waiting(), 0);
    }
}
