//! The group-commit flusher: it knows files and completions, nothing else. A log
//! that wrote something submits the files that make it durable and a completion;
//! one thread takes every request queued since its last cycle, syncs each distinct
//! file once, and then completes every request of the cycle (openraft's
//! `IOFlushed` has exactly this shape). What a completion means (a high watermark
//! on one node, a Raft log flush with replication) is the submitter's business.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tracing::error;

/// Called once the files of a request are synced, with the error if one failed.
pub type Completion = Box<dyn FnOnce(Result<(), Arc<std::io::Error>>) + Send>;

/// Files to sync and what to call once they are.
pub struct FlushRequest {
    pub files: Vec<Arc<File>>,
    pub done: Completion,
}

impl std::fmt::Debug for FlushRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushRequest")
            .field("files", &self.files.len())
            .finish()
    }
}

#[derive(Debug, Default)]
struct Queue {
    requests: Vec<FlushRequest>,
    shutdown: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// Handle to the flusher thread.
#[derive(Debug)]
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    pub fn start() -> Arc<Self> {
        let shared = Arc::new(Shared::default());
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

    /// Queues a request for the next cycle. After shutdown it is synced and
    /// completed at once, on the caller's thread.
    pub fn submit(&self, request: FlushRequest) {
        let mut q = self.shared.queue.lock();
        if q.shutdown {
            drop(q);
            sync_and_complete(vec![request]);
            return;
        }
        // The thread waits only while the queue is empty: wake it once per cycle.
        let was_empty = q.requests.is_empty();
        q.requests.push(request);
        drop(q);
        if was_empty {
            self.shared.wake.notify_one();
        }
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
        let requests = {
            let mut q = shared.queue.lock();
            while q.requests.is_empty() && !q.shutdown {
                shared.wake.wait(&mut q);
            }
            if q.requests.is_empty() && q.shutdown {
                return;
            }
            std::mem::take(&mut q.requests)
        };
        sync_and_complete(requests);
    }
}

/// One cycle: every distinct file once, then every completion.
fn sync_and_complete(requests: Vec<FlushRequest>) {
    let mut outcomes: HashMap<*const File, Result<(), Arc<std::io::Error>>> = HashMap::new();
    for file in requests.iter().flat_map(|r| &r.files) {
        outcomes
            .entry(Arc::as_ptr(file))
            .or_insert_with(|| file.sync_data().map_err(Arc::new));
    }
    for request in requests {
        let result = request
            .files
            .iter()
            .find_map(|f| outcomes.get(&Arc::as_ptr(f)).and_then(|r| r.clone().err()))
            .map_or(Ok(()), Err);
        (request.done)(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_request_of_a_cycle_is_completed_after_its_files_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = Arc::new(File::create(dir.path().join("a")).expect("file"));
        let flusher = Flusher::start();
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let done = Arc::clone(&done);
            flusher.submit(FlushRequest {
                files: vec![Arc::clone(&file)],
                done: Box::new(move |r| {
                    r.expect("synced");
                    done.fetch_add(1, Ordering::SeqCst);
                }),
            });
        }
        flusher.shutdown();
        assert_eq!(done.load(Ordering::SeqCst), 100);
        // After shutdown a request is still synced and completed.
        let late = Arc::clone(&done);
        flusher.submit(FlushRequest {
            files: vec![file],
            done: Box::new(move |r| {
                r.expect("synced");
                late.fetch_add(1, Ordering::SeqCst);
            }),
        });
        assert_eq!(done.load(Ordering::SeqCst), 101);
    }

    #[test]
    fn a_failed_sync_is_reported_to_its_requests() {
        // fdatasync on a socket fails (EINVAL): a file that cannot be synced.
        let (reader, _writer) = std::os::unix::net::UnixStream::pair().expect("pair");
        let fd: std::os::fd::OwnedFd = reader.into();
        let file = Arc::new(File::from(fd));
        let result = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&result);
        sync_and_complete(vec![FlushRequest {
            files: vec![file],
            done: Box::new(move |r| *seen.lock() = Some(r.is_err())),
        }]);
        assert_eq!(
            *result.lock(),
            Some(true),
            "fdatasync on a socket fails (EINVAL)"
        );
    }
}
