//! Progress of a fetch: a bar on a terminal, a line every few seconds otherwise (init
//! container logs), nothing when asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressStyle {
    Bar,
    Lines { every: Duration },
    Quiet,
}

/// Bytes written so far, shared by every download task.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counter(Arc<AtomicU64>);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Reports `counter` against `total` until dropped.
pub(crate) struct Reporter {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

impl Reporter {
    pub(crate) fn start(style: ProgressStyle, label: String, total: u64, counter: Counter) -> Self {
        match style {
            ProgressStyle::Quiet => Self {
                task: None,
                bar: None,
            },
            ProgressStyle::Bar => {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(label);
                let shown = bar.clone();
                let task = tokio::spawn(async move {
                    loop {
                        shown.set_position(counter.get());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
                Self {
                    task: Some(task),
                    bar: Some(bar),
                }
            }
            ProgressStyle::Lines { every } => {
                let started = Instant::now();
                let task = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        let done = counter.get();
                        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
                        tracing::info!(
                            "{label}: {} of {} ({:.0}%), {}/s",
                            human_bytes(done),
                            human_bytes(total),
                            100.0 * done as f64 / total.max(1) as f64,
                            human_bytes(rate as u64)
                        );
                    }
                });
                Self {
                    task: Some(task),
                    bar: None,
                }
            }
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Counter {
    pub(crate) fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
}
