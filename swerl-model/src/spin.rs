//! Decoding's short parallel loops on helper threads that spin between them.
//!
//! A decoding step runs about ten parallel loops per layer (the weight products, attention), each
//! a few tens of microseconds long. rayon, called from a thread outside its pool, hands every
//! such loop to a worker and parks the caller on a latch until it is done: two thread wake-ups
//! per loop, and workers that fall asleep between loops cost a third. On a virtual machine a
//! wake-up costs microseconds of system time (`perf` of one bf16 sequence: a quarter of the
//! cycles in the scheduler's wake-up and context-switch paths).
//!
//! [`chunks_mut`] runs a loop's tasks on the calling thread together with `threads - 1` helper
//! threads (rayon's thread count, so `RAYON_NUM_THREADS` applies). The caller takes tasks itself
//! instead of parking; helpers spin on an atomic counter for [`SPIN`] after each loop before
//! they park, so that the loops of a decoding step reach them without a wake-up, as llama.cpp's
//! threads spin through a graph. One loop runs at a time: a loop started while another runs (a
//! second thread decoding, a nested loop) or with `SWERL_SPIN_POOL=0` in the environment runs on
//! rayon as before.
//!
//! The pool hands the helpers a pointer to the caller's closure, whose lifetime the compiler
//! cannot follow across threads: this module is one of the crate's three uses of `unsafe`
//! (with `matvec::bf16dot` and `matvec::prefetch`), one lifetime erasure whose soundness rests
//! on the caller not returning before every task has finished (see [`Pool::run`]).

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long a helper spins for the next loop before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// Runs `f(i, chunk)` for every `chunk_len`-element chunk of `data` (the last may be shorter),
/// in parallel, and returns once every call has returned. A panic in `f` is resumed on the
/// calling thread after the other tasks have finished.
pub(crate) fn chunks_mut<T: Send>(data: &mut [T], chunk_len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let chunk_len = chunk_len.max(1);
    let tasks = data.len().div_ceil(chunk_len);
    if tasks <= 1 {
        if !data.is_empty() {
            f(0, data);
        }
        return;
    }
    let Some(pool) = Pool::get() else {
        data.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c));
        return;
    };
    // Each task takes its chunk out of its own slot: uncontended locks, one per task.
    let slots: Vec<Mutex<&mut [T]>> = data.chunks_mut(chunk_len).map(Mutex::new).collect();
    let task = |i: usize| {
        let mut chunk = slots[i].lock().unwrap_or_else(|e| e.into_inner());
        f(i, &mut chunk);
    };
    if !pool.run(tasks, &task) {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// The helpers' shared state.
struct Pool {
    /// Held by the thread whose loop the helpers serve.
    busy: AtomicBool,
    /// Bumped when a loop is published: what helpers spin on.
    epoch: AtomicU64,
    /// The current loop.
    job: Mutex<Option<Arc<Job>>>,
    /// Helpers parked (or about to park) on `wake`.
    sleeping: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

/// One parallel loop: tasks `0..tasks`, claimed one at a time.
struct Job {
    /// The caller's task closure, its lifetime erased (see [`Pool::run`]).
    f: *const (dyn Fn(usize) + Sync),
    tasks: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

// SAFETY: `f` points to a `Sync` closure, so calling it from several threads at once is sound;
// it is only called while the loop's caller waits in `Pool::run` (see there).
unsafe impl Send for Job {}
// SAFETY: as for `Send`.
unsafe impl Sync for Job {}

impl Job {
    /// Claims and runs tasks until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.tasks {
                return;
            }
            // SAFETY: task `i < tasks` was claimed, so `done` has not reached `tasks` and the
            // caller is still inside `Pool::run`, which keeps the closure alive.
            let f = unsafe { &*self.f };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(i))) {
                self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(payload);
            }
            // Release: the task's writes happen before the caller sees it done.
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

impl Pool {
    /// The process's pool, started on first use; `None` with one thread or `SWERL_SPIN_POOL=0`.
    fn get() -> Option<&'static Pool> {
        static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();
        *POOL.get_or_init(|| {
            let off = std::env::var("SWERL_SPIN_POOL").is_ok_and(|v| v == "0");
            let helpers = rayon::current_num_threads().saturating_sub(1);
            if off || helpers == 0 {
                return None;
            }
            let pool: &'static Pool = Box::leak(Box::new(Pool {
                busy: AtomicBool::new(false),
                epoch: AtomicU64::new(0),
                job: Mutex::new(None),
                sleeping: AtomicUsize::new(0),
                sleep_lock: Mutex::new(()),
                wake: Condvar::new(),
            }));
            for i in 0..helpers {
                let spawned =
                    std::thread::Builder::new().name(format!("swerl-spin-{i}")).spawn(move || pool.helper());
                if spawned.is_err() {
                    // No helper thread (resource limits): rayon it is.
                    return None;
                }
            }
            Some(pool)
        })
    }

    /// Runs tasks `0..tasks` of `f` on this thread and the helpers; `false` (nothing run) when
    /// another loop holds the pool.
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
        if self.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return false;
        }
        // SAFETY: the erased lifetime is never outlived. Helpers call `f` only for a task they
        // claimed below `tasks`, and each such call ends with `done` being incremented; this
        // function returns (and the borrow of `f` ends) only after `done == tasks`, and no task
        // can be claimed after all have been. A helper may still hold the `Job` afterwards, but
        // only to find the task counter exhausted, without touching `f`.
        let f: *const (dyn Fn(usize) + Sync + '_) = f;
        let f = unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(
                f,
            )
        };
        let job = Arc::new(Job {
            f,
            tasks,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panic: Mutex::new(None),
        });
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&job));
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) > 0 {
            let _guard = self.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
        job.work();
        let mut spins = 0u32;
        while job.done.load(Ordering::Acquire) < tasks {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) {
                // A helper was descheduled mid-task: let it run.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.busy.store(false, Ordering::Release);
        let payload = job.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(payload) = payload {
            resume_unwind(payload);
        }
        true
    }

    /// A helper thread's life: wait for a loop (spinning, then parked), take part in it.
    fn helper(&self) {
        let mut seen = self.epoch.load(Ordering::SeqCst);
        loop {
            let start = Instant::now();
            let mut spins = 0u32;
            while self.epoch.load(Ordering::Acquire) == seen {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1024) && start.elapsed() > SPIN {
                    self.park(seen);
                } else {
                    std::hint::spin_loop();
                }
            }
            seen = self.epoch.load(Ordering::SeqCst);
            let job = self.job.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(job) = job {
                job.work();
            }
        }
    }

    /// Parks until the epoch moves past `seen`. A publisher bumps the epoch before it reads
    /// `sleeping`, and this reads the epoch after raising `sleeping` (both sequentially
    /// consistent), so one of the two sees the other: no wake-up is lost.
    fn park(&self, seen: u64) {
        let mut guard = self.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        while self.epoch.load(Ordering::SeqCst) == seen {
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        self.sleeping.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_visited_once_with_its_index() {
        for (len, chunk) in [(0, 3), (1, 1), (10, 3), (1000, 7), (4096, 64), (5, 100)] {
            let mut data = vec![0usize; len];
            chunks_mut(&mut data, chunk, |i, c| {
                for (j, v) in c.iter_mut().enumerate() {
                    *v += i * chunk + j + 1;
                }
            });
            let want: Vec<usize> = (1..=len).collect();
            assert_eq!(data, want, "len {len} chunk {chunk}");
        }
    }

    #[test]
    fn concurrent_and_nested_loops_fall_back_and_still_finish() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for round in 0..200 {
                        let mut outer = vec![0u64; 64];
                        chunks_mut(&mut outer, 4, |i, c| {
                            // A nested loop finds the pool busy (or free) and still runs.
                            let mut inner = vec![0u64; 16];
                            chunks_mut(&mut inner, 2, |_, d| d.iter_mut().for_each(|x| *x = 1));
                            let s: u64 = inner.iter().sum();
                            c.iter_mut().for_each(|x| *x = s + i as u64 + t + round);
                        });
                        for (j, &x) in outer.iter().enumerate() {
                            assert_eq!(x, 16 + (j / 4) as u64 + t + round);
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn loops_after_the_helpers_parked_still_run() {
        let mut data = vec![0u32; 100];
        chunks_mut(&mut data, 10, |_, c| c.iter_mut().for_each(|x| *x += 1));
        std::thread::sleep(SPIN * 3);
        chunks_mut(&mut data, 10, |_, c| c.iter_mut().for_each(|x| *x += 1));
        assert!(data.iter().all(|&x| x == 2));
    }

    #[test]
    fn a_panicking_task_panics_the_caller_after_the_others_finish() {
        let mut data = vec![0u32; 64];
        let result = catch_unwind(AssertUnwindSafe(|| {
            chunks_mut(&mut data, 4, |i, c| {
                if i == 3 {
                    panic!("task 3");
                }
                c.iter_mut().for_each(|x| *x = 1);
            });
        }));
        let payload = result.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task 3"));
        let untouched: Vec<usize> =
            data.iter().enumerate().filter(|(_, x)| **x == 0).map(|(i, _)| i).collect();
        assert_eq!(untouched, (12..16).collect::<Vec<_>>());
        // The pool is usable afterwards.
        chunks_mut(&mut data, 4, |_, c| c.iter_mut().for_each(|x| *x = 2));
        assert!(data.iter().all(|&x| x == 2));
    }
}
