//! One runtime per core. With `worker_threads = N` above 1, portico runs N
//! current-thread tokio runtimes, the main one and N - 1 on threads of their
//! own, rather than tokio's multi-thread runtime: the listen sockets are bound
//! once, on the main runtime, and each accepted connection is handed to the
//! next runtime in turn, where it lives until it closes (TLS, both HTTP sides,
//! its upstream requests). No task moves between threads, and the pools hand
//! a request an idle upstream connection of its own thread first, so wake-ups
//! stay on one thread: the multi-thread runtime's work stealing and cross-thread
//! wake-ups cost 12-25% more CPU per request on two cores
//! (docs/performance-log.md, step 28). nginx's workers are shaped the same way.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// The runtime this thread runs: 0 for the main one, 1.. for the workers.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The index of the runtime the calling thread runs (0: the main runtime, or
/// any thread that is not a worker).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// The worker threads and their runtimes, owned by `portico run`. Dropping
/// it, once the main runtime has drained, stops the runtimes (closing what
/// they still run: idle upstream connections) and waits for their threads.
#[derive(Debug)]
pub struct Workers {
    /// Dropping one ends its worker's `block_on`.
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// Where accepted connections go: the accepting runtime and the workers', in
/// turn. Handles only: a task holding one keeps no runtime alive.
#[derive(Debug)]
pub struct Spread {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Spread {
    /// Where the next connection goes: `None` for the runtime that accepted it
    /// (the main one), else a worker's. Round robin over all of them.
    pub fn next(&self) -> Option<&Handle> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % (self.handles.len() + 1);
        turn.checked_sub(1).and_then(|worker| self.handles.get(worker))
    }
}

impl Workers {
    /// Starts `count` worker threads, each with a current-thread runtime, and
    /// the turns for accepted connections over the main runtime and these.
    pub fn start(count: usize) -> std::io::Result<(Workers, Spread)> {
        let mut workers = Workers { stops: Vec::new(), threads: Vec::new() };
        let mut handles = Vec::with_capacity(count);
        for index in 1..=count {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            handles.push(runtime.handle().clone());
            let thread = std::thread::Builder::new().name(format!("portico-w{index}")).spawn(move || {
                CURRENT.with(|current| current.set(index));
                // Serves what is spawned onto it until told to stop; dropping
                // the runtime then ends the tasks left.
                let _ = runtime.block_on(stopped);
            })?;
            workers.stops.push(stop);
            workers.threads.push(thread);
        }
        Ok((workers, Spread { handles, next: AtomicUsize::new(0) }))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stops.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
