//! The hub bench's own tables, beside the shared `section` / `row` of `support`.

use super::*;

impl Report {
    pub(crate) fn latency_section(&mut self, title: String) {
        self.table(
            title,
            "| measurement | deliveries | p50 ms | p90 ms | p99 ms | max ms | ratio of p99 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        );
    }

    pub(crate) fn latency_row(&mut self, name: &str, samples: &Samples, floor: Option<&Samples>) {
        let p99 = samples.quantile(0.99);
        let ratio = ratio(p99, floor.map(|floor| floor.quantile(0.99)));
        self.line(format!(
            "| {name} | {} | {} | {} | {} | {} | {ratio} |",
            samples.len(),
            cell(samples.median()),
            cell(samples.quantile(0.9)),
            cell(p99),
            cell(samples.max()),
        ));
    }

    pub(crate) fn failover_section(&mut self, title: String) {
        self.table(
            title,
            "| measurement | runs | median ms | min ms | max ms | every run, sorted (ms) |",
            "|---|---:|---:|---:|---:|---|",
        );
    }

    pub(crate) fn failover_row(&mut self, name: &str, samples: &Samples) {
        let every: Vec<String> = samples
            .sorted()
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect();
        self.line(format!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {} |",
            samples.len(),
            ms(samples.median()),
            ms(samples.quantile(0.0)),
            ms(samples.max()),
            every.join(", ")
        ));
    }
}
