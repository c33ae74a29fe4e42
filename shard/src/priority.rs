//! CPU priority classes of a node's work, so that one tenant's ingest never stands in the way of
//! another tenant's searches on a busy node.
//!
//! - Searches (and every request's own handling) run at normal priority: on tokio's workers and
//!   its blocking pool, through the node's fair scheduler.
//! - [`Class::Ingest`]: the CPU of writes (parsing large batches, WAL append, applying points)
//!   runs at SCHED_BATCH, nice 10. A search that wakes up preempts it at once; under a
//!   sustained search load writes still get about a tenth of a core's share each, so they slow
//!   down rather than stop.
//! - [`Class::Background`]: index builds run at SCHED_BATCH, nice 19: they take every core
//!   nobody else wants, and on a node that is never idle they still get a small share (a
//!   nice-19 thread weighs 15 against a search thread's 1,024: about 1.5% of a core beside one
//!   busy search thread), so a build finishes. They ran at SCHED_IDLE before, whose weight of 3
//!   left them 0.3%: on a node whose searches never stopped a build took hundreds of times
//!   its CPU time, and points stayed scanned exactly all that while.
//!
//! Each class has an elastic pool of its own: a tokio runtime used only for its blocking pool,
//! whose threads lower their priority once, when they start (an unprivileged thread can lower
//! its priority but never raise it again, so the threads are never shared with other work).
//! Threads are spawned on demand and leave after 10 s idle, as in tokio's own blocking pool, so
//! one tenant's slow job never queues another tenant's behind it.
//! Where priorities cannot be set (another OS, a sandbox), jobs run at normal priority and a
//! warning is logged once.

use std::sync::OnceLock;
use std::time::Duration;

use tessera_core::{Error, Result};
use tokio::runtime::Runtime;

/// A class of background CPU work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Writes: SCHED_BATCH, nice 10.
    Ingest,
    /// Index builds: SCHED_BATCH, nice 19.
    Background,
}

/// Threads one class may have at once; jobs beyond wait for a free one.
const MAX_THREADS: usize = 256;
/// The nice value of [`Class::Ingest`].
pub const INGEST_NICE: i32 = 10;
/// The nice value of [`Class::Background`].
pub const BUILD_NICE: i32 = 19;

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Ingest => "ingest",
            Class::Background => "index-build",
        }
    }

    /// Lowers the calling thread to this class.
    fn enter(self) {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        // thread-priority maps 0..=99 onto nice 19..=-20: 22 is nice 10, the minimum nice 19
        let nice_as = |value: u8| {
            ThreadPriorityValue::try_from(value)
                .map(ThreadPriority::Crossplatform)
                .unwrap_or(ThreadPriority::Min)
        };
        let priority = match self {
            Class::Ingest => nice_as(22),
            Class::Background => ThreadPriority::Min,
        };
        let policy = NormalThreadSchedulePolicy::Batch;
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            priority,
            ThreadSchedulePolicy::Normal(policy),
        ) {
            static WARNED: OnceLock<()> = OnceLock::new();
            WARNED.get_or_init(|| {
                tracing::warn!(class = self.name(), error = ?e, "could not lower a thread's CPU priority; background work runs at normal priority");
            });
        }
    }

    fn pool(self) -> Option<&'static Runtime> {
        static INGEST: OnceLock<Option<Runtime>> = OnceLock::new();
        static BACKGROUND: OnceLock<Option<Runtime>> = OnceLock::new();
        let cell = match self {
            Class::Ingest => &INGEST,
            Class::Background => &BACKGROUND,
        };
        cell.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(MAX_THREADS)
                .thread_keep_alive(Duration::from_secs(10))
                .thread_name(self.name())
                .on_thread_start(move || self.enter())
                .build()
                .inspect_err(|e| {
                    tracing::warn!(class = self.name(), error = %e, "could not start a priority pool; its jobs run on tokio's blocking pool");
                })
                .ok()
        })
        .as_ref()
    }
}

/// Runs `job` on `class`'s pool and waits for it. A panic in the job is an internal error.
pub async fn run<T: Send + 'static>(
    class: Class,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let handle = match class.pool() {
        Some(rt) => rt.spawn_blocking(job),
        None => tokio::task::spawn_blocking(job),
    };
    handle
        .await
        .map_err(|e| Error::internal(format!("{} job failed: {e}", class.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (scheduling policy, nice) of the calling thread, from /proc.
    fn policy_and_nice() -> Option<(i64, i64)> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // fields after the command name, which is in parentheses and may hold spaces
        let rest = stat.rsplit_once(") ")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // field 19 is nice and field 41 the policy; `rest` starts at field 3
        Some((fields.get(38)?.parse().ok()?, fields.get(16)?.parse().ok()?))
    }

    #[tokio::test]
    async fn jobs_run_at_their_class_priority_and_the_caller_keeps_its_own() {
        let Some(before) = policy_and_nice() else {
            return; // no /proc: nothing to check here
        };
        let ingest = run(Class::Ingest, policy_and_nice)
            .await
            .expect("ran")
            .expect("read /proc");
        let build = run(Class::Background, policy_and_nice)
            .await
            .expect("ran")
            .expect("read /proc");
        // SCHED_BATCH is 3 (linux/sched.h)
        assert_eq!(ingest, (3, i64::from(INGEST_NICE)));
        assert_eq!(build, (3, i64::from(BUILD_NICE)));
        assert_eq!(policy_and_nice(), Some(before), "the caller is untouched");
    }

    /// Every core busy with normal-priority work that never pauses (a node whose searches
    /// never stop): a build still gets its share and finishes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_build_finishes_while_every_core_is_busy() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let until = std::time::Instant::now() + Duration::from_secs(30);
                    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        // about 20 ms of CPU
        let work = || {
            let started = std::time::Instant::now();
            let mut x = 0u64;
            let mut cpu = Duration::ZERO;
            while cpu < Duration::from_millis(20) {
                for i in 0..10_000u64 {
                    x = x.wrapping_mul(31).wrapping_add(i);
                }
                cpu = thread_cpu_time().unwrap_or_else(|| started.elapsed());
            }
            x
        };
        let started = std::time::Instant::now();
        let done =
            tokio::time::timeout(Duration::from_secs(25), run(Class::Background, work)).await;
        stop.store(true, Ordering::Relaxed);
        for s in spinners {
            let _ = s.join();
        }
        assert!(
            matches!(done, Ok(Ok(_))),
            "a build starved behind {cores} busy threads for {:?}",
            started.elapsed()
        );
    }

    /// CPU time of the calling thread, from /proc (utime + stime, in clock ticks of 10 ms).
    fn thread_cpu_time() -> Option<Duration> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error() {
        let e = run(Class::Ingest, || panic!("boom"))
            .await
            .expect_err("panicked");
        assert!(e.message.contains("ingest job failed"), "{}", e.message);
    }
}
