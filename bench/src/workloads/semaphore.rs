//! Semaphores: W4 throughput (8 processes on 4 slots, never more holders
//! than slots) and W4 fairness (16 processes on 2 slots for a fixed time:
//! Jain's index over per-process acquisitions, longest wait against the
//! mean).

use anyhow::Result;

use super::Bench;
use crate::report::{Better, jain};

/// W4: 8 processes x K acquire + release on 4 slots. Each holder marks its
/// slot busy with an exclusive create, so a slot held twice (or out of
/// range) fails the worker and the run.
pub fn w4(b: &mut Bench<'_>) -> Result<()> {
    let fast = b.options.scale(500, 100);
    let py = b.options.scale(40, 10);
    let dir = b.dir_str();
    for _ in 0..b.options.runs {
        let impls: [(&str, u64, &str); 3] = [
            ("ours-native", fast, "BoundedSemaphore, Wait::FOREVER"),
            (
                "ours-plugin",
                fast,
                "Semaphore::acquire in a plugin per process",
            ),
            (
                "portalocker-4.4.2",
                py,
                "BoundedSemaphore, default 0.25 s check interval",
            ),
        ];
        for (implementation, k, note) in impls {
            let name = b.name("w4");
            let ks = k.to_string();
            let commands = (0..8)
                .map(|_| match implementation {
                    "ours-native" => b.native(&["semaphore", &dir, &name, "4", &ks]),
                    "ours-plugin" => b.plugin(false, &["semaphore", "/data", &name, "4", &ks]),
                    _ => b.python(&["semaphore", &dir, &name, "4", &ks]),
                })
                .collect();
            // A worker that saw a slot held twice fails, and so does the group.
            let (rate, correct) = match b.group(commands) {
                Ok(done) => ((8 * k) as f64 / done.span_secs(), true),
                Err(e) => {
                    eprintln!("W4 {implementation}: {e:#}");
                    (0.0, false)
                }
            };
            b.report.add(
                "W4",
                implementation,
                "ops, 8 processes, 4 slots",
                "ops/s",
                Better::Higher,
                rate,
                correct,
                note,
            );
        }
    }
    Ok(())
}

/// W4 fairness: 16 processes on 2 slots, each acquiring, holding 2 ms and
/// releasing for a fixed time. Targets: Jain's index at least 0.95 and the
/// longest wait at most 4x the mean.
pub fn w4_fairness(b: &mut Bench<'_>) -> Result<()> {
    let millis = b.options.scale(4_000, 1_500).to_string();
    let hold = "2000";
    let dir = b.dir_str();
    for _ in 0..b.options.runs {
        for implementation in [
            "ours-native",
            "ours-plugin",
            "ours-mixed",
            "portalocker-4.4.2",
        ] {
            let name = b.name("w4f");
            let commands = (0..16)
                .map(|i| {
                    let native = b.native(&["fair", &dir, &name, "2", &millis, hold]);
                    let plugin = b.plugin(false, &["fair", "/data", &name, "2", &millis, hold]);
                    match implementation {
                        "ours-native" => native,
                        "ours-plugin" => plugin,
                        "ours-mixed" if i % 2 == 0 => native,
                        "ours-mixed" => plugin,
                        _ => b.python(&["fair", &dir, &name, "2", &millis, hold]),
                    }
                })
                .collect();
            let done = b.group(commands)?;
            let mut counts = Vec::new();
            let (mut max_wait, mut sum_wait) = (0f64, 0f64);
            for worker in &done.workers {
                let fields: Vec<f64> = worker
                    .result
                    .iter()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                if let [count, max, sum] = fields[..] {
                    counts.push(count);
                    max_wait = max_wait.max(max);
                    sum_wait += sum;
                }
            }
            let total: f64 = counts.iter().sum();
            let correct = counts.len() == 16 && total > 0.0;
            let mean_wait = if total > 0.0 { sum_wait / total } else { 0.0 };
            let note =
                "16 processes, 2 slots, 2 ms holds (targets: Jain >= 0.95, longest <= 4x mean)";
            b.report.add(
                "W4",
                implementation,
                "fairness: Jain's index",
                "",
                Better::Higher,
                jain(&counts),
                correct,
                note,
            );
            let ratio = if mean_wait > 0.0 {
                max_wait / mean_wait
            } else {
                0.0
            };
            b.report.add(
                "W4",
                implementation,
                "fairness: longest / mean wait",
                "x",
                Better::Lower,
                ratio,
                correct,
                note,
            );
            b.report.add(
                "W4",
                implementation,
                "fairness: longest wait",
                "ms",
                Better::Lower,
                max_wait / 1e6,
                correct,
                note,
            );
            b.report.add(
                "W4",
                implementation,
                "fairness: acquisitions",
                "/s",
                Better::Higher,
                total / done.span_secs(),
                correct,
                note,
            );
        }
    }
    Ok(())
}
