//! acks=1 on a replicated partition: the proposer of a batch learns where the
//! leader's own log stored it as soon as the log store appended it, before the
//! commit. A batch is known by its bytes (the entry the log store receives holds
//! the very buffer that was proposed); the notice keeps a handle on that buffer,
//! so its address cannot be reused by another batch while the notice waits.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use sluice_protocol::types::Offset;
use tokio::sync::oneshot;

type Notice = (Bytes, oneshot::Sender<(Offset, Offset)>);

/// Batches whose proposers wait for the leader's append.
#[derive(Debug, Default)]
pub struct AppendNotices {
    waiting: Mutex<Vec<Notice>>,
    /// How many wait: the log store skips the lock when none do.
    count: AtomicUsize,
}

fn same(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

impl AppendNotices {
    /// Waits for `batch`'s append; the receiver answers its (base, last) offsets.
    pub fn register(&self, batch: &Bytes) -> oneshot::Receiver<(Offset, Offset)> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().push((batch.clone(), tx));
        self.count.fetch_add(1, Ordering::Release);
        rx
    }

    /// Stops waiting for `batch` (its proposal ended either way).
    pub fn forget(&self, batch: &Bytes) {
        self.take(batch);
    }

    fn take(&self, batch: &Bytes) -> Option<oneshot::Sender<(Offset, Offset)>> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut waiting = self.waiting.lock();
        let i = waiting.iter().position(|(b, _)| same(b, batch))?;
        self.count.fetch_sub(1, Ordering::Release);
        Some(waiting.swap_remove(i).1)
    }

    /// The log store appended `batch` at `base..=last`.
    pub(crate) fn appended(&self, batch: &Bytes, base: Offset, last: Offset) {
        if let Some(tx) = self.take(batch) {
            let _ = tx.send((base, last));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_answers_its_own_buffer_only() {
        let notices = AppendNotices::default();
        let a = Bytes::from(vec![1u8; 16]);
        let twin = Bytes::from(vec![1u8; 16]);
        let mut rx = notices.register(&a);
        notices.appended(&twin, Offset(0), Offset(3));
        assert!(
            rx.try_recv().is_err(),
            "equal bytes elsewhere are another batch"
        );
        notices.appended(&a.clone(), Offset(4), Offset(7));
        assert_eq!(rx.try_recv().ok(), Some((Offset(4), Offset(7))));
        let b = Bytes::from(vec![2u8; 8]);
        let _rx = notices.register(&b);
        notices.forget(&b);
        assert_eq!(notices.count.load(Ordering::Acquire), 0);
        assert!(notices.waiting.lock().is_empty());
    }
}
