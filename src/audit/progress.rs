//! Progress of a long audit run, on stderr: a live bar when a person is watching (stderr is a
//! terminal), and otherwise a plain line every so many events or seconds, which reads well in
//! a CI log or a file and never fills it with terminal control codes.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often plain progress lines are printed.
#[derive(Debug, Clone, Copy)]
pub struct ProgressEvery {
    pub events: u64,
    pub interval: Duration,
}

impl Default for ProgressEvery {
    fn default() -> Self {
        ProgressEvery {
            events: 100_000,
            interval: Duration::from_secs(10),
        }
    }
}

enum Sink {
    Bar(ProgressBar),
    Lines {
        every: ProgressEvery,
        last_count: u64,
        last_at: Instant,
    },
    Silent,
}

/// Reports how far a run has come.
pub struct Progress {
    label: &'static str,
    sink: Sink,
    count: u64,
    started: Instant,
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise. `total`, when known, gives the bar a length.
    pub fn new(label: &'static str, total: Option<u64>, every: ProgressEvery) -> Progress {
        let sink = if std::io::stderr().is_terminal() {
            let bar = match total {
                Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events ({per_sec}, {eta} left) {msg}"
            } else {
                "{prefix} [{elapsed_precise}] {spinner} {human_pos} events ({per_sec}) {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_prefix(label);
            bar.enable_steady_tick(Duration::from_millis(200));
            Sink::Bar(bar)
        } else {
            Sink::Lines {
                every,
                last_count: 0,
                last_at: Instant::now(),
            }
        };
        Progress {
            label,
            sink,
            count: 0,
            started: Instant::now(),
        }
    }

    /// No output at all (library callers and tests).
    pub fn silent(label: &'static str) -> Progress {
        Progress {
            label,
            sink: Sink::Silent,
            count: 0,
            started: Instant::now(),
        }
    }

    /// `n` more events are done; `at` says where the run is (a position, a line number).
    pub fn advance(&mut self, n: u64, at: &dyn std::fmt::Display) {
        self.count += n;
        let count = self.count;
        let label = self.label;
        let elapsed = self.started.elapsed();
        match &mut self.sink {
            Sink::Bar(bar) => {
                bar.set_position(count);
                bar.set_message(format!("at {at}"));
            }
            Sink::Lines {
                every,
                last_count,
                last_at,
            } => {
                if count - *last_count >= every.events || last_at.elapsed() >= every.interval {
                    eprintln!(
                        "{label}: {count} events, at {at}, {:.0} events/s",
                        rate(count, elapsed)
                    );
                    *last_count = count;
                    *last_at = Instant::now();
                }
            }
            Sink::Silent => {}
        }
    }

    /// Clears the bar (its summary is the caller's to print).
    pub fn finish(self) {
        if let Sink::Bar(bar) = self.sink {
            bar.finish_and_clear();
        }
    }
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}
