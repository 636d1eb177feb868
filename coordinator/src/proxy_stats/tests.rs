use super::*;

fn raw(requests: u64, errors: u64) -> Figures {
    let mut buckets = vec![0; BUCKETS];
    buckets[2] = requests;
    Figures {
        requests,
        errors,
        buckets,
        sum_micros: requests * 2000,
    }
}

fn report(requests: u64, errors: u64) -> ProxyReport {
    ProxyReport {
        entries: vec![(("prod".into(), "web".into(), 2), raw(requests, errors))],
    }
}

fn wire(entries: Vec<pb::ProxyRevisionStats>) -> pb::ProxyStats {
    pb::ProxyStats {
        bucket_bounds: PROXY_LATENCY_BOUNDS.to_vec(),
        entries,
    }
}

fn entry(revision: u64, requests: u64, errors: u64, buckets: usize) -> pb::ProxyRevisionStats {
    pb::ProxyRevisionStats {
        env: "prod".into(),
        service: "web".into(),
        revision,
        requests,
        errors,
        buckets: vec![0; buckets],
        duration_sum_micros: 0,
    }
}

#[test]
fn quantiles_interpolate_within_their_bucket_as_prometheus_does() {
    let mut f = Figures::default();
    // 0.5 ms, 1 ms, 2.5 ms, 5 ms, 10 ms: 100 requests in (5 ms, 10 ms].
    f.buckets[4] = 100;
    f.requests = 100;
    // Rank 95 of 100 in (0.005, 0.01]: 0.005 + 0.005 × 0.95.
    let p95 = f.quantile(0.95).unwrap();
    assert!((p95 - 0.00975).abs() < 1e-9, "{p95}");
    // Half in the first bucket, half in (0.01, 0.025].
    let mut g = Figures::default();
    g.buckets[0] = 50;
    g.buckets[5] = 50;
    let p50 = g.quantile(0.5).unwrap();
    assert!((p50 - 0.0005).abs() < 1e-12, "{p50}");
    let p99 = g.quantile(0.99).unwrap();
    assert!((p99 - (0.01 + 0.015 * 0.98)).abs() < 1e-9, "{p99}");
    // In +Inf: the highest finite bound.
    let mut h = Figures::default();
    h.buckets[BUCKETS - 1] = 3;
    assert_eq!(h.quantile(0.99), Some(10.0));
    assert_eq!(Figures::default().quantile(0.95), None);
}

#[test]
fn an_interval_is_the_difference_over_nodes_and_a_reset_counts_from_zero() {
    let figures = ProxyFigures::default();
    figures.record("n1", report(100, 1));
    figures.record("n2", report(50, 0));
    let before = figures.snapshot("prod", "web");
    figures.record("n1", report(150, 11));
    // n2's agent restarted: 30 since.
    figures.record("n2", report(30, 3));
    // n3 is new: all of it is in the interval.
    figures.record("n3", report(20, 2));
    let now = figures.snapshot("prod", "web");
    let d = now.since(&before, 2);
    assert_eq!((d.requests, d.errors), (50 + 30 + 20, 10 + 3 + 2));
    assert_eq!(d.buckets[2], 100);
    assert_eq!(now.since(&before, 7).requests, 0);
    // The totals carry on over the reset: 150 + (50 + 30) + 20.
    let totals = figures.totals();
    let t = &totals[&("prod".to_string(), "web".to_string(), 2)];
    assert_eq!((t.requests, t.errors), (250, 11 + 3 + 2));
    figures.record("n2", report(40, 3));
    assert_eq!(
        figures.totals()[&("prod".to_string(), "web".to_string(), 2)].requests,
        260
    );
    // A removed node's figures are gone.
    figures.forget_node("n1");
    figures.forget_node("n3");
    assert_eq!(
        figures.totals()[&("prod".to_string(), "web".to_string(), 2)].requests,
        90
    );
    // An empty report forgets the node's entries.
    figures.record("n2", ProxyReport::default());
    assert!(figures.totals().is_empty());
}

#[test]
fn reports_are_checked_at_the_boundary() {
    let ok = ProxyReport::try_from(wire(vec![entry(1, 10, 2, BUCKETS)])).unwrap();
    assert_eq!(ok.entries[0].1.requests, 10);
    assert_eq!(
        ProxyReport::try_from(wire(vec![entry(1, 10, 2, BUCKETS - 1)])).unwrap_err(),
        InvalidProxyStats::BucketCount {
            env: "prod".into(),
            service: "web".into(),
            revision: 1,
            got: BUCKETS - 1
        }
    );
    let mut other = wire(vec![]);
    other.bucket_bounds.pop();
    assert_eq!(
        ProxyReport::try_from(other).unwrap_err(),
        InvalidProxyStats::OtherBounds
    );
    let many = wire(
        (0..=MAX_ENTRIES as u64)
            .map(|r| entry(r, 0, 0, BUCKETS))
            .collect(),
    );
    assert_eq!(
        ProxyReport::try_from(many).unwrap_err(),
        InvalidProxyStats::TooManyEntries(MAX_ENTRIES + 1)
    );
    assert!(matches!(
        ProxyReport::try_from(wire(vec![entry(1, 1, 2, BUCKETS)])).unwrap_err(),
        InvalidProxyStats::MoreErrorsThanRequests { .. }
    ));
    assert!(matches!(
        ProxyReport::try_from(wire(vec![entry(1, 1, 0, BUCKETS), entry(1, 1, 0, BUCKETS)]))
            .unwrap_err(),
        InvalidProxyStats::Duplicate { .. }
    ));
    let mut nameless = entry(1, 1, 0, BUCKETS);
    nameless.service.clear();
    assert_eq!(
        ProxyReport::try_from(wire(vec![nameless])).unwrap_err(),
        InvalidProxyStats::BadName
    );
    // Through the agent message: refused with its reason.
    let msg = pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::ProxyStats(wire(vec![entry(
            1, 1, 0, 3,
        )]))),
    };
    let e = crate::report::AgentReport::try_from(msg).unwrap_err();
    assert!(e.to_string().contains("3 buckets"), "{e}");
}

#[test]
fn metrics_are_summed_over_nodes_in_the_text_format() {
    let figures = ProxyFigures::default();
    figures.record("n1", report(10, 1));
    figures.record("n2", report(5, 2));
    let mut reg = prometheus_client::registry::Registry::with_prefix("convoy");
    register_metrics(&mut reg, &figures.totals());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
    let text = crate::metrics::to_prometheus_text(&out);
    if std::env::var_os("CONVOY_PRINT_PROXY_METRICS").is_some() {
        print!("{text}");
    }
    let labels = r#"env="prod",service="web",revision="2""#;
    for line in [
        format!("convoy_proxy_requests_total{{{labels}}} 15"),
        format!("convoy_proxy_errors_total{{{labels}}} 3"),
        format!("convoy_proxy_request_duration_seconds_count{{{labels}}} 15"),
        format!("convoy_proxy_request_duration_seconds_sum{{{labels}}} 0.03"),
        format!(r#"convoy_proxy_request_duration_seconds_bucket{{le="0.001",{labels}}} 0"#),
        format!(r#"convoy_proxy_request_duration_seconds_bucket{{le="0.0025",{labels}}} 15"#),
        format!(r#"convoy_proxy_request_duration_seconds_bucket{{le="+Inf",{labels}}} 15"#),
        "# TYPE convoy_proxy_request_duration_seconds histogram".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
}
