//! Latency samples and their percentiles (nearest rank, computed from every sample).

use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub(crate) struct Samples(Vec<Duration>);

impl Samples {
    pub(crate) fn new() -> Samples {
        Samples(Vec::new())
    }

    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub(crate) fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`-th percentile (0 < p ≤ 100) in milliseconds; NaN without samples.
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        ms(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    pub(crate) fn max_ms(&self) -> f64 {
        self.0.iter().max().map(|d| ms(*d)).unwrap_or(f64::NAN)
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::new();
        for i in 1..=100 {
            s.push(Duration::from_millis(i));
        }
        assert_eq!(s.percentile_ms(50.0), 50.0);
        assert_eq!(s.percentile_ms(99.0), 99.0);
        assert_eq!(s.percentile_ms(100.0), 100.0);
        assert_eq!(s.max_ms(), 100.0);
        assert!(Samples::new().percentile_ms(50.0).is_nan());
    }
}
