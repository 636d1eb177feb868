//! Several Compose files (`-f a.yaml -f b.yaml`) merged into one, as
//! Compose merges override files: mappings merge key by key, a later scalar
//! wins, `command`/`entrypoint`/`healthcheck.test` are replaced whole,
//! `environment`/`labels`/`extra_hosts`/`sysctls` merge by name (list or
//! mapping form), `ports`/`volumes`/`expose`/`dns` and other lists append
//! what they do not hold yet.
//!
//! The merged document is sent as one YAML text, so the coordinator's error
//! positions are those of the merged text; each file is first read alone,
//! so a YAML error still names its own file and line.

use anyhow::{anyhow, Result};
use serde_json::{Map, Value};

/// Keys of a service whose value is replaced, not merged.
const REPLACED: &[&str] = &["command", "entrypoint", "test"];

/// Keys of a service whose list form `K=V` merges by name.
const BY_NAME: &[&str] = &["environment", "labels", "extra_hosts", "sysctls"];

/// Reads `text`, the content of `file`, as a generic document.
pub fn read(file: &str, text: &str) -> Result<Value> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: 32, max_nodes: 100_000 },
    };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        let message = e.to_string();
        anyhow!("{file}{at}: {}", message.lines().next().unwrap_or_default())
    })
}

/// Merges `over` into `base`.
pub fn merge(base: &mut Value, over: Value) {
    merge_at(base, over, &mut Vec::new());
}

fn merge_at(base: &mut Value, over: Value, path: &mut Vec<String>) {
    let key = path.last().map(String::as_str).unwrap_or_default();
    // services.NAME.KEY (depth 3) or services.NAME.healthcheck.test (4).
    let in_service = path.first().map(String::as_str) == Some("services") && path.len() >= 3;
    if in_service && BY_NAME.contains(&key) && path.len() == 3 {
        let mut merged = by_name(base.take());
        merged.extend(by_name(over));
        *base = Value::Object(merged);
        return;
    }
    if in_service && REPLACED.contains(&key) {
        *base = over;
        return;
    }
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (k, v) in over {
                path.push(k.clone());
                match base.get_mut(&k) {
                    Some(existing) if !v.is_null() => merge_at(existing, v, path),
                    _ => {
                        base.insert(k, v);
                    }
                }
                path.pop();
            }
        }
        (Value::Array(base), Value::Array(over)) => {
            for item in over {
                if !base.contains(&item) {
                    base.push(item);
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// `environment`-like values as a mapping: `[A=1, B]` or `{A: 1}`.
fn by_name(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(match s.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Value::String(v.to_owned())),
                    None => (s, Value::Null),
                }),
                _ => None,
            })
            .collect(),
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn merged(base: &str, over: &str) -> Value {
        let mut a = read("a.yaml", base).unwrap();
        merge(&mut a, read("b.yaml", over).unwrap());
        a
    }

    #[test]
    fn override_files_merge_as_compose_merges_them() {
        let out = merged(
            "services:\n  web:\n    image: web:1\n    command: [serve, --fast]\n    environment:\n      - A=1\n      - B=2\n    ports: [\"80:80\"]\n    deploy: {replicas: 1}\n  db:\n    image: db:1\n",
            "services:\n  web:\n    image: web:2\n    command: [serve]\n    environment: {B: three, C: '4'}\n    ports: [\"80:80\", \"443:443\"]\n    deploy: {replicas: 3}\n  cache:\n    image: cache:1\n",
        );
        let web = &out["services"]["web"];
        assert_eq!(web["image"], "web:2");
        assert_eq!(web["command"], json!(["serve"]), "replaced, not appended");
        assert_eq!(
            web["environment"],
            json!({"A": "1", "B": "three", "C": "4"})
        );
        assert_eq!(web["ports"], json!(["80:80", "443:443"]));
        assert_eq!(web["deploy"]["replicas"], 3);
        assert_eq!(out["services"]["db"]["image"], "db:1");
        assert_eq!(out["services"]["cache"]["image"], "cache:1");
    }

    #[test]
    fn a_file_that_is_not_yaml_is_named() {
        let err = read("b.yaml", "services: [\n").unwrap_err().to_string();
        assert!(err.starts_with("b.yaml:"), "{err}");
    }
}
