//! The runner against a scripted reconciler, on tokio's paused clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::*;

/// What one attempt of a key does.
#[derive(Clone, Debug)]
enum Step {
    Ok(Action),
    Fail,
    /// Waits for the gate, then succeeds.
    Gate(Arc<Notify>),
    /// Takes this long, then succeeds.
    Slow(Duration),
}

#[derive(Default)]
struct World {
    /// Syncs still to fail as if the runtime were down.
    unreachable: u32,
    scripts: HashMap<String, VecDeque<Step>>,
    /// Keys a sync no longer names.
    done: HashSet<String>,
    syncs: Vec<Instant>,
    unreachable_syncs: Vec<Instant>,
    starts: Vec<(String, Instant)>,
    ends: Vec<(String, Instant)>,
    running: HashMap<String, usize>,
    max_per_key: usize,
    running_total: usize,
    max_total: usize,
}

#[derive(Clone, Default)]
struct Scripted {
    world: Arc<Mutex<World>>,
}

impl Scripted {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    fn script(&self, key: &str, steps: Vec<Step>) {
        self.world().scripts.insert(key.into(), steps.into());
    }

    fn starts_of(&self, key: &str) -> Vec<Instant> {
        self.world()
            .starts
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, t)| *t)
            .collect()
    }
}

impl Reconcile for Scripted {
    type Plan = Vec<String>;
    type Key = String;
    type Error = String;

    async fn sync(
        &mut self,
        plan: Option<&Vec<String>>,
        _now: std::time::Instant,
    ) -> Result<Synced<String>, Unreachable> {
        let mut world = self.world();
        if world.unreachable > 0 {
            world.unreachable -= 1;
            world.unreachable_syncs.push(Instant::now());
            return Err(Unreachable {
                reason: "down".into(),
            });
        }
        world.syncs.push(Instant::now());
        let work = plan
            .map(|p| {
                p.iter()
                    .filter(|k| !world.done.contains(*k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(Synced { work, next: None })
    }

    fn reconcile(
        &self,
        _plan: Arc<Vec<String>>,
        key: String,
        _now: std::time::Instant,
    ) -> BoxFuture<'static, Result<Action, String>> {
        let world = self.world.clone();
        async move {
            let step = {
                let mut w = world.lock().unwrap();
                w.starts.push((key.clone(), Instant::now()));
                let n = w.running.entry(key.clone()).or_default();
                *n += 1;
                let n = *n;
                w.max_per_key = w.max_per_key.max(n);
                w.running_total += 1;
                w.max_total = w.max_total.max(w.running_total);
                w.scripts.get_mut(&key).and_then(VecDeque::pop_front)
            };
            let result = match step {
                None => Ok(Action::AwaitChange),
                Some(Step::Ok(action)) => Ok(action),
                Some(Step::Fail) => Err(format!("{key} failed")),
                Some(Step::Gate(gate)) => {
                    gate.notified().await;
                    Ok(Action::AwaitChange)
                }
                Some(Step::Slow(d)) => {
                    tokio::time::sleep(d).await;
                    Ok(Action::AwaitChange)
                }
            };
            let mut w = world.lock().unwrap();
            if let Some(n) = w.running.get_mut(&key) {
                *n -= 1;
            }
            w.running_total -= 1;
            w.ends.push((key.clone(), Instant::now()));
            if w.scripts.get(&key).is_none_or(VecDeque::is_empty) && result.is_ok() {
                w.done.insert(key);
            }
            result
        }
        .boxed()
    }
}

struct Running {
    plan: watch::Sender<Option<Arc<Vec<String>>>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(reconciler: Scripted, config: Config, keys: &[&str]) -> Running {
    let plan = keys.iter().map(|k| k.to_string()).collect();
    let (tx, rx) = watch::channel(Some(Arc::new(plan)));
    let wake = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(reconciler, config, rx, wake.clone(), shutdown.clone()));
    Running {
        plan: tx,
        wake,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Whether `d` is the jittered form of `base` (3/4 of it to all of it),
/// give or take the clock's millisecond.
fn jittered(d: Duration, base: Duration) -> bool {
    let slack = Duration::from_millis(5);
    d + slack >= base.mul_f64(0.75) && d <= base + slack
}

#[tokio::test(start_paused = true)]
async fn a_blocked_workload_does_not_delay_another() {
    let r = Scripted::default();
    let gate = Arc::new(Notify::new());
    r.script("slow", vec![Step::Gate(gate.clone())]);
    let running = start(r.clone(), Config::default(), &["slow", "fast"]);

    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(r.world().done.contains("fast"), "fast waited for slow");
    assert!(!r.world().done.contains("slow"));
    // A later workload is not held up either.
    running
        .plan
        .send_replace(Some(Arc::new(vec!["slow".into(), "later".into()])));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(r.world().done.contains("later"), "later waited for slow");

    gate.notify_one();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(r.world().done.contains("slow"));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_reconcile_per_key_is_in_flight_however_often_it_is_asked_for() {
    let r = Scripted::default();
    r.script(
        "a",
        (0..5).map(|_| Step::Slow(Duration::from_secs(1))).collect(),
    );
    let running = start(r.clone(), Config::default(), &["a", "b"]);
    // Wake-ups and plan changes keep asking for "a" while it runs.
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        running.wake.notify_one();
        running.plan.send_modify(|_| {});
    }
    {
        let w = r.world();
        assert_eq!(w.max_per_key, 1, "two reconciles of one key at once");
        let starts = w.starts.iter().filter(|(k, _)| k == "a").count();
        assert_eq!(starts, 5, "every step of `a` ran, one after another");
    }
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reconciles_in_flight_are_bounded() {
    let r = Scripted::default();
    let keys = ["k1", "k2", "k3", "k4", "k5"];
    for k in keys {
        r.script(k, vec![Step::Slow(Duration::from_secs(1))]);
    }
    let config = Config {
        max_concurrent: 2,
        ..Config::default()
    };
    let running = start(r.clone(), config, &keys);
    tokio::time::sleep(Duration::from_secs(5)).await;
    {
        let w = r.world();
        assert_eq!(w.max_total, 2);
        assert_eq!(w.done.len(), 5, "{:?}", w.done);
    }
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_reconcile_backs_off_exponentially_and_resets_after_a_success() {
    let r = Scripted::default();
    use Step::{Fail, Ok as Done};
    r.script(
        "a",
        vec![
            Fail,
            Fail,
            Fail,
            Fail,
            Done(Action::AwaitChange),
            Fail,
            Fail,
        ],
    );
    let running = start(r.clone(), Config::default(), &["a", "b"]);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let starts = r.starts_of("a");
    assert_eq!(starts.len(), 8, "{starts:?}");
    let gaps = gaps(&starts);
    for (gap, base) in gaps.iter().zip([1, 2, 4, 8]) {
        assert!(
            jittered(*gap, Duration::from_secs(base)),
            "{gap:?} after failure, want ~{base}s: {gaps:?}"
        );
    }
    // The success ran at once after its retry; the backoff starts over.
    assert!(
        jittered(gaps[5], Duration::from_secs(1)),
        "after a success the first retry is ~1s: {gaps:?}"
    );
    assert!(
        jittered(gaps[6], Duration::from_secs(2)),
        "then ~2s: {gaps:?}"
    );
    // "b" was never held up by "a".
    assert!(r.world().done.contains("b"));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_plan_retries_a_failing_key_at_once() {
    let r = Scripted::default();
    r.script("a", vec![Step::Fail; 6]);
    let running = start(r.clone(), Config::default(), &["a"]);
    // Failures at ~0, 1, 3, 7 s; the next retry is ~8 s later.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before = r.starts_of("a").len();
    assert_eq!(before, 4, "{:?}", r.starts_of("a"));
    running
        .plan
        .send_replace(Some(Arc::new(vec!["a".to_string()])));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let starts = r.starts_of("a");
    assert_eq!(starts.len(), before + 1, "the new plan did not retry it");
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_runtime_is_retried_with_growing_backoff_and_reset_once_it_answers() {
    let r = Scripted::default();
    r.world().unreachable = 5;
    let running = start(r.clone(), Config::default(), &["a"]);
    tokio::time::sleep(Duration::from_secs(40)).await;
    let (tries, first_ok) = {
        let w = r.world();
        (w.unreachable_syncs.clone(), w.syncs.first().copied())
    };
    assert_eq!(tries.len(), 5);
    let mut all = tries.clone();
    all.extend(first_ok);
    for (gap, base) in gaps(&all).iter().zip([1, 2, 4, 8, 16]) {
        assert!(
            jittered(*gap, Duration::from_secs(base)),
            "{gap:?}, want ~{base}s: {:?}",
            gaps(&all)
        );
    }
    assert!(r.world().done.contains("a"), "work resumed once reachable");

    // Down again: the backoff starts over at ~1 s.
    r.world().unreachable = 2;
    running.wake.notify_one();
    tokio::time::sleep(Duration::from_secs(10)).await;
    {
        let w = r.world();
        let again = &w.unreachable_syncs[5..];
        assert_eq!(again.len(), 2);
        let next_ok = w.syncs.iter().find(|t| **t > again[1]).copied().unwrap();
        assert!(jittered(again[1] - again[0], Duration::from_secs(1)));
        assert!(jittered(next_ok - again[1], Duration::from_secs(2)));
    }
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_periodic_requeue_syncs_without_any_trigger() {
    let r = Scripted::default();
    let config = Config {
        requeue: Duration::from_secs(10),
        ..Config::default()
    };
    let running = start(r.clone(), config, &[]);
    tokio::time::sleep(Duration::from_secs(35)).await;
    let syncs = r.world().syncs.clone();
    assert_eq!(syncs.len(), 4, "{syncs:?}");
    for gap in gaps(&syncs) {
        assert_eq!(gap, Duration::from_secs(10));
    }
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_requeue_reconciles_the_key_again_after_its_delay() {
    let r = Scripted::default();
    // After this step syncs no longer name "a": only the requeue brings it back.
    r.script("a", vec![Step::Ok(Action::Requeue(Duration::from_secs(3)))]);
    let running = start(r.clone(), Config::default(), &["a"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let starts = r.starts_of("a");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[1] - starts[0], Duration::from_secs(3));
    running.stop().await;
}

#[tokio::test]
async fn pass_reconciles_every_key_named_then_syncs_again() {
    let mut r = Scripted::default();
    let plan = Arc::new(vec!["a".to_string(), "b".to_string()]);
    let next = pass(&mut r, Some(plan), std::time::Instant::now())
        .await
        .unwrap();
    assert_eq!(next, None);
    let w = r.world();
    assert_eq!(w.syncs.len(), 2);
    let keys: Vec<&str> = w.starts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
}

#[tokio::test]
async fn pass_without_a_plan_only_syncs() {
    let mut r = Scripted::default();
    pass(&mut r, None, std::time::Instant::now()).await.unwrap();
    assert_eq!(r.world().syncs.len(), 1);
    assert!(r.world().starts.is_empty());
}
