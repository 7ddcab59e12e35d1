//! The gossip simulation (issue 9, items 5 and 7) as a benchmark: the protocol's pure state
//! (`herald_actors::gossip`) for N = 10, 100 and 1,000 nodes (or those given), 100 public ads
//! and 2 private ones each, with the test suite's faults (10 % loss, duplicates, reordering,
//! messages held past twice the tombstone TTL, a partition that outlives the TTL, crashes and
//! restarts from a lagging store, a restart on an old store). Several seeds per size; medians.
//!
//! ```text
//! cargo bench --bench gossip                              # N = 10, 100, 1000; 3 seeds each
//! cargo bench --bench gossip -- --nodes 2000 --iterations 3
//! cargo bench --bench gossip -- --help
//! ```
//!
//! Reported per N: rounds until every node holds everything from empty (bootstrap), after a
//! wave of changes on 5 % of the nodes, after the partition heals and after the restarts; bytes
//! (JSON, as the wire types measure themselves) per node per round in each phase and with
//! nothing changing (digests only); and the wall time of a whole run (the simulation's own
//! cost, not the protocol's). Every run must also be clean (no record shown that was not exact
//! at its version, no private ad on the wire) or the bench fails. Run through `cargo test
//! --benches` (no `--bench` argument), it measures nothing and exits.

#[allow(dead_code)] // the command line only: the statistics are for latency benches
#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;

use anyhow::{Context, Result, ensure};
use tokio::time::Instant;

use herald_actors::gossip::simulation::{self, SimConfig, SimReport};

const USAGE: &str = "usage: cargo bench --bench gossip -- [--nodes N[,N...]] [--iterations SEEDS]
  --nodes        cluster sizes to simulate (default 10,100,1000)
  --iterations   seeds per size (default 3; at least 3)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gossip bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut sizes = vec![10, 100, 1_000];
    let parsed = support::parse_args("gossip", USAGE, std::env::args().skip(1), |flag, rest| {
        if flag != "--nodes" {
            return Ok(false);
        }
        let list = rest.next().context("--nodes needs a list")?;
        sizes = list
            .split(',')
            .map(|size| size.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("--nodes {list:?}"))?;
        Ok(true)
    })?;
    // The default of the shared command line is for latency benches; three seeds per size
    // are plenty here (each run is deterministic).
    let Some(iterations) = parsed else {
        return Ok(());
    };
    let seeds = if iterations == support::DEFAULT_ITERATIONS {
        3
    } else {
        iterations
    };
    let mut lines = vec![
        "| N | bootstrap rounds | waves (rounds) | heal | restarts | bytes/node/round bootstrap | \
         waves | steady | wall time of a run |"
            .to_owned(),
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for &nodes in &sizes {
        let mut reports: Vec<(SimReport, f64)> = Vec::new();
        for seed in 0..seeds as u64 {
            let config = SimConfig::standard(nodes, 0x5eed_0009 + seed);
            let started = Instant::now();
            let report = simulation::run(&config).map_err(|err| anyhow::anyhow!("{err}"))?;
            let seconds = started.elapsed().as_secs_f64();
            ensure!(
                report.is_clean(),
                "N = {nodes}, seed {seed}: the run was not clean: {:#?}",
                report.failures
            );
            eprintln!(
                "N = {nodes}, seed {seed}: bootstrap {} rounds, waves {:?}, {seconds:.1} s",
                report.bootstrap_rounds, report.wave_rounds
            );
            reports.push((report, seconds));
        }
        let median_u = |f: &dyn Fn(&SimReport) -> u64| {
            median(reports.iter().map(|(report, _)| f(report) as f64).collect())
        };
        let median_f = |f: &dyn Fn(&SimReport) -> f64| {
            median(reports.iter().map(|(report, _)| f(report)).collect())
        };
        let waves: Vec<String> = reports
            .iter()
            .map(|(report, _)| format!("{:?}", report.wave_rounds))
            .collect();
        lines.push(format!(
            "| {nodes} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} s |",
            median_u(&|report| report.bootstrap_rounds),
            waves.join(" "),
            median_u(&|report| report.heal_rounds.unwrap_or(0)),
            median_u(&|report| report.restart_rounds.unwrap_or(0)),
            median_f(&|report| report.bootstrap_bytes_per_node_round),
            median_f(&|report| report.wave_bytes_per_node_round),
            median_f(&|report| report.steady_bytes_per_node_round),
            median(reports.iter().map(|(_, seconds)| *seconds).collect()),
        ));
    }
    println!("**Gossip simulation: medians over {seeds} seeds (waves: every seed's rounds)**\n");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
