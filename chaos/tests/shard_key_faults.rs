//! Shard-key creation during each kind of fault, on a swarm of real `tessera` processes: a peer
//! killed, a peer paused (SIGSTOP), the metadata leader killed mid-create, a node cut off by a
//! partition. Every create answers within its bound (a paused peer never makes one hang), says
//! what happened (`outcome.created`, `outcome.pending`), or says a retry is safe; a retry of every
//! create that did not answer 200 answers 200; at most one answer per key says it created it; and
//! after the fault heals every node lists the same keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use tessera_chaos::{Api, Swarm};
use tessera_tests::phase;

mod common;
use common::{CutOff, create_collection, listed_keys};

/// What one create answered, and how long it took.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    took: Duration,
}

impl Answer {
    fn created(&self) -> Option<bool> {
        self.body["outcome"]["created"].as_bool()
    }
}

/// Every answer to a create of each key, in order.
#[derive(Default)]
struct Ledger {
    answers: BTreeMap<String, Vec<Answer>>,
}

impl Ledger {
    /// `PUT /collections/c/shards` of `key` through `api`; a refused connection (a node that is
    /// down) is the client's choice of node and is not recorded.
    fn create(&mut self, api: &Api, key: &str) -> Result<Answer> {
        let started = Instant::now();
        let (status, body) = api.put("/collections/c/shards", &json!({"shard_key": key}))?;
        let answer = Answer {
            status,
            body,
            took: started.elapsed(),
        };
        check_shape(key, &answer)?;
        self.answers
            .entry(key.to_owned())
            .or_default()
            .push(answer.clone());
        Ok(answer)
    }

    /// Retries the create of every key whose last answer was not 200, through `apis` in turn,
    /// until each answers 200 (bounded by `within`).
    fn retry_until_created(&mut self, apis: &[Api], within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let keys: Vec<String> = self.answers.keys().cloned().collect();
        for key in keys {
            let mut turn = 0usize;
            while self.answers[&key].last().map(|a| a.status) != Some(200) {
                ensure!(
                    Instant::now() < deadline,
                    "{key}: no 200 within {within:?}: {:?}",
                    self.answers[&key]
                );
                turn += 1;
                if self.create(&apis[turn % apis.len()], &key).is_err() {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        Ok(())
    }

    /// At most one answer per key says it created the key (none may, when the create that did
    /// lost its answer, or a node retried it against a new leader for its client), and after
    /// the first 200 every answer says the key was there.
    fn check_consistent(&self) -> Result<()> {
        for (key, answers) in &self.answers {
            let created = answers.iter().filter(|a| a.created() == Some(true)).count();
            ensure!(created <= 1, "{key}: created {created} times: {answers:?}");
            let after_first: Vec<&Answer> = answers
                .iter()
                .skip_while(|a| a.status != 200)
                .skip(1)
                .collect();
            ensure!(
                after_first
                    .iter()
                    .all(|a| a.status == 200 && a.created() == Some(false)),
                "{key}: answers after the first 200: {answers:?}"
            );
        }
        Ok(())
    }

    fn keys(&self) -> BTreeSet<String> {
        self.answers.keys().cloned().collect()
    }
}

/// A 200 has Qdrant's envelope and the outcome naming the key; anything else is a 503/504 that
/// says a retry is safe, in Qdrant's error JSON (or a 409 of another create's settings, never
/// here: every create asks the same).
fn check_shape(key: &str, a: &Answer) -> Result<()> {
    match a.status {
        200 => {
            ensure!(
                a.body["result"] == true && a.body["status"] == "ok" && a.body["time"].is_number(),
                "{key}: not Qdrant's envelope: {}",
                a.body
            );
            ensure!(
                a.body["outcome"]["shard_key"] == key
                    && a.body["outcome"]["created"].is_boolean()
                    && a.body["outcome"]["pending"].is_array(),
                "{key}: no outcome: {}",
                a.body
            );
        }
        503 | 504 => {
            let message = a.body["status"]["error"]
                .as_str()
                .ok_or_else(|| anyhow!("{key}: not Qdrant's error JSON: {}", a.body))?;
            ensure!(
                message.contains("retry"),
                "{key}: a {} that does not say whether to retry: {message}",
                a.status
            );
        }
        other => bail!("{key}: answered {other}: {}", a.body),
    }
    Ok(())
}

/// Waits until every running node lists exactly `keys` (bounded by `within`).
fn wait_listed_everywhere(swarm: &Swarm, keys: &BTreeSet<String>, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    for id in swarm.running() {
        let api = swarm.api(id)?;
        loop {
            let listed = listed_keys(&api);
            if listed.as_ref().is_ok_and(|l| l == keys) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "node {id} lists {listed:?}, not {keys:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// After the fault: every node lists every key, and a create of each through every node is a
/// repeat (200, created false).
fn check_ends_the_same(swarm: &Swarm, ledger: &mut Ledger) -> Result<()> {
    let keys = ledger.keys();
    wait_listed_everywhere(swarm, &keys, Duration::from_secs(30))?;
    for id in swarm.running() {
        let api = swarm.api(id)?;
        for key in &keys {
            let a = ledger.create(&api, key)?;
            ensure!(
                a.status == 200 && a.created() == Some(false),
                "{key} again through node {id}: {a:?}"
            );
        }
    }
    ledger.check_consistent()
}

fn followers(swarm: &Swarm) -> Result<(u64, Vec<u64>)> {
    let leader = swarm.wait_for_leader(Duration::from_secs(10))?;
    let rest = swarm.ids().into_iter().filter(|n| *n != leader).collect();
    Ok((leader, rest))
}

fn log_answers(what: &str, ledger: &Ledger) {
    for (key, answers) in &ledger.answers {
        let seen: Vec<String> = answers
            .iter()
            .map(|a| {
                format!(
                    "{} {:?} pending {} in {} ms",
                    a.status,
                    a.created(),
                    a.body["outcome"]["pending"],
                    a.took.as_millis()
                )
            })
            .collect();
        tessera_tests::log_phase(format_args!("{what}: {key}: {seen:?}"));
    }
}

#[test]
fn creates_with_a_peer_killed_complete_on_the_others_or_say_to_retry() -> Result<()> {
    let mut swarm = Swarm::start(3)?;
    create_collection(&swarm.api(1)?, 2)?;
    let (leader, rest) = followers(&swarm)?;
    let victim = rest[0];
    let via = swarm.api(rest[1])?;
    let mut ledger = Ledger::default();

    phase!(
        "kill -9 node {victim}; create keys through node {} at once and later",
        rest[1]
    );
    swarm.kill9(victim)?;
    for i in 0..3 {
        let a = ledger.create(&via, &format!("killed-{i}"))?;
        ensure!(a.took < Duration::from_secs(5), "killed-{i}: {a:?}");
        std::thread::sleep(Duration::from_millis(600));
    }
    ledger.retry_until_created(&[via.clone(), swarm.api(leader)?], Duration::from_secs(20))?;
    log_answers("peer killed", &ledger);

    phase!("node {victim} comes back: every node lists every key");
    swarm.restart(victim)?;
    check_ends_the_same(&swarm, &mut ledger)
}

#[test]
fn creates_with_a_peer_paused_answer_within_seconds() -> Result<()> {
    let mut swarm = Swarm::start(3)?;
    // replication_factor 3: every key needs the paused node too
    create_collection(&swarm.api(1)?, 3)?;
    let (leader, rest) = followers(&swarm)?;
    let victim = rest[0];
    let via = swarm.api(leader)?;
    let mut ledger = Ledger::default();

    phase!("SIGSTOP node {victim}; create keys at once, and once it is known to be down");
    swarm.pause(victim)?;
    for i in 0..3 {
        let a = ledger.create(&via, &format!("paused-{i}"))?;
        ensure!(
            a.took < Duration::from_secs(4),
            "paused-{i} took {:?}: {a:?}",
            a.took
        );
        if a.status == 200 {
            let pending = a.body["outcome"]["pending"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            ensure!(
                pending.iter().all(|p| p["peer_id"] == victim),
                "paused-{i}: pending on a live node: {a:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    log_answers("peer paused", &ledger);

    phase!("node {victim} resumes: retries answer 200, every node lists every key");
    swarm.resume(victim)?;
    ledger.retry_until_created(&[via.clone(), swarm.api(rest[1])?], Duration::from_secs(20))?;
    check_ends_the_same(&swarm, &mut ledger)
}

#[test]
fn creates_through_a_follower_survive_the_leader_killed_mid_create() -> Result<()> {
    let mut swarm = Swarm::start(3)?;
    create_collection(&swarm.api(1)?, 2)?;
    let (leader, rest) = followers(&swarm)?;
    let via = swarm.api(rest[0])?;

    phase!(
        "creates through node {} while the leader {leader} is killed",
        rest[0]
    );
    let creator = {
        let via = via.clone();
        std::thread::spawn(move || -> Result<Ledger> {
            let mut ledger = Ledger::default();
            for i in 0..6 {
                ledger.create(&via, &format!("leader-{i}"))?;
            }
            Ok(ledger)
        })
    };
    std::thread::sleep(Duration::from_millis(40));
    swarm.kill9(leader)?;
    let mut ledger = creator
        .join()
        .map_err(|_| anyhow!("the creating thread panicked"))??;
    log_answers("leader killed", &ledger);
    for (key, answers) in &ledger.answers {
        ensure!(
            answers.iter().all(|a| a.took < Duration::from_secs(15)),
            "{key}: {answers:?}"
        );
    }
    ledger.retry_until_created(&[via.clone(), swarm.api(rest[1])?], Duration::from_secs(20))?;

    phase!("the old leader comes back: every node lists every key");
    swarm.restart(leader)?;
    check_ends_the_same(&swarm, &mut ledger)
}

#[test]
fn creates_across_a_partition_end_the_same_on_every_node_after_it_heals() -> Result<()> {
    let swarm = Swarm::start(3)?;
    create_collection(&swarm.api(1)?, 2)?;
    let (leader, rest) = followers(&swarm)?;
    let victim = rest[0];
    let mut ledger = Ledger::default();

    phase!("cut node {victim} off; create through the majority and through the cut-off node");
    let cut = CutOff::port(swarm.node(victim)?.p2p_addr.port())?;
    std::thread::sleep(Duration::from_millis(1500));
    let majority = swarm.api(leader)?;
    let a = ledger.create(&majority, "majority")?;
    ensure!(
        a.status == 200 && a.created() == Some(true) && a.took < Duration::from_secs(4),
        "the majority side: {a:?}"
    );
    let a = ledger.create(&swarm.api(victim)?, "minority")?;
    ensure!(
        a.status != 200 && a.took < Duration::from_secs(5),
        "the cut-off side: {a:?}"
    );
    log_answers("partition", &ledger);

    phase!("heal: retries answer 200, every node lists every key");
    drop(cut);
    ledger.retry_until_created(&[swarm.api(victim)?], Duration::from_secs(30))?;
    check_ends_the_same(&swarm, &mut ledger)
}
