//! Volumes (issue 14): a named volume declared under the top-level
//! `volumes:` is created by the agent as `convoy-ENV-KEY`, labelled as
//! Convoy's, and its data outlives a new revision, an agent restart and
//! `convoy delete`; an anonymous volume keeps its data across a new
//! revision of its instance and goes when the instance does; two environments with the same key get two
//! volumes.

use std::path::Path;
use std::time::Duration;

use convoy_tests::{docker, skip_without_docker, wait_until, Cluster};
use serde_json::Value;

/// Removes the test's volumes, whatever happened; declared before the
/// cluster, so dropped after its containers are gone.
struct RemoveVolumes(Vec<String>);

impl Drop for RemoveVolumes {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = docker::docker(&["volume", "rm", "-f", name]);
        }
    }
}

/// `docker volume inspect NAME`, as JSON.
fn volume(name: &str) -> Value {
    let out = docker::docker(&["volume", "inspect", name])
        .unwrap_or_else(|e| panic!("docker volume inspect {name}: {e:#}"));
    let mut all: Vec<Value> = serde_json::from_str(&out).unwrap();
    all.remove(0)
}

/// Copies `text` into `path` inside container `id` (the test image has no
/// shell; `docker cp` writes through the container's mounts).
fn put(dir: &Path, id: &str, path: &str, text: &str) {
    let local = dir.join("put.txt");
    std::fs::write(&local, text).unwrap();
    docker::docker(&["cp", local.to_str().unwrap(), &format!("{id}:{path}")])
        .unwrap_or_else(|e| panic!("docker cp into {id}:{path}: {e:#}"));
}

/// The text at `path` inside container `id`, or the error.
fn get(dir: &Path, id: &str, path: &str) -> Result<String, String> {
    let local = dir.join("got.txt");
    let _ = std::fs::remove_file(&local);
    docker::docker(&["cp", &format!("{id}:{path}"), local.to_str().unwrap()])
        .map_err(|e| format!("{e:#}"))?;
    std::fs::read_to_string(&local).map_err(|e| e.to_string())
}

/// The names of the mounts of container `id` that are volumes, by target.
fn volume_mounts(id: &str) -> Vec<(String, String)> {
    let out = docker::docker(&["inspect", id]).unwrap();
    let all: Vec<Value> = serde_json::from_str(&out).unwrap();
    let mut mounts: Vec<(String, String)> = all[0]["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] == "volume")
        .map(|m| {
            (
                m["Destination"].as_str().unwrap().to_string(),
                m["Name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    mounts.sort();
    mounts
}

/// The running container of `service` in environment `env`.
fn running_in(c: &Cluster, service: &str, env: &str) -> docker::Container {
    wait_until(
        format!("{service} runs in {env}"),
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            c.containers_of(service)?
                .into_iter()
                .find(|ct| ct.label("io.convoy.env") == Some(env) && ct.state.running)
                .ok_or_else(|| anyhow::anyhow!("no running container of {service} in {env} yet"))
        },
    )
}

#[test]
fn a_named_volumes_data_survives_a_new_revision_an_agent_restart_and_delete() {
    skip_without_docker!();
    // Declared before the cluster: dropped after its containers are gone.
    let mut volumes = RemoveVolumes(Vec::new());
    let mut c = Cluster::start();
    let node = c.add_agent();
    let prod_node = c.add_agent_with_args(&["--label", "env=prod"]);
    c.wait_nodes_ready(&[node.clone(), prod_node.clone()]);
    // The volume key carries the cluster's id: no other test's volume.
    let svc = c.service_name("vol");
    let key = c.service_name("data");
    let named = format!("convoy-default-{key}");
    let prod_named = format!("convoy-prod-{key}");
    volumes.0.extend([named.clone(), prod_named.clone()]);
    let image = c.image();
    let spec = |greeting: &str| {
        format!(
            "services:\n  {svc}:\n    image: {image}\n    environment:\n      GREETING: {greeting}\n    \
             volumes:\n      - {key}:/data\n      - /scratch\n\
             volumes:\n  {key}:\n    labels:\n      team: storage\n"
        )
    };
    let file = c.write_spec("vol.yaml", &spec("one"));
    c.apply(&file);
    let first = c.wait_service_running(&svc, 1, 1).remove(0);

    // The agent made the env-scoped volume, labelled as Convoy's, and one
    // anonymous volume for the instance.
    let mounts = volume_mounts(&first.id);
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert_eq!(mounts[0], ("/data".to_string(), named.clone()));
    let anonymous = mounts[1].1.clone();
    volumes.0.push(anonymous.clone());
    assert!(
        anonymous.starts_with(&format!("convoy-default-{svc}-1-")),
        "{anonymous}"
    );
    let v = volume(&named);
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Labels"]["io.convoy.managed"], "true");
    assert_eq!(v["Labels"]["io.convoy.env"], "default");
    assert_eq!(v["Labels"]["io.convoy.volume"], key.as_str());
    assert_eq!(v["Labels"]["team"], "storage");
    assert_eq!(volume(&anonymous)["Labels"]["io.convoy.anonymous"], "true");

    let dir = c.root().to_path_buf();
    put(&dir, &first.id, "/data/note", "kept");
    put(&dir, &first.id, "/scratch/note", "scratch kept");

    // A new revision: a new container, the same data.
    let file = c.write_spec("vol.yaml", &spec("two"));
    c.apply(&file);
    let second = c.wait_service_running(&svc, 1, 2).remove(0);
    assert_ne!(second.id, first.id, "a new revision replaces the container");
    assert_eq!(get(&dir, &second.id, "/data/note").unwrap(), "kept");
    assert_eq!(
        get(&dir, &second.id, "/scratch/note").unwrap(),
        "scratch kept",
        "an anonymous volume stays with its instance across revisions"
    );

    // An agent restart: still there.
    c.stop_agent(&node);
    c.start_agent(&node);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let after = c.wait_service_running(&svc, 1, 2).remove(0);
    assert_eq!(get(&dir, &after.id, "/data/note").unwrap(), "kept");

    // `convoy delete` keeps the volume and its data for the next apply.
    c.delete(&svc);
    c.wait_service_gone(&svc);
    assert_eq!(volume(&named)["Name"], named.as_str());
    // The instance is gone for good: its anonymous volume with it.
    wait_until(
        format!("anonymous volume {anonymous} is removed with its instance"),
        Duration::from_secs(20),
        Duration::from_millis(250),
        || {
            anyhow::ensure!(
                docker::docker(&["volume", "inspect", &anonymous]).is_err(),
                "{anonymous} is still there"
            );
            Ok(())
        },
    );
    c.apply(&file);
    let again = running_in(&c, &svc, "default");
    assert_eq!(get(&dir, &again.id, "/data/note").unwrap(), "kept");

    // Another environment with the same key: its own, empty volume.
    let out = c.cli(&["--env", "prod", "apply", "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prod = running_in(&c, &svc, "prod");
    let prod_mounts = volume_mounts(&prod.id);
    volumes
        .0
        .extend(prod_mounts.iter().map(|(_, name)| name.clone()));
    assert!(
        prod_mounts.contains(&("/data".to_string(), prod_named.clone())),
        "{prod_mounts:?}"
    );
    assert_eq!(volume(&prod_named)["Labels"]["io.convoy.env"], "prod");
    assert!(
        get(&dir, &prod.id, "/data/note").is_err(),
        "prod must not see default's data"
    );
}

/// `convoy volumes` lists the environment's volumes per node with the
/// containers using each; `convoy volumes rm KEY` is refused while one
/// uses it (the engine's reason, exit 1) and removes it once none does.
#[test]
fn convoy_volumes_lists_and_removes_an_environments_volumes() {
    skip_without_docker!();
    let mut volumes = RemoveVolumes(Vec::new());
    let mut c = Cluster::start();
    let node = c.add_agent();
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let svc = c.service_name("volcli");
    let key = c.service_name("cache");
    let named = format!("convoy-default-{key}");
    volumes.0.push(named.clone());
    let yaml = format!(
        "services:\n  {svc}:\n    image: {}\n    volumes: [\"{key}:/cache\"]\nvolumes:\n  {key}: {{}}\n",
        c.image()
    );
    let file = c.write_spec("volcli.yaml", &yaml);
    c.apply(&file);
    let ct = c.wait_service_running(&svc, 1, 1).remove(0);

    let listed: Value = c.cli_json(&["volumes"]);
    let ours: Vec<&Value> = listed["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"] == named.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{listed}");
    assert_eq!(ours[0]["node"], node.as_str());
    assert_eq!(ours[0]["key"], key.as_str());
    assert_eq!(ours[0]["env"], "default");
    assert_eq!(ours[0]["used_by"], serde_json::json!([ct.name()]));

    // In use: refused, with the engine's reason, and the volume stays.
    let out = c.cli(&["-o", "json", "volumes", "rm", &key]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let refused: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = refused["volumes"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("in use"), "{refused}");
    assert_eq!(volume(&named)["Name"], named.as_str());

    // Once the service is gone, removed.
    c.delete(&svc);
    c.wait_service_gone(&svc);
    let removed: Value = c.cli_json(&["volumes", "rm", &key]);
    assert_eq!(removed["volumes"][0]["name"], named.as_str(), "{removed}");
    assert!(removed["volumes"][0]["error"].is_null(), "{removed}");
    assert!(docker::docker(&["volume", "inspect", &named]).is_err());
}

/// `convoy delete SERVICE --volumes` removes, once its containers are gone,
/// the named volumes that only it mounts; one another service of the
/// environment mounts stays.
#[test]
fn delete_with_volumes_removes_the_volumes_only_that_service_uses() {
    skip_without_docker!();
    let mut volumes = RemoveVolumes(Vec::new());
    let mut c = Cluster::start();
    let node = c.add_agent();
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let a = c.service_name("vola");
    let b = c.service_name("volb");
    let own = c.service_name("own");
    let shared = c.service_name("shared");
    let own_name = format!("convoy-default-{own}");
    let shared_name = format!("convoy-default-{shared}");
    volumes.0.extend([own_name.clone(), shared_name.clone()]);
    let image = c.image();
    let yaml = format!(
        "services:\n  {a}:\n    image: {image}\n    volumes: [\"{own}:/own\", \"{shared}:/shared\"]\n  \
         {b}:\n    image: {image}\n    volumes: [\"{shared}:/shared\"]\n\
         volumes:\n  {own}: {{}}\n  {shared}: {{}}\n"
    );
    let file = c.write_spec("del.yaml", &yaml);
    c.apply(&file);
    c.wait_service_running(&a, 1, 1);
    c.wait_service_running(&b, 1, 1);
    assert_eq!(volume(&own_name)["Name"], own_name.as_str());

    let out = c.cli(&["delete", &a, "--volumes"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_service_gone(&a);
    assert!(
        docker::docker(&["volume", "inspect", &own_name]).is_err(),
        "{own_name} is only {a}'s: removed"
    );
    assert_eq!(
        volume(&shared_name)["Name"],
        shared_name.as_str(),
        "{b} still mounts {shared_name}"
    );
}
