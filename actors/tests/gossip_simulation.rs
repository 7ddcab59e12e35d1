//! Issue 9, item 5: the deterministic simulation of the gossip protocol in the normal test run.
//! 1,000 nodes of 100 public ads (and 2 private ones) each, in one process, on one seed:
//! 10 % of messages lost, 2 % duplicated, delays that reorder, some messages held back longer
//! than twice the tombstone TTL, a partition of a fifth of the nodes that outlives the TTL and
//! heals, crashes with restarts from a store that lags, and a restart on an old store with the
//! clock an hour behind. Asserts convergence within a bound that grows like log N, that every
//! record shown was exact at every step (no resurrection, nothing stale, nothing lost), that no
//! private ad crossed the wire, and the per-register counts; prints rounds and bytes.
//!
//! Replay a failure with `GOSSIP_SIM_SEED=<seed>`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use herald_actors::gossip::simulation::{self, SimConfig, SimReport};

const DEFAULT_SEED: u64 = 0x5eed_0009;

fn seed() -> u64 {
    std::env::var("GOSSIP_SIM_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// Rounds within which a wave of small changes reaches every node: epidemic spread takes about
/// log2 N rounds with push-pull and fanout 3; 10 % loss and delays of up to 1.2 rounds slow
/// it down, so allow 3 × ⌈log2 N⌉ + 4.
fn change_bound(nodes: usize) -> u64 {
    3 * u64::from(nodes.next_power_of_two().trailing_zeros()) + 4
}

/// Rounds within which nodes that start empty hold everything: the log N spread plus the
/// rounds the bytes need at the message budget (every node must receive every other node's
/// ads; a node receives about 2 × fanout budgeted messages a round).
fn bootstrap_bound(config: &SimConfig, bytes_per_ad: usize) -> u64 {
    let state = config.nodes * config.ads_per_node * bytes_per_ad;
    let per_round = 2 * config.gossip.fanout * config.gossip.message_budget;
    change_bound(config.nodes) + state.div_ceil(per_round) as u64
}

fn print(report: &SimReport, seed: u64) {
    println!(
        "gossip simulation, {} nodes, seed {seed}: bootstrap {} rounds ({:.0} B/node/round), \
         waves {:?} rounds ({:.0} B/node/round), steady {:.0} B/node/round, partition healed \
         in {:?} rounds, restarts converged in {:?} rounds; {} messages, {} MB, {} lost, {} held \
         past 2 TTLs ({} delivered), {} withdrawals ({} collected), {} rebuilds, {} unusable \
         deltas refused, {} bumps",
        report.nodes,
        report.bootstrap_rounds,
        report.bootstrap_bytes_per_node_round,
        report.wave_rounds,
        report.wave_bytes_per_node_round,
        report.steady_bytes_per_node_round,
        report.heal_rounds,
        report.restart_rounds,
        report.messages,
        report.bytes / 1_000_000,
        report.lost,
        report.long_delayed,
        report.delivered_after_ttl,
        report.withdrawals,
        report.withdrawals_collected,
        report.rebuilds,
        report.unusable_deltas,
        report.bumps,
    );
}

fn assert_sound(report: &SimReport, config: &SimConfig, seed: u64) {
    assert!(
        report.is_clean(),
        "seed {seed}: {} inexact records ({} resurrections), {} regressions, {} private ads \
         on the wire, {} wrong counts; first: {:#?}",
        report.inexact_records,
        report.resurrections,
        report.regressions,
        report.private_leaks,
        report.wrong_counts,
        report.failures
    );
    let bound = change_bound(config.nodes);
    for (wave, rounds) in report.wave_rounds.iter().enumerate() {
        assert!(
            *rounds <= bound,
            "seed {seed}: wave {wave} took {rounds} rounds, bound {bound}"
        );
    }
    let bootstrap = bootstrap_bound(config, 160);
    assert!(
        report.bootstrap_rounds <= bootstrap,
        "seed {seed}: bootstrap took {} rounds, bound {bootstrap}",
        report.bootstrap_rounds
    );
    // The faults were really there.
    assert!(report.lost > 0 && report.long_delayed > 0);
    assert!(
        report.delivered_after_ttl > 0,
        "no message outlived the TTL"
    );
    assert!(
        report.withdrawals_collected > 0,
        "no withdrawal was collected"
    );
    assert!(
        report.bumps > 0,
        "the restart on an old store was never told to bump"
    );
    assert!(report.heal_rounds.is_some() && report.restart_rounds.is_some());
}

#[test]
fn issue9_thousand_nodes_converge_in_log_rounds_with_no_resurrection_and_no_private_ad_on_the_wire()
{
    let seed = seed();
    let config = SimConfig::standard(1_000, seed);
    let report = simulation::run(&config).unwrap_or_else(|err| panic!("seed {seed}: {err}"));
    print(&report, seed);
    assert_sound(&report, &config, seed);
}

#[test]
fn issue9_small_cluster_under_heavy_faults_stays_exact() {
    let seed = seed() ^ 0xabcd;
    let mut config = SimConfig::standard(60, seed);
    config.loss = 0.3;
    config.duplicate = 0.1;
    config.long_delay = 0.02;
    config.waves = 6;
    config.wave_share = 0.3;
    config.partition_share = 0.4;
    // Small messages: records arrive in parts, so rebuilds and staging are exercised.
    config.gossip.message_budget = 4 * 1024;
    config.patience_rounds = 2_000;
    let report = simulation::run(&config).unwrap_or_else(|err| panic!("seed {seed}: {err}"));
    print(&report, seed);
    assert!(
        report.is_clean(),
        "seed {seed}: {} inexact ({} resurrections), {} regressions, {} leaks: {:#?}",
        report.inexact_records,
        report.resurrections,
        report.regressions,
        report.private_leaks,
        report.failures
    );
    assert!(report.rebuilds > 0);
}
