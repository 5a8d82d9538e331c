//! The group-commit flusher: one thread syncs every log that was written since its
//! last cycle, then commits each of them up to what it synced. Waiters of one cycle
//! share one `fdatasync` per file.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use tracing::error;

use crate::replica::Replica;

/// Bumped after every flush cycle that committed something; fetch requests that wait
/// for data (`max_wait_ms`) watch it.
pub type CommitSignal = watch::Receiver<u64>;

#[derive(Debug, Default)]
struct Queue {
    dirty: Vec<Arc<Replica>>,
    shutdown: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    commits: watch::Sender<u64>,
}

/// Handle to the flusher thread.
#[derive(Debug)]
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    pub fn start() -> Arc<Self> {
        let (commits, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            commits,
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sluice-flusher".into())
            .spawn(move || run(&worker))
            .expect("spawning the flusher thread");
        Arc::new(Flusher {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a replica for the next cycle (once, however often it is called).
    pub(crate) fn mark_dirty(&self, replica: &Arc<Replica>) {
        if replica.dirty.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut q = self.shared.queue.lock();
        q.dirty.push(Arc::clone(replica));
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Wakes fetches that wait for data after a commit made outside the flusher.
    pub(crate) fn notify_commit(&self) {
        self.shared.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn commit_signal(&self) -> CommitSignal {
        self.shared.commits.subscribe()
    }

    /// Finishes the cycle in progress and the queued work, then stops the thread.
    pub fn shutdown(&self) {
        self.shared.queue.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().take() {
            if t.join().is_err() {
                error!("the flusher thread panicked");
            }
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let batch = {
            let mut q = shared.queue.lock();
            while q.dirty.is_empty() && !q.shutdown {
                shared.wake.wait(&mut q);
            }
            if q.dirty.is_empty() && q.shutdown {
                return;
            }
            std::mem::take(&mut q.dirty)
        };
        let mut committed = false;
        for replica in batch {
            replica.dirty.store(false, Ordering::Release);
            committed |= replica.flush_and_commit();
        }
        if committed {
            shared.commits.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}
