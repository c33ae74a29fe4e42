//! The time source of the token buckets: tokio's clock, so that `tokio::time::pause()` and
//! `advance()` drive the buckets in tests exactly as they drive timers.
//!
//! governor's default clock reads `quanta`/`std` time, which a paused tokio runtime does not
//! control. Any `governor::clock::Clock` whose instants are [`Nanos`] works with
//! [`Admission`](super::Admission), e.g. governor's `FakeRelativeClock` in unit tests.

use governor::clock::Clock;
use governor::nanos::Nanos;

/// Nanoseconds since the clock was made, read from `tokio::time::Instant` (which is plain
/// monotonic time outside a paused runtime).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose zero is now.
    pub fn new() -> TokioClock {
        TokioClock {
            base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(tokio::time::Instant::now().saturating_duration_since(self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokio_clock_follows_tokio_time() {
        let c = TokioClock::new();
        let a = c.now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let b = c.now();
        assert!(b.as_u64() - a.as_u64() >= 20_000_000, "{a:?} -> {b:?}");
    }
}
