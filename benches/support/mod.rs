//! What the bench targets share: the command line (`--iterations`, `--help`, test mode), the
//! rotation of the cases, the statistics and the Markdown report. Included by each bench with
//! `#[path = "support/mod.rs"] mod support;` (a bench target is a crate of its own; this folder
//! is not one).

use std::time::Duration;

use anyhow::{Context, Result, bail};

pub const DEFAULT_ITERATIONS: usize = 31;
pub const WARMUP_ITERATIONS: usize = 3;

// ---- the command line ----

/// Parses a bench's arguments: `--bench` (cargo passes it to `cargo bench` runs only),
/// `--help`, `--iterations N` (at least 3), and the bench's own options through `other`, which
/// gets the flag and the arguments after it and returns `false` for a flag it does not know.
/// Returns the iterations, or `None` when there is nothing to measure (help, or run as a test).
pub fn parse_args(
    bench: &str,
    usage: &str,
    args: impl Iterator<Item = String>,
    other: impl FnMut(&str, &mut dyn Iterator<Item = String>) -> Result<bool>,
) -> Result<Option<usize>> {
    parse_args_with_default(bench, usage, DEFAULT_ITERATIONS, args, other)
}

/// `parse_args` with another number of iterations than `DEFAULT_ITERATIONS` when
/// `--iterations` is not given (for benches whose every iteration takes seconds).
pub fn parse_args_with_default(
    bench: &str,
    usage: &str,
    default_iterations: usize,
    args: impl Iterator<Item = String>,
    mut other: impl FnMut(&str, &mut dyn Iterator<Item = String>) -> Result<bool>,
) -> Result<Option<usize>> {
    let mut iterations = default_iterations;
    let mut measure = false;
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => measure = true,
            "--help" | "-h" => {
                println!("{usage}");
                return Ok(None);
            }
            "--iterations" => iterations = count_argument(&arg, args.next(), 3)?,
            flag => {
                if !other(flag, &mut args)? {
                    bail!("unknown argument {flag:?}\n\n{usage}");
                }
            }
        }
    }
    if !measure {
        // `cargo test --benches` / `--all-targets` runs bench targets without `--bench`.
        println!("{bench} bench: nothing measured in test mode; run `cargo bench --bench {bench}`");
        return Ok(None);
    }
    Ok(Some(iterations))
}

/// The number after `flag`, at least `least`.
pub fn count_argument(flag: &str, value: Option<String>, least: usize) -> Result<usize> {
    let value = value.with_context(|| format!("{flag} needs a number"))?;
    value
        .parse()
        .ok()
        .filter(|n| *n >= least)
        .with_context(|| format!("{flag} {value:?}: need a number >= {least}"))
}

/// The comma-separated list of numbers after `flag` (`--sizes 2,4,8`), each at least `least`.
#[allow(dead_code)] // the benches that take a list of sizes; not every bench does
pub fn list_argument(flag: &str, value: Option<String>, least: usize) -> Result<Vec<usize>> {
    let value = value.with_context(|| format!("{flag} needs a list such as 2,4,8"))?;
    value
        .split(',')
        .map(|size| size.trim().parse::<usize>().ok().filter(|n| *n >= least))
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("{flag} {value:?}: need numbers >= {least}"))
}

/// `0..cases` starting at `iteration % cases`: every case comes first as often as the others.
pub fn rotated(cases: usize, iteration: usize) -> impl Iterator<Item = usize> {
    (0..cases).map(move |k| (iteration + k) % cases)
}

// ---- statistics ----

#[derive(Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push_if(&mut self, keep: bool, sample: Duration) {
        if keep {
            self.0.push(sample);
        }
    }

    pub fn extend_if(&mut self, keep: bool, samples: Samples) {
        if keep {
            self.0.extend(samples.0);
        }
    }

    /// The samples, shortest first.
    pub fn sorted(&self) -> Vec<Duration> {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted
    }

    /// Nearest-rank quantile (`q` in 0..=1) of the sorted samples.
    pub fn quantile(&self, q: f64) -> Duration {
        let sorted = self.sorted();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    pub fn max(&self) -> Duration {
        self.quantile(1.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

// ---- the report ----

/// Markdown tables, one under a bold title each, and notes after them; printed at the end.
#[derive(Default)]
pub struct Report {
    lines: Vec<String>,
    notes: Vec<String>,
}

impl Report {
    /// A paragraph printed after all the tables.
    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// A new table: `title` in bold, then the header line and the alignment line given.
    pub fn table(&mut self, title: String, header: &str, alignment: &str) {
        if !self.lines.is_empty() {
            self.lines.push(String::new());
        }
        self.lines.push(format!("**{title}**"));
        self.lines.push(String::new());
        self.lines.push(header.to_owned());
        self.lines.push(alignment.to_owned());
    }

    /// One more line of the current table.
    pub fn line(&mut self, line: String) {
        self.lines.push(line);
    }

    /// A table of `row`s.
    pub fn section(&mut self, title: String) {
        self.table(
            title,
            "| measurement | median ms | p10 ms | p90 ms | min ms | max ms | ratio of medians |",
            "|---|---:|---:|---:|---:|---:|---:|",
        );
    }

    /// A row of a `section` table; the ratio is that of the medians, when there is a floor.
    pub fn row(&mut self, name: &str, samples: &Samples, floor: Option<&Samples>) {
        let ratio = ratio(samples.median(), floor.map(Samples::median));
        self.line(format!(
            "| {name} | {} | {} | {} | {} | {} | {ratio} |",
            cell(samples.median()),
            cell(samples.quantile(0.1)),
            cell(samples.quantile(0.9)),
            cell(samples.quantile(0.0)),
            cell(samples.max()),
        ));
    }

    pub fn print(&self) {
        for line in &self.lines {
            println!("{line}");
        }
        if !self.notes.is_empty() {
            println!();
        }
        for note in &self.notes {
            println!("{note}");
        }
    }
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// A duration in a table: milliseconds, two decimals.
pub fn cell(duration: Duration) -> String {
    format!("{:.2}", ms(duration))
}

/// `value / floor` as `1.23×`, or `—` without a floor (or with a zero one).
pub fn ratio(value: Duration, floor: Option<Duration>) -> String {
    match floor {
        Some(floor) if floor > Duration::ZERO => {
            format!("{:.2}×", value.as_secs_f64() / floor.as_secs_f64())
        }
        _ => "—".to_owned(),
    }
}
