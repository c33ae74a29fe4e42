//! Read barriers: a node serves a read from its own replica only once it knows its view of the
//! metadata is current, i.e. it has applied every change the metadata leader had committed when
//! the read arrived (the leader's *read index*). Without it, a node cut off by a partition,
//! paused, or just restarted still sees its replica as in sync after the primary dropped it, and
//! answers without writes acknowledged since (a stale read).
//!
//! One round (ask the leader for its read index, wait to apply it) serves every read that
//! arrived before the round started: reads that arrive while a round is out wait for the next
//! one, so a node runs at most one round at a time and two per read at worst, however many
//! reads it serves.
//!
//! Architecture invariant: a round's answer is used only by reads that arrived before the round
//! started; a read never passes on a round that began before it arrived.

use std::future::Future;

use tessera_cluster::{Error, Result};
use tokio::time::Instant;

/// The coalescing state of one node's read barriers.
#[derive(Default)]
pub struct ReadBarrier {
    /// Held while a round is out.
    round: tokio::sync::Mutex<()>,
    /// When the newest finished round started, and how it ended.
    last: parking_lot::Mutex<Option<(Instant, Result<()>)>>,
}

impl ReadBarrier {
    /// Passes once a round that started after this call has succeeded (`round` runs one); fails
    /// as such a round failed.
    pub async fn pass<F, Fut>(&self, round: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let arrived = Instant::now();
        if let Some(done) = self.after(arrived) {
            return done;
        }
        let _held = self.round.lock().await;
        // a round that started after this read arrived may have finished while it waited
        if let Some(done) = self.after(arrived) {
            return done;
        }
        let started = Instant::now();
        let outcome = round().await;
        *self.last.lock() = Some((started, outcome.clone()));
        metrics::counter!(
            "tessera_read_barrier_rounds_total",
            "outcome" => if outcome.is_ok() { "ok" } else { "failed" }
        )
        .increment(1);
        outcome
    }

    /// The outcome of the newest round, if it started at or after `arrived`.
    fn after(&self, arrived: Instant) -> Option<Result<()>> {
        match &*self.last.lock() {
            Some((started, outcome)) if *started >= arrived => Some(outcome.clone()),
            _ => None,
        }
    }
}

/// The error of a read whose node could not confirm its metadata is current: a 503 the router
/// retries at another replica.
pub fn unconfirmed(why: &Error) -> Error {
    Error::unavailable(format!(
        "this node could not confirm with the metadata leader that its view of the replica sets is current, so it serves no read now: {}",
        why.message
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn reads_arriving_during_a_round_share_the_next_one_and_none_passes_on_an_earlier() {
        let barrier = Arc::new(ReadBarrier::default());
        let rounds = Arc::new(AtomicUsize::new(0));
        let slow = |rounds: Arc<AtomicUsize>| async move {
            rounds.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(())
        };
        // one round out; 20 reads arrive during it
        let first = {
            let (b, r) = (barrier.clone(), rounds.clone());
            tokio::spawn(async move { b.pass(|| slow(r)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut later = Vec::new();
        for _ in 0..20 {
            let (b, r) = (barrier.clone(), rounds.clone());
            later.push(tokio::spawn(async move { b.pass(|| slow(r)).await }));
        }
        assert!(first.await.expect("join").is_ok());
        for l in later {
            assert!(l.await.expect("join").is_ok());
        }
        // the 20 could not use the first round (it began before them): exactly one more ran
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_round_fails_the_reads_it_serves_and_the_next_read_tries_again() {
        let barrier = ReadBarrier::default();
        let failed = barrier
            .pass(|| async { Err(Error::unavailable("no leader")) })
            .await;
        assert!(failed.is_err());
        let passed = barrier.pass(|| async { Ok(()) }).await;
        assert!(passed.is_ok());
    }
}
