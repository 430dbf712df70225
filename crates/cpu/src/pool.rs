//! A persistent thread pool: `KILN_THREADS` threads (default: the machine's cores), the
//! caller being one of them. A job is a number of tasks handed out by an atomic counter;
//! [`Pool::run`] returns only after every task has finished, so tasks may borrow from the
//! caller's stack. One job runs at a time; a caller that finds the pool busy runs its tasks
//! itself.
//!
//! A run of a compiled program forks and joins once per parallel kernel, hundreds of times
//! for a recurrent layer's loop. Waking a sleeping thread costs tens of microseconds on a
//! virtual machine, so a worker that finished a job, and a caller waiting for the last
//! task, first spin for 100 µs on an atomic before sleeping on the condition variable.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a worker watches for the next job, and a caller for its job's end, before
/// sleeping: longer than a kernel's fork-join gap inside one run, short enough that an
/// idle pool costs nothing measurable.
const SPIN: Duration = Duration::from_micros(100);

/// Spins until `ready()` or [`SPIN`] has passed; whether `ready()` became true.
fn spin_until(ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= SPIN {
            return ready();
        }
    }
}

/// The task function of the current job with its lifetime erased (see [`Pool::run`]).
#[derive(Clone, Copy)]
struct JobRef {
    f: *const (dyn Fn(usize) + Sync + 'static),
    tasks: usize,
}

// SAFETY: the pointee is `Sync`, and `Pool::run` keeps it alive until no worker uses it.
unsafe impl Send for JobRef {}

struct State {
    job: Option<JobRef>,
    epoch: u64,
    busy: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    /// `state.epoch`, readable without the lock (a spinning worker watches it).
    epoch: AtomicU64,
    /// `state.busy`, readable without the lock (a spinning caller watches it).
    busy: AtomicUsize,
    work: Condvar,
    done: Condvar,
    next: AtomicUsize,
    panicked: AtomicBool,
}

/// A task of a [`Pool::run`] job panicked (the other tasks still ran).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a pool task panicked")]
pub struct TaskPanicked;

/// A persistent pool of worker threads.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    running: Mutex<()>,
    size: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("size", &self.size).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs tasks of `job` until the counter passes its end; records a panic instead of
/// unwinding.
fn drain(shared: &Shared, job: JobRef) {
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.tasks {
            return;
        }
        // SAFETY: `job.f` points to the closure passed to `Pool::run`, which is still
        // running: it waits for `busy == 0` (workers) and finishes its own `drain` before
        // returning, and the closure outlives that call.
        let f = unsafe { &*job.f };
        if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
            shared.panicked.store(true, Ordering::Relaxed);
        }
    }
}

fn worker(shared: Arc<Shared>) {
    let mut seen = 0u64;
    loop {
        spin_until(|| shared.epoch.load(Ordering::Acquire) != seen);
        let job = {
            let mut st = lock(&shared.state);
            loop {
                if st.shutdown {
                    return;
                }
                if let Some(job) = st.job
                    && st.epoch != seen
                {
                    seen = st.epoch;
                    st.busy += 1;
                    shared.busy.store(st.busy, Ordering::Release);
                    break job;
                }
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        drain(&shared, job);
        let mut st = lock(&shared.state);
        st.busy -= 1;
        shared.busy.store(st.busy, Ordering::Release);
        if st.busy == 0 {
            shared.done.notify_all();
        }
    }
}

impl Pool {
    /// A pool of `size` threads in total (the caller plus `size - 1` workers).
    pub fn new(size: usize) -> Pool {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                job: None,
                epoch: 0,
                busy: 0,
                shutdown: false,
            }),
            epoch: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            work: Condvar::new(),
            done: Condvar::new(),
            next: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        });
        let mut workers = Vec::new();
        for i in 1..size {
            let s = Arc::clone(&shared);
            match std::thread::Builder::new()
                .name(format!("kiln-cpu-{i}"))
                .spawn(move || worker(s))
            {
                Ok(h) => workers.push(h),
                Err(_) => break,
            }
        }
        let size = workers.len() + 1;
        Pool {
            shared,
            workers,
            running: Mutex::new(()),
            size,
        }
    }

    /// Threads that run tasks (workers plus the caller).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `f(0) .. f(tasks - 1)` on the pool and returns when all have finished; `Err`
    /// if a task panicked.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) -> Result<(), TaskPanicked> {
        if tasks == 0 {
            return Ok(());
        }
        let guard = match self.running.try_lock() {
            Ok(g) if self.size > 1 && tasks > 1 => g,
            _ => {
                let mut failed = false;
                for i in 0..tasks {
                    failed |= catch_unwind(AssertUnwindSafe(|| f(i))).is_err();
                }
                return if failed { Err(TaskPanicked) } else { Ok(()) };
            }
        };
        // SAFETY: only the lifetime is erased. The reference is published to workers below
        // and withdrawn (`job = None`) before this function waits for `busy == 0`; a worker
        // only dereferences it between incrementing and decrementing `busy`, so no use
        // outlives this call, during which `f` is borrowed.
        let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe {
            std::mem::transmute::<
                *const (dyn Fn(usize) + Sync + '_),
                *const (dyn Fn(usize) + Sync + 'static),
            >(f)
        };
        let job = JobRef { f: erased, tasks };
        self.shared.panicked.store(false, Ordering::Relaxed);
        self.shared.next.store(0, Ordering::Relaxed);
        {
            let mut st = lock(&self.shared.state);
            st.job = Some(job);
            st.epoch = st.epoch.wrapping_add(1);
            self.shared.epoch.store(st.epoch, Ordering::Release);
        }
        self.shared.work.notify_all();
        drain(&self.shared, job);
        let busy = {
            let mut st = lock(&self.shared.state);
            st.job = None;
            st.busy
        };
        // With the job withdrawn no worker joins it any more: wait for those inside it.
        if busy == 0 || !spin_until(|| self.shared.busy.load(Ordering::Acquire) == 0) {
            let mut st = lock(&self.shared.state);
            while st.busy > 0 {
                st = self.shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
        drop(guard);
        if self.shared.panicked.load(Ordering::Relaxed) {
            Err(TaskPanicked)
        } else {
            Ok(())
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.work.notify_all();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// The thread count from `KILN_THREADS`, or the available parallelism.
pub fn configured_threads() -> usize {
    std::env::var("KILN_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process-wide pool, created on first use with [`configured_threads`] threads.
pub fn global() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(configured_threads()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once() {
        let pool = Pool::new(3);
        let hits: Vec<AtomicU64> = (0..100).map(|_| AtomicU64::new(0)).collect();
        for _ in 0..20 {
            pool.run(100, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 20));
    }

    /// Jobs back to back (workers still spinning) and after idle gaps longer than the spin
    /// (workers asleep on the condition variable) both run every task exactly once.
    #[test]
    fn jobs_run_whether_workers_spin_or_sleep() {
        let pool = Pool::new(2);
        let sum = AtomicU64::new(0);
        for round in 0..200u64 {
            if round % 20 == 0 {
                std::thread::sleep(SPIN * 3);
            }
            pool.run(4, &|i| {
                sum.fetch_add(i as u64 + 1, Ordering::Relaxed);
            })
            .unwrap();
        }
        assert_eq!(sum.load(Ordering::Relaxed), 200 * 10);
    }

    #[test]
    fn a_panicking_task_is_reported() {
        let pool = Pool::new(2);
        let r = pool.run(8, &|i| {
            if i == 5 {
                panic!("task 5");
            }
        });
        assert_eq!(r, Err(TaskPanicked));
        let sum = AtomicU64::new(0);
        pool.run(10, &|i| {
            sum.fetch_add(i as u64, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }
}
