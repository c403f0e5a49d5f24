//! Running a whole pass on one of rayon's workers instead of calling into rayon op by op.
//!
//! candle's CPU products (through `gemm`) and swerl's fused kernels split their work with
//! rayon. Called from a thread outside rayon's pool, each such op injects a job, parks the
//! calling thread on a latch and wakes a worker, and the worker wakes the caller again when it
//! is done: two wake-ups per op, hundreds of ops per training step. On a worker, an op runs its
//! first half in place and hands the rest to the other workers, which take it while they are
//! still spinning from the op before. [`on_worker`] moves a pass onto a worker once, so that
//! its ops start from there. `SWERL_ON_WORKER=0` in the environment turns this off, for
//! comparisons.

/// Runs `f` on a worker of rayon's global pool and returns its result: inline when the calling
/// thread already is a rayon worker (of any pool) or with `SWERL_ON_WORKER=0`.
pub(crate) fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() || off() {
        return f();
    }
    rayon::scope(|_| f())
}

fn off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("SWERL_ON_WORKER").is_some_and(|v| v == "0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_worker_and_nests_inline() {
        assert_eq!(rayon::current_thread_index(), None);
        let (outer, inner) = on_worker(|| {
            let outer = std::thread::current().id();
            (rayon::current_thread_index(), on_worker(|| (outer == std::thread::current().id(), 7)))
        });
        if !off() {
            assert!(outer.is_some());
        }
        assert_eq!(inner, (true, 7));
    }

    #[test]
    fn results_and_errors_come_back() {
        let r: Result<u32, String> = on_worker(|| Err("no".to_string()));
        assert_eq!(r, Err("no".to_string()));
        assert_eq!(on_worker(|| 1 + 1), 2);
    }
}
