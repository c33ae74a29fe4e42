//! The checker proves itself: with the node's test-only fault switch
//! `TESSERA_UNSAFE_ACK_BEFORE_BACKUP` (a primary acknowledges writes before its backup has
//! them), a scripted failover loses acknowledged writes, and the durability invariant, reading
//! the recorded history and the healed cluster like every chaos run does, catches them.
//!
//! The scenario, on 3 nodes with `replication_factor: 2`: the backup of a tenant's shard is cut
//! off (nftables), writes go through the primary and are acknowledged, the primary is killed
//! with SIGKILL, the cut heals, and the backup (still in the in-sync set, since the faulty
//! primary never dropped it) is promoted without those writes.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail, ensure};
use serde_json::json;
use tessera_chaos::check::{self, Final};
use tessera_chaos::client::NodeClient;
use tessera_chaos::fixture::{
    create_collection, replica_nodes, replica_sets, tenant, wait_identical,
};
use tessera_chaos::history::{self, Recorder};
use tessera_chaos::net::{CutOff, require_nft};
use tessera_chaos::run::{held, scroll_tenant};
use tessera_chaos::workload::{base, upsert};
use tessera_chaos::{Swarm, SwarmOptions};
use tessera_tests::phase;

/// The node's switch and the one value that turns it on (node/src/replication/mod.rs).
const SWITCH: (&str, &str) = (
    "TESSERA_UNSAFE_ACK_BEFORE_BACKUP",
    "lose-acknowledged-writes",
);
const WRITES: u64 = 10;

#[test]
fn durability_catches_writes_acknowledged_before_the_backup_had_them() -> Result<()> {
    require_nft()?;
    let mut swarm = Swarm::start_with(SwarmOptions::new(3).env(SWITCH.0, SWITCH.1))?;
    let api = swarm.api(1)?;
    let key = tenant(0);
    create_collection(&api, 2)?;
    api.ok_put("/collections/c/shards", &json!({"shard_key": key}))?;
    wait_identical(&api, Duration::from_secs(60))?;
    let shard = replica_sets(&api)?
        .into_iter()
        .find(|s| s["shard_key"] == json!(key))
        .ok_or_else(|| anyhow!("no shard {key}"))?;
    let primary = shard["primary"]
        .as_u64()
        .ok_or_else(|| anyhow!("no primary: {shard}"))?;
    let backup = replica_nodes(&shard)
        .into_iter()
        .find(|n| *n != primary)
        .ok_or_else(|| anyhow!("no backup: {shard}"))?;
    let third = swarm
        .ids()
        .into_iter()
        .find(|n| *n != primary && *n != backup)
        .ok_or_else(|| anyhow!("no third node"))?;
    phase!("{key}: primary on node {primary}, backup on node {backup}");

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("history.jsonl");
    let history = Recorder::create(&path)?;
    let client = NodeClient::new(
        primary,
        swarm.node(primary)?.http_addr,
        Duration::from_secs(5),
    )?;
    // a first write while all is well: the primary checks its backup once per epoch
    ensure!(
        upsert(&history, &client, "w0", &key, &[base(0)])?.ok(),
        "first write refused"
    );

    phase!("cut the backup off, {WRITES} writes through the primary");
    let cut = CutOff::port(swarm.node(backup)?.p2p_addr.port())?;
    let mut acked = 0;
    for i in 1..=WRITES {
        if upsert(&history, &client, "w0", &key, &[base(0) + i])?.ok() {
            acked += 1;
        }
    }
    ensure!(
        acked > 0,
        "no write was acknowledged with the backup cut off"
    );

    phase!("kill -9 the primary, heal the cut, wait for the backup's promotion");
    swarm.kill9(primary)?;
    drop(cut);
    let reader = swarm.api(third)?;
    let started = Instant::now();
    loop {
        let promoted = replica_sets(&reader)
            .ok()
            .and_then(|s| s.into_iter().find(|s| s["shard_key"] == json!(key)))
            .is_some_and(|s| s["primary"].as_u64() == Some(backup));
        if promoted {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the backup was not promoted within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    history.flush()?;

    phase!("the checker reads the history and the healed cluster");
    let mut fin = Final::default();
    fin.points
        .insert(key.clone(), held(&scroll_tenant(&reader, &key)?));
    let events = history::read(&path)?;
    let report = check::durability::check(&history::ops(&events), &fin);
    tessera_tests::log_phase(format_args!(
        "FIGURE {acked} writes acknowledged with the backup cut off; the checker finds {} lost: {:?}",
        report.lost,
        report.violations.first()
    ));
    ensure!(
        report.lost > 0
            && report
                .violations
                .iter()
                .all(|v| v.invariant == "durability"),
        "the durability check missed the lost writes: {:?}",
        report.violations
    );
    Ok(())
}
