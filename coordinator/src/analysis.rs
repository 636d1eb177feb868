//! Rollout analysis (docs/ANALYSIS.md): the PromQL queries of a service's
//! `x-convoy.update.analysis`, run against Prometheus every `interval` while
//! its rollout runs, from one interval after the first instance switched.
//! The rollout gate reads the verdicts (`Coordinator::instance_views`): an
//! instance of the new revision counts as healthy only once a measurement
//! passed, and more than `failure_limit` failed measurements in a row fail
//! the rollout at once (rolled back by its policy) with the measured value
//! in the reason. Queries run here, off the state lock, each bounded in
//! time and answer size; Prometheus unreachable or answering no data is a
//! failed measurement (a gate that cannot see is not passed). Queries with
//! `proxy:` are judged on the agents' proxy figures instead
//! (`crate::proxy_gates`): what the new revision (and the stable one)
//! counted since the previous measurement.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio_util::sync::CancellationToken;

use crate::spec::{Analysis, AnalysisQuery};
use crate::state::{now_unix_ms, Coordinator};

/// A rollout's analysis: (environment, service, target revision).
pub type Key = (String, String, u64);

/// One query's answer limit and time limit.
const MAX_ANSWER: usize = 1 << 20;
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a rollout's analysis stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// Measurements where every query kept its bounds.
    pub passed: u32,
    /// Failed measurements in a row.
    pub failed_in_row: u32,
    /// The last measurement, one line per query (`errors = 0.01`).
    pub last: Vec<String>,
    /// Set once the rollout must fail: why, with the values.
    pub failure: Option<String>,
    next_due_ms: i64,
    /// The proxy figures at the previous measurement (or when the
    /// analysis started) and when: proxy gates judge the difference.
    proxy_base: Option<(i64, crate::proxy_stats::Snapshot)>,
}

/// The verdicts of the running rollouts' analyses.
#[derive(Default)]
pub struct Analyses {
    verdicts: Mutex<HashMap<Key, Verdict>>,
}

impl Analyses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Verdict>> {
        self.verdicts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verdict of `key`'s analysis (none before its first measurement).
    pub fn verdict(&self, key: &Key) -> Option<Verdict> {
        self.lock().get(key).cloned()
    }
}

/// A running rollout with an analysis, as the driver sees it.
#[derive(Debug, Clone)]
pub struct Running {
    pub key: Key,
    pub analysis: Analysis,
    /// When its first instance switched.
    pub first_switch_ms: i64,
    /// The stable revision the rollout started from (0: none).
    pub from_revision: u64,
}

type Http = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

fn client() -> Http {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map(|b| b.https_or_http().enable_http1().build())
        .unwrap_or_else(|_| {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .https_or_http()
                .enable_http1()
                .build()
        });
    Client::builder(TokioExecutor::new()).build(https)
}

/// Measures the running rollouts' analyses until `shutdown`.
/// `prometheus`: the default URL (`convoyd serve --prometheus-url`).
pub async fn drive(coord: Arc<Coordinator>, prometheus: String, shutdown: CancellationToken) {
    let http = client();
    let mut every = tokio::time::interval(Duration::from_millis(500));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let running = coord.running_analyses().await;
        let analyses = coord.analyses();
        {
            let mut verdicts = analyses.lock();
            verdicts.retain(|k, _| running.iter().any(|r| &r.key == k));
        }
        let now = now_unix_ms();
        for r in running {
            let has_proxy = r.analysis.queries.iter().any(|q| q.proxy.is_some());
            let (due, proxy_base) = {
                let mut verdicts = analyses.lock();
                let v = verdicts.entry(r.key.clone()).or_insert_with(|| Verdict {
                    next_due_ms: r.first_switch_ms + r.analysis.interval_ms as i64,
                    proxy_base: has_proxy
                        .then(|| (now, coord.proxy_figures().snapshot(&r.key.0, &r.key.1))),
                    ..Verdict::default()
                });
                (
                    v.failure.is_none() && now >= v.next_due_ms,
                    v.proxy_base.clone(),
                )
            };
            if !due {
                continue;
            }
            let proxy_now = proxy_base.as_ref().map(|_| {
                (
                    now_unix_ms(),
                    coord.proxy_figures().snapshot(&r.key.0, &r.key.1),
                )
            });
            let proxy_interval = match (&proxy_base, &proxy_now) {
                (Some((then_ms, then)), Some((now_ms, snap))) => Some((
                    snap.since(then, r.key.2),
                    (r.from_revision != 0).then(|| snap.since(then, r.from_revision)),
                    (now_ms - then_ms).max(1) as f64 / 1000.0,
                )),
                _ => None,
            };
            let base = if r.analysis.prometheus.is_empty() {
                prometheus.as_str()
            } else {
                r.analysis.prometheus.as_str()
            };
            let mut lines = Vec::new();
            let mut bad = Vec::new();
            for q in &r.analysis.queries {
                let measured = match (q.proxy, &proxy_interval) {
                    (Some(measure), Some((new, stable, seconds))) => {
                        let interval = crate::proxy_gates::Interval {
                            new,
                            stable: stable.as_ref().map(|s| (r.from_revision, s)),
                            new_revision: r.key.2,
                            seconds: *seconds,
                        };
                        crate::proxy_gates::judge(q, measure, &interval)
                    }
                    (Some(_), None) => Err("no proxy figures to compare with yet".to_string()),
                    (None, _) => measure(&http, base, q)
                        .await
                        .map(|value| (value, q.violation(value))),
                };
                match measured {
                    Ok((value, violation)) => {
                        lines.push(format!("{} = {value}", q.name));
                        if let Some(why) = violation {
                            bad.push(format!("`{}` measured {why}", q.name));
                        }
                    }
                    Err(e) => {
                        lines.push(format!("{}: {e}", q.name));
                        bad.push(format!("`{}`: {e}", q.name));
                    }
                }
            }
            let mut verdicts = analyses.lock();
            let Some(v) = verdicts.get_mut(&r.key) else {
                continue;
            };
            v.last = lines;
            if proxy_now.is_some() {
                v.proxy_base = proxy_now;
            }
            v.next_due_ms = now_unix_ms() + r.analysis.interval_ms as i64;
            if bad.is_empty() {
                v.passed += 1;
                v.failed_in_row = 0;
            } else {
                v.failed_in_row += 1;
                tracing::info!(env = %r.key.0, service = %r.key.1, revision = r.key.2, failed = %bad.join("; "), in_row = v.failed_in_row, "analysis measurement failed");
                if v.failed_in_row > r.analysis.failure_limit {
                    v.failure = Some(format!(
                        "analysis failed {} time(s) in a row (failure_limit {}): {}",
                        v.failed_in_row,
                        r.analysis.failure_limit,
                        bad.join("; ")
                    ));
                }
            }
        }
    }
}

/// One query's value: the single sample of an instant vector, or a scalar.
async fn measure(http: &Http, base: &str, q: &AnalysisQuery) -> Result<f64, String> {
    if base.is_empty() {
        return Err(
            "no Prometheus to ask: set `prometheus:` in the analysis or `convoyd serve --prometheus-url`"
                .into(),
        );
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", &q.query)
        .finish();
    let url = format!("{}/api/v1/query?{query}", base.trim_end_matches('/'));
    let uri: ::http::Uri = url.parse().map_err(|e| format!("bad URL `{url}`: {e}"))?;
    let answered = tokio::time::timeout(QUERY_TIMEOUT, async {
        let response = http.get(uri).await.map_err(|e| {
            format!(
                "Prometheus at {base} did not answer: {}",
                convoy_api::errors::chain(&e)
            )
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading Prometheus' answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    })
    .await
    .map_err(|_| {
        format!(
            "Prometheus at {base} gave no answer within {} s",
            QUERY_TIMEOUT.as_secs()
        )
    })??;
    let (status, body) = answered;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| format!("Prometheus answered HTTP {status} with no JSON"))?;
    if json["status"] != "success" {
        return Err(format!(
            "Prometheus refused the query: {}",
            json["error"].as_str().unwrap_or("no reason given")
        ));
    }
    value_of(&json["data"])
}

/// The value in a query's `data`: a scalar, or a vector of exactly one
/// sample.
fn value_of(data: &serde_json::Value) -> Result<f64, String> {
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => {
            let result = data["result"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            match result {
                [] => return Err("no data (the query returned an empty vector)".into()),
                [one] => &one["value"],
                many => {
                    return Err(format!(
                        "{} series: aggregate the query to one (e.g. with sum())",
                        many.len()
                    ))
                }
            }
        }
        other => {
            return Err(format!(
                "a {} result: make the query return one number",
                other.unwrap_or("unknown")
            ))
        }
    };
    let text = sample[1].as_str().ok_or("a sample without a value")?;
    text.parse::<f64>()
        .map_err(|_| format!("`{text}` is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_from_one_sample_or_a_scalar() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"resultType":"vector","result":[{"metric":{},"value":[1.5,"0.25"]}]}"#,
        )
        .unwrap();
        assert_eq!(value_of(&v), Ok(0.25));
        let s: serde_json::Value =
            serde_json::from_str(r#"{"resultType":"scalar","result":[1.5,"3"]}"#).unwrap();
        assert_eq!(value_of(&s), Ok(3.0));
        let empty: serde_json::Value =
            serde_json::from_str(r#"{"resultType":"vector","result":[]}"#).unwrap();
        assert!(value_of(&empty).unwrap_err().contains("no data"));
        let two: serde_json::Value = serde_json::from_str(
            r#"{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}"#,
        )
        .unwrap();
        assert!(value_of(&two).unwrap_err().contains("2 series"));
    }

    #[test]
    fn bounds_name_the_value() {
        let q = AnalysisQuery {
            name: "errors".into(),
            query: "x".into(),
            max: Some(0.05),
            min: Some(0.0),
            proxy: None,
            max_worse_than_stable_percent: None,
        };
        assert_eq!(q.violation(0.01), None);
        assert_eq!(q.violation(0.2).as_deref(), Some("0.2 > max 0.05"));
        assert_eq!(q.violation(-1.0).as_deref(), Some("-1 < min 0"));
    }
}
