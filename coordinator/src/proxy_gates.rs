//! The analysis' proxy gates (docs/ANALYSIS.md, "Proxy gates"): a query
//! with `proxy: error-rate | latency-p95 | latency-p99 | request-rate`
//! judged on what the agents' proxies counted of the rollout's new
//! revision over one interval, against `max`/`min` and, with
//! `max_worse_than_stable`, against the stable revision's value over the
//! same interval.

use crate::proxy_stats::Figures;
use crate::spec::{AnalysisQuery, ProxyMeasure};

/// When the stable revision had no error, the new one may still have
/// this error rate under `max_worse_than_stable` (one in a thousand):
/// any percentage of 0 is 0, and a single error would fail the gate.
pub const ERROR_RATE_FLOOR: f64 = 0.001;

/// One interval's figures of the two revisions.
#[derive(Debug)]
pub struct Interval<'a> {
    pub new: &'a Figures,
    /// The stable revision (`from_revision`) and its figures; `None` for a
    /// first deployment.
    pub stable: Option<(u64, &'a Figures)>,
    pub new_revision: u64,
    pub seconds: f64,
}

/// `measure` of `figures` over `seconds`; `None` without requests (a rate
/// of requests is 0 then).
pub fn value_of(measure: ProxyMeasure, figures: &Figures, seconds: f64) -> Option<f64> {
    let v = match measure {
        ProxyMeasure::ErrorRate => figures.error_rate()?,
        ProxyMeasure::LatencyP95 => figures.quantile(0.95)?,
        ProxyMeasure::LatencyP99 => figures.quantile(0.99)?,
        ProxyMeasure::RequestRate => figures.requests as f64 / seconds.max(0.001),
    };
    // Six decimals are plenty for a reason line.
    Some((v * 1e6).round() / 1e6)
}

/// The value measured and, when it breaks a bound, why (`0.2 > max 0.05`).
/// No request of the new revision in the interval is an error: a gate
/// that cannot see is not passed.
pub fn judge(
    q: &AnalysisQuery,
    measure: ProxyMeasure,
    interval: &Interval<'_>,
) -> Result<(f64, Option<String>), String> {
    let value = value_of(measure, interval.new, interval.seconds).ok_or_else(|| {
        format!(
            "no data (no request reached revision {} through the proxies in the interval)",
            interval.new_revision
        )
    })?;
    if let Some(why) = q.violation(value) {
        return Ok((value, Some(why)));
    }
    let Some(percent) = q.max_worse_than_stable_percent else {
        return Ok((value, None));
    };
    // Without requests to the stable revision there is nothing to compare
    // with (a rolling update that replaced every stable instance): only
    // the absolute bounds hold then.
    let Some((stable_revision, stable)) = interval
        .stable
        .and_then(|(rev, f)| Some((rev, value_of(measure, f, interval.seconds)?)))
    else {
        return Ok((value, None));
    };
    let mut allowed = stable * (1.0 + percent / 100.0);
    if measure == ProxyMeasure::ErrorRate {
        allowed = allowed.max(ERROR_RATE_FLOOR);
    }
    let allowed = (allowed * 1e6).round() / 1e6;
    if value > allowed {
        return Ok((
            value,
            Some(format!(
                "{value} > {allowed} (stable revision {stable_revision}: {stable}, max_worse_than_stable {percent}%)"
            )),
        ));
    }
    Ok((value, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_stats::BUCKETS;

    fn figures(requests: u64, errors: u64) -> Figures {
        let mut buckets = vec![0; BUCKETS];
        buckets[3] = requests; // 2.5-5 ms
        Figures {
            requests,
            errors,
            buckets,
            sum_micros: requests * 4000,
        }
    }

    fn gate(max: Option<f64>, worse: Option<f64>) -> AnalysisQuery {
        AnalysisQuery {
            name: "errors".into(),
            query: String::new(),
            max,
            min: None,
            proxy: Some(ProxyMeasure::ErrorRate),
            max_worse_than_stable_percent: worse,
        }
    }

    fn interval<'a>(new: &'a Figures, stable: Option<&'a Figures>) -> Interval<'a> {
        Interval {
            new,
            stable: stable.map(|s| (1, s)),
            new_revision: 2,
            seconds: 2.0,
        }
    }

    #[test]
    fn an_error_rate_over_max_names_the_value() {
        let new = figures(100, 20);
        let (v, why) = judge(
            &gate(Some(0.05), None),
            ProxyMeasure::ErrorRate,
            &interval(&new, None),
        )
        .unwrap();
        assert_eq!(v, 0.2);
        assert_eq!(why.as_deref(), Some("0.2 > max 0.05"));
        let ok = figures(100, 1);
        assert_eq!(
            judge(
                &gate(Some(0.05), None),
                ProxyMeasure::ErrorRate,
                &interval(&ok, None)
            )
            .unwrap(),
            (0.01, None)
        );
    }

    #[test]
    fn no_request_of_the_new_revision_fails_the_measurement() {
        let none = figures(0, 0);
        let e = judge(
            &gate(Some(0.05), None),
            ProxyMeasure::ErrorRate,
            &interval(&none, None),
        )
        .unwrap_err();
        assert!(e.contains("no request reached revision 2"), "{e}");
        // A rate of requests is 0 then, a value like any other.
        let q = AnalysisQuery {
            proxy: Some(ProxyMeasure::RequestRate),
            min: Some(1.0),
            max: None,
            ..gate(None, None)
        };
        let (v, why) = judge(&q, ProxyMeasure::RequestRate, &interval(&none, None)).unwrap();
        assert_eq!(v, 0.0);
        assert_eq!(why.as_deref(), Some("0 < min 1"));
    }

    #[test]
    fn the_relative_gate_compares_with_the_stable_revision() {
        let q = gate(None, Some(10.0));
        let stable = figures(1000, 20); // 0.02
        let fine = figures(1000, 21); // 0.021 ≤ 0.022
        assert_eq!(
            judge(&q, ProxyMeasure::ErrorRate, &interval(&fine, Some(&stable)))
                .unwrap()
                .1,
            None
        );
        let worse = figures(1000, 30); // 0.03 > 0.022
        let why = judge(
            &q,
            ProxyMeasure::ErrorRate,
            &interval(&worse, Some(&stable)),
        )
        .unwrap()
        .1
        .unwrap();
        assert!(
            why.starts_with("0.03 > 0.022 (stable revision 1: 0.02"),
            "{why}"
        );
        // Stable without errors: the floor, not 0.
        let clean = figures(1000, 0);
        let one = figures(2000, 1); // 0.0005 ≤ 0.001
        assert_eq!(
            judge(&q, ProxyMeasure::ErrorRate, &interval(&one, Some(&clean)))
                .unwrap()
                .1,
            None
        );
        let two_percent = figures(100, 2);
        assert!(judge(
            &q,
            ProxyMeasure::ErrorRate,
            &interval(&two_percent, Some(&clean))
        )
        .unwrap()
        .1
        .is_some());
        // Stable without requests: nothing to compare, the absolute bounds only.
        let idle = figures(0, 0);
        assert_eq!(
            judge(&q, ProxyMeasure::ErrorRate, &interval(&worse, Some(&idle)))
                .unwrap()
                .1,
            None
        );
        // Latency: 10 % over the stable p95.
        let mut slow = figures(100, 0);
        slow.buckets = vec![0; BUCKETS];
        slow.buckets[6] = 100; // 25-50 ms
        let lq = AnalysisQuery {
            proxy: Some(ProxyMeasure::LatencyP95),
            ..gate(None, Some(10.0))
        };
        let why = judge(
            &lq,
            ProxyMeasure::LatencyP95,
            &interval(&slow, Some(&stable)),
        )
        .unwrap()
        .1
        .unwrap();
        assert!(why.contains("stable revision 1"), "{why}");
    }
}
