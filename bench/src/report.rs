//! Measurements, the table printed at the end and `results.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::json;

/// Whether a smaller or a larger value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Times, memory, round trips.
    Lower,
    /// Rates, fairness indices.
    Higher,
}

/// One figure for one implementation of one workload, over several runs.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// `W1` … `W8`, or `CLI`.
    pub workload: &'static str,
    /// `ours-native`, `ours-plugin`, `raw-flock`, `portalocker-4.4.2`, …
    pub implementation: String,
    /// What is measured, e.g. `pair`, `ops`, `p50`, `start`.
    pub metric: &'static str,
    /// The unit of every value.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
    /// One value per run.
    pub values: Vec<f64>,
    /// Whether every run's correctness check passed.
    pub correct: bool,
    /// A few words on the configuration, for the table.
    pub note: String,
}

impl Measurement {
    /// The median of the runs.
    pub fn median(&self) -> f64 {
        median(&self.values)
    }

    /// The spread of the runs: (max - min) / median.
    pub fn spread(&self) -> f64 {
        let (min, max) = self
            .values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        if self.values.len() < 2 || self.median() == 0.0 {
            0.0
        } else {
            (max - min) / self.median()
        }
    }
}

/// The median of `values` (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `q` quantile of sorted `values` (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Jain's fairness index of `counts`: 1 when all are equal, 1/n when one
/// process got everything.
pub fn jain(counts: &[f64]) -> f64 {
    let sum: f64 = counts.iter().sum();
    let squares: f64 = counts.iter().map(|c| c * c).sum();
    if squares == 0.0 {
        0.0
    } else {
        sum * sum / (counts.len() as f64 * squares)
    }
}

/// Every measurement of a run, in the order taken.
#[derive(Debug, Default)]
pub struct Report {
    measurements: Vec<Measurement>,
}

impl Report {
    /// Add `values` (one per run) to the measurement they belong to.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call per figure reads best flat"
    )]
    pub fn add(
        &mut self,
        workload: &'static str,
        implementation: &str,
        metric: &'static str,
        unit: &'static str,
        better: Better,
        value: f64,
        correct: bool,
        note: &str,
    ) {
        if let Some(m) = self.measurements.iter_mut().find(|m| {
            m.workload == workload && m.implementation == implementation && m.metric == metric
        }) {
            m.values.push(value);
            m.correct &= correct;
            return;
        }
        self.measurements.push(Measurement {
            workload,
            implementation: implementation.to_owned(),
            metric,
            unit,
            better,
            values: vec![value],
            correct,
            note: note.to_owned(),
        });
    }

    /// Whether every correctness check passed.
    pub fn all_correct(&self) -> bool {
        self.measurements.iter().all(|m| m.correct)
    }

    /// The median of one measurement, if taken.
    fn reference(&self, workload: &str, metric: &str, implementation: &str) -> Option<f64> {
        self.measurements
            .iter()
            .find(|m| {
                m.workload == workload && m.metric == metric && m.implementation == implementation
            })
            .map(Measurement::median)
    }

    /// The limit a measurement is compared with: the `raw-*` row of its
    /// workload and metric (for a whole CLI call, util-linux `flock(1)`).
    fn limit(&self, m: &Measurement) -> Option<f64> {
        self.measurements
            .iter()
            .find(|r| {
                r.workload == m.workload
                    && r.metric == m.metric
                    && (r.implementation.starts_with("raw-") || r.implementation == "flock-cli")
            })
            .map(Measurement::median)
    }

    /// The cost of `value` relative to `reference`: above 1 is slower (or
    /// bigger, or less fair) than the reference.
    fn cost(better: Better, value: f64, reference: Option<f64>) -> String {
        match reference {
            Some(r) if r > 0.0 && value > 0.0 => {
                let ratio = match better {
                    Better::Lower => value / r,
                    Better::Higher => r / value,
                };
                format!("{ratio:.2}x")
            }
            _ => "-".to_owned(),
        }
    }

    /// The table: one line per measurement.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| workload | implementation | metric | median | spread | runs | vs ours-native | vs limit | correct | setup |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---|---|");
        for m in &self.measurements {
            let ours = self.reference(m.workload, m.metric, "ours-native");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} {} | {:.0}% | {} | {} | {} | {} | {} |",
                m.workload,
                m.implementation,
                m.metric,
                format_value(m.median()),
                m.unit,
                m.spread() * 100.0,
                m.values.len(),
                Self::cost(m.better, m.median(), ours),
                Self::cost(m.better, m.median(), self.limit(m)),
                if m.correct { "yes" } else { "**NO**" },
                m.note,
            );
        }
        out
    }

    /// Write `results.json`: one object per measurement.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write_json(&self, path: &Path, machine: &BTreeMap<&str, String>) -> Result<()> {
        let rows: Vec<_> = self
            .measurements
            .iter()
            .map(|m| {
                json!({
                    "workload": m.workload,
                    "implementation": m.implementation,
                    "metric": m.metric,
                    "value": m.median(),
                    "unit": m.unit,
                    "runs": m.values.len(),
                    "values": m.values,
                    "spread": m.spread(),
                    "better": match m.better { Better::Lower => "lower", Better::Higher => "higher" },
                    "correct": m.correct,
                    "setup": m.note,
                })
            })
            .collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let document = json!({ "machine": machine, "measurements": rows });
        std::fs::write(path, serde_json::to_string_pretty(&document)? + "\n")?;
        Ok(())
    }
}

/// A value with as many digits as it deserves.
fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!((jain(&[1.0, 1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[4.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
    }

    #[test]
    fn costs_read_the_same_way_for_times_and_rates() {
        assert_eq!(Report::cost(Better::Lower, 2.0, Some(1.0)), "2.00x");
        assert_eq!(Report::cost(Better::Higher, 50.0, Some(100.0)), "2.00x");
        assert_eq!(Report::cost(Better::Lower, 2.0, None), "-");
    }
}
