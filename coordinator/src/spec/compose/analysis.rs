//! `x-convoy.update.analysis`: PromQL queries, or the agents' proxy
//! figures, that must stay within bounds while a rollout runs
//! (docs/ANALYSIS.md).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{next_key, AnalysisKey, AnalysisQueryKey};
use super::seeds::{scalar, text, value};
use crate::spec::{values, Analysis, AnalysisQuery, ProxyMeasure};

/// Measurements every this often unless `interval` says.
const DEFAULT_INTERVAL_MS: u64 = 10_000;
/// The most queries one service's analysis runs.
const MAX_QUERIES: usize = 16;
/// The longest query accepted.
const MAX_QUERY: usize = 4096;

pub(super) struct AnalysisSeed;

impl<'de> DeserializeSeed<'de> for AnalysisSeed {
    type Value = Analysis;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Analysis, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnalysisSeed {
    type Value = Analysis;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a mapping such as `{interval: 10s, queries: [{name: errors, query: ..., max: 0.05}]}`",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Analysis, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut analysis = Analysis {
            prometheus: String::new(),
            interval_ms: DEFAULT_INTERVAL_MS,
            failure_limit: 0,
            queries: Vec::new(),
        };
        while let Some(key) = next_key::<A, AnalysisKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                AnalysisKey::Prometheus => {
                    analysis.prometheus = value(
                        &mut map,
                        scalar("Prometheus' URL, http:// or https://", prometheus_url),
                    )?
                    .unwrap_or_default()
                }
                AnalysisKey::Interval => {
                    analysis.interval_ms = value(
                        &mut map,
                        scalar("a duration such as `10s`", values::positive_duration_ms),
                    )?
                    .unwrap_or(DEFAULT_INTERVAL_MS)
                }
                AnalysisKey::FailureLimit => {
                    analysis.failure_limit = value(
                        &mut map,
                        scalar("a number of measurements, 0 or more", |s| {
                            s.parse::<u32>()
                                .map_err(|_| format!("`{s}` is not a number of measurements"))
                        }),
                    )?
                    .unwrap_or(0)
                }
                AnalysisKey::Queries => {
                    analysis.queries = value(&mut map, QueriesSeed)?.unwrap_or_default()
                }
            }
        }
        if analysis.queries.is_empty() {
            return Err(de::Error::custom(
                "an analysis needs `queries:`, each with `name`, `query` (PromQL) or `proxy` (a proxy figure) and `max` or `min`",
            ));
        }
        Ok(analysis)
    }
}

fn prometheus_url(s: &str) -> Result<String, String> {
    let s = s.trim_end_matches('/');
    if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() > 2048 {
        return Err(format!("`{s}` is not an http:// or https:// URL"));
    }
    s.parse::<::http::Uri>()
        .map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    Ok(s.to_owned())
}

fn bound(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a number")),
    }
}

fn proxy_measure(s: &str) -> Result<ProxyMeasure, String> {
    ProxyMeasure::ALL
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| {
            format!(
                "`{s}` is not a proxy figure: error-rate, latency-p95, latency-p99 or request-rate"
            )
        })
}

/// `10%` or `10`: 0 to 10000.
fn percent(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=10_000.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a percentage (0% to 10000%)")),
    }
}

struct QueriesSeed;

impl<'de> DeserializeSeed<'de> for QueriesSeed {
    type Value = Vec<AnalysisQuery>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for QueriesSeed {
    type Value = Vec<AnalysisQuery>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of queries, each with `name`, `query` or `proxy`, and `max` or `min`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<AnalysisQuery> = Vec::new();
        while let Some(q) = seq.next_element_seed(QuerySeed)? {
            if out.iter().any(|o| o.name == q.name) {
                return Err(de::Error::custom(format!(
                    "another query is already named `{}`: give each its own `name:`",
                    q.name
                )));
            }
            if out.len() == MAX_QUERIES {
                return Err(de::Error::custom(format!(
                    "an analysis runs at most {MAX_QUERIES} queries"
                )));
            }
            out.push(q);
        }
        Ok(out)
    }
}

struct QuerySeed;

impl<'de> DeserializeSeed<'de> for QuerySeed {
    type Value = AnalysisQuery;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AnalysisQuery, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for QuerySeed {
    type Value = AnalysisQuery;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a query: a mapping with `name`, `query` or `proxy`, and `max` or `min`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnalysisQuery, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut q = AnalysisQuery {
            name: String::new(),
            query: String::new(),
            max: None,
            min: None,
            proxy: None,
            max_worse_than_stable_percent: None,
        };
        while let Some(key) = next_key::<A, AnalysisQueryKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                AnalysisQueryKey::Name => {
                    q.name = value(&mut map, scalar("a query name", values::probe_name))?
                        .unwrap_or_default()
                }
                AnalysisQueryKey::Query => {
                    q.query = value(&mut map, text("a PromQL query"))?.unwrap_or_default()
                }
                AnalysisQueryKey::Max => q.max = value(&mut map, scalar("a number", bound))?,
                AnalysisQueryKey::Min => q.min = value(&mut map, scalar("a number", bound))?,
                AnalysisQueryKey::Proxy => {
                    q.proxy = value(
                        &mut map,
                        scalar(
                            "error-rate, latency-p95, latency-p99 or request-rate",
                            proxy_measure,
                        ),
                    )?
                }
                AnalysisQueryKey::MaxWorseThanStable => {
                    q.max_worse_than_stable_percent =
                        value(&mut map, scalar("a percentage such as `10%`", percent))?
                }
            }
        }
        if q.name.is_empty() {
            return Err(de::Error::custom("a query needs a `name:`"));
        }
        match q.proxy {
            Some(measure) => {
                if !q.query.is_empty() {
                    return Err(de::Error::custom(format!(
                        "query `{}` has both `query:` and `proxy:`: give it one",
                        q.name
                    )));
                }
                if q.max_worse_than_stable_percent.is_some() && measure == ProxyMeasure::RequestRate
                {
                    return Err(de::Error::custom(format!(
                        "query `{}`: `max_worse_than_stable` bounds error-rate and latency gates, not request-rate",
                        q.name
                    )));
                }
            }
            None => {
                if q.query.trim().is_empty() || q.query.len() > MAX_QUERY {
                    return Err(de::Error::custom(format!(
                        "query `{}` needs a `query:` of PromQL (at most {MAX_QUERY} bytes) or a `proxy:` figure",
                        q.name
                    )));
                }
                if q.max_worse_than_stable_percent.is_some() {
                    return Err(de::Error::custom(format!(
                        "query `{}`: `max_worse_than_stable` needs a `proxy:` figure (PromQL queries compare nothing)",
                        q.name
                    )));
                }
            }
        }
        if q.max.is_none() && q.min.is_none() && q.max_worse_than_stable_percent.is_none() {
            return Err(de::Error::custom(format!(
                "query `{}` needs `max:` or `min:` (the bound a measurement must keep){}",
                q.name,
                if q.proxy.is_some() {
                    " or `max_worse_than_stable:`"
                } else {
                    ""
                }
            )));
        }
        Ok(q)
    }
}
