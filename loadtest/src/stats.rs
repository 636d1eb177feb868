//! Percentiles and the "median (min–max) over rounds" the reports print.

/// Nearest-rank percentile of sorted values (`p` in 0..=1).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// p50 / p99 / max of one round's samples.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: Vec<f64>) -> Self {
        let s = sorted(samples);
        Self {
            p50: percentile(&s, 0.5),
            p99: percentile(&s, 0.99),
            max: percentile(&s, 1.0),
        }
    }
}

/// Median and range of one figure over rounds.
#[derive(Debug, Clone, Copy)]
pub struct OverRounds {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl OverRounds {
    pub fn of(values: &[f64]) -> Self {
        let s = sorted(values.to_vec());
        let median = if s.is_empty() {
            f64::NAN
        } else if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        };
        Self {
            median,
            min: s.first().copied().unwrap_or(f64::NAN),
            max: s.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl std::fmt::Display for OverRounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} ({:.1}–{:.1})", self.median, self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let s = Spread::of((1..=100).map(f64::from).collect());
        assert_eq!((s.p50, s.p99, s.max), (51.0, 99.0, 100.0));
        let r = OverRounds::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((r.median, r.min, r.max), (2.5, 1.0, 10.0));
    }
}
