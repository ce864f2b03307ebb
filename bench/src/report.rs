//! The rows, the table and the JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// What a row must reach. Ratios are always ours ÷ baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// ratio ≥ x (throughput relative to a baseline).
    RatioAtLeast(f64),
    /// ratio > x ("ahead of").
    RatioAbove(f64),
    /// ratio ≤ x (latency relative to a baseline).
    RatioAtMost(f64),
    /// ours ≥ x.
    AtLeast(f64),
    /// ours < x.
    Below(f64),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::RatioAtLeast(x) => format!("ratio ≥ {x}"),
            Target::RatioAbove(x) => format!("ratio > {x}"),
            Target::RatioAtMost(x) => format!("ratio ≤ {x}"),
            Target::AtLeast(x) => format!("≥ {}", number(*x)),
            Target::Below(x) => format!("< {}", number(*x)),
        }
    }
}

/// One measured figure. Serialises as `{ name, ours, baseline, unit, ratio }`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub ours: f64,
    pub baseline: Option<f64>,
    pub unit: String,
    pub ratio: Option<f64>,
    /// Which of the rows (1–8) this figure belongs to.
    #[serde(skip)]
    pub row: u8,
    #[serde(skip)]
    pub target: Option<Target>,
}

impl Row {
    pub fn new(row: u8, name: impl Into<String>, ours: f64, unit: &str) -> Row {
        Row {
            name: name.into(),
            ours,
            baseline: None,
            unit: unit.to_owned(),
            ratio: None,
            row,
            target: None,
        }
    }

    /// Adds the baseline; the ratio is ours ÷ baseline.
    pub fn vs(mut self, baseline: f64) -> Row {
        self.baseline = Some(baseline);
        self.ratio = (baseline != 0.0).then(|| self.ours / baseline);
        self
    }

    pub fn target(mut self, t: Target) -> Row {
        self.target = Some(t);
        self
    }

    /// None when the row has no target.
    pub fn met(&self) -> Option<bool> {
        let t = self.target?;
        Some(match t {
            Target::RatioAtLeast(x) => self.ratio.is_some_and(|r| r >= x),
            Target::RatioAbove(x) => self.ratio.is_some_and(|r| r > x),
            Target::RatioAtMost(x) => self.ratio.is_some_and(|r| r <= x),
            Target::AtLeast(x) => self.ours >= x,
            Target::Below(x) => self.ours < x,
        })
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub sizes: &'static str,
    pub server: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    pub(crate) fn new(sizes: &'static str, server: String) -> Report {
        Report {
            sizes,
            server,
            rows: vec![],
            notes: vec![],
            elapsed: Duration::ZERO,
        }
    }

    pub(crate) fn extend(&mut self, part: (Vec<Row>, Vec<String>)) {
        self.rows.extend(part.0);
        self.notes.extend(part.1);
    }

    pub(crate) fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    /// The rows as a JSON array of `{ name, ours, baseline, unit, ratio }`.
    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(&self.rows)
    }

    /// The table `purser bench` prints (Markdown, so it pastes into BENCHMARKS.md as is).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "purser bench ({} sizes, {:.0} s) on {}\n",
            self.sizes,
            self.elapsed.as_secs_f64(),
            self.server
        );
        let _ = writeln!(
            out,
            "| row | measurement | ours | baseline | unit | ratio | target | met |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---|---:|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.row,
                r.name,
                number(r.ours),
                r.baseline.map(number).unwrap_or_else(|| "—".into()),
                r.unit,
                r.ratio
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_else(|| "—".into()),
                r.target.map(|t| t.describe()).unwrap_or_default(),
                match r.met() {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                }
            );
        }
        let with_target: Vec<&Row> = self.rows.iter().filter(|r| r.target.is_some()).collect();
        let met = with_target.iter().filter(|r| r.met() == Some(true)).count();
        let _ = writeln!(out, "\ntargets met: {met} of {}", with_target.len());
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        out
    }
}

/// 12,345 for big figures, 12.3 or 1.23 for small ones.
pub(crate) fn number(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    // Judge by the rounded value, so 999.6 reads "1,000" rather than "1000".
    if x.abs().round() >= 1000.0 {
        let n = x.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if n < 0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1234567.4), "1,234,567");
        assert_eq!(number(999.6), "1,000");
        assert_eq!(number(512.3), "512");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
    }

    #[test]
    fn targets_are_judged_on_the_right_side() {
        let r = Row::new(1, "x", 85.0, "events/s").vs(100.0);
        assert_eq!(
            r.clone().target(Target::RatioAtLeast(0.85)).met(),
            Some(true)
        );
        assert_eq!(r.clone().target(Target::RatioAbove(1.0)).met(), Some(false));
        assert_eq!(r.clone().target(Target::RatioAtMost(2.0)).met(), Some(true));
        assert_eq!(
            Row::new(5, "p99", 49.0, "ms")
                .target(Target::Below(50.0))
                .met(),
            Some(true)
        );
        assert_eq!(r.met(), None);
        let json = serde_json::to_value(Row::new(8, "rss", 90.0, "MB")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "rss", "ours": 90.0, "baseline": null, "unit": "MB", "ratio": null})
        );
    }
}
