//! Compose files as people write them: variables interpolated by the CLI
//! from the shell and `.env`, with what ran stored in the revision.

use convoy_tests::{docker, skip_without_docker, Cluster};

#[test]
fn variables_from_the_shell_and_dot_env_reach_the_container_and_the_revision() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("interp");
    // `.env` beside the spec; the shell's GREETING beats the file's.
    std::fs::write(
        c.root().join(".env"),
        format!("IMAGE={}\nGREETING=from-dot-env\nREPLICAS=2\n", c.image()),
    )
    .unwrap();
    // An env_file beside it; `environment` wins over it.
    std::fs::write(
        c.root().join("web.env"),
        "FROM_FILE=yes\nGREETING=from-env-file\n",
    )
    .unwrap();
    let spec = format!(
        "services:\n  {svc}:\n    image: \"${{IMAGE}}\"\n    env_file: web.env\n    environment:\n      GREETING: \"${{GREETING}}\"\n      WHO: ${{WHO:-nobody}}\n      PRICE: \"$$5\"\n    deploy:\n      replicas: ${{REPLICAS:-1}}\n"
    );
    let file = c.write_spec("interp.yaml", &spec);
    let out = c
        .cli_command()
        .env("GREETING", "from-shell")
        .env_remove("WHO")
        .args(["apply", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let containers = c.wait_service_running(&svc, 2, 1);
    for container in &containers {
        assert_eq!(
            container.env_var("GREETING"),
            Some("from-shell"),
            "{}",
            container.describe()
        );
        assert_eq!(container.env_var("WHO"), Some("nobody"));
        assert_eq!(container.env_var("PRICE"), Some("$5"));
        assert_eq!(container.env_var("FROM_FILE"), Some("yes"));
    }
    assert_eq!(docker::of_service(&svc).unwrap().len(), 2);
    // The stored revisions are the resolved spec: `diff` shows the values.
    let out = c
        .cli_command()
        .env("GREETING", "second")
        .args(["apply", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let containers = c.wait_service_running(&svc, 2, 2);
    assert!(containers
        .iter()
        .all(|c| c.env_var("GREETING") == Some("second")));
    let out = c.cli(&["diff", &svc, "1", "2"]);
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{diff}");
    assert!(diff.contains("-") && diff.contains("from-shell"), "{diff}");
    assert!(diff.contains("second"), "{diff}");
    assert!(!diff.contains("${"), "{diff}");

    // A required variable that is not set: one line naming file, line and
    // variable; nothing is sent.
    let bad = c.write_spec(
        "required.yaml",
        &format!(
            "services:\n  {svc}:\n    image: \"${{IMAGE}}\"\n    environment:\n      TOKEN: ${{CONVOY_E2E_UNSET:?ask the team for one}}\n"
        ),
    );
    let out = c
        .cli_command()
        .env_remove("CONVOY_E2E_UNSET")
        .args(["apply", "-f", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("required.yaml:5: required variable `CONVOY_E2E_UNSET` is not set: ask the team for one"),
        "{stderr}"
    );
    assert_eq!(c.service_status(&svc).revision, 2);
}

#[test]
fn a_service_with_profiles_deploys_only_when_one_is_enabled() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let web = c.service_name("prof-web");
    let tools = c.service_name("prof-tools");
    let image = c.image();
    let file = c.write_spec(
        "profiles.yaml",
        &format!(
            "services:\n  {web}:\n    image: {image}\n  {tools}:\n    image: {image}\n    profiles: [debug]\n"
        ),
    );
    let out = c.cli(&["apply", "-f", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "services.{tools}: skipped: its profiles (debug) are not enabled"
        )),
        "{stderr}"
    );
    c.wait_service_running(&web, 1, 1);
    assert!(docker::of_service(&tools).unwrap().is_empty());
    // COMPOSE_PROFILES, as Compose reads it, or --profile.
    let out = c
        .cli_command()
        .env("COMPOSE_PROFILES", "other,debug")
        .args(["apply", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_service_running(&tools, 1, 1);
    c.wait_service_running(&web, 1, 1);
}

#[test]
fn resource_limits_reach_docker() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("limits");
    let image = c.image();
    let file = c.write_spec(
        "limits.yaml",
        &format!(
            "services:\n  {svc}:\n    image: {image}\n    read_only: true\n    tmpfs: [\"/run:size=8m\"]\n    init: true\n    cap_drop: [NET_RAW]\n    sysctls: {{net.core.somaxconn: 1024}}\n    logging:\n      driver: json-file\n      options: {{max-size: 1m}}\n    shm_size: 32m\n    ulimits:\n      nofile: {{soft: 1024, hard: 2048}}\n    mem_reservation: 32m\n    deploy:\n      resources:\n        limits:\n          cpus: '0.5'\n          memory: 64M\n          pids: 64\n"
        ),
    );
    c.apply(&file);
    let containers = c.wait_service_running(&svc, 1, 1);
    let raw = docker::docker(&[
        "inspect",
        "--format",
        "{{json .HostConfig}}",
        &containers[0].id,
    ])
    .unwrap();
    let host: serde_json::Value = serde_json::from_str(raw.trim()).unwrap();
    assert_eq!(host["NanoCpus"], 500_000_000, "{host:#}");
    assert_eq!(host["Memory"], 64 << 20, "{host:#}");
    assert_eq!(host["MemoryReservation"], 32 << 20, "{host:#}");
    assert_eq!(host["PidsLimit"], 64, "{host:#}");
    assert_eq!(host["ShmSize"], 32 << 20, "{host:#}");
    assert_eq!(
        host["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}]),
        "{host:#}"
    );
    // The further container settings.
    assert_eq!(host["ReadonlyRootfs"], true, "{host:#}");
    assert_eq!(
        host["Tmpfs"],
        serde_json::json!({"/run": "size=8m"}),
        "{host:#}"
    );
    assert_eq!(host["Init"], true, "{host:#}");
    assert_eq!(host["CapDrop"], serde_json::json!(["NET_RAW"]), "{host:#}");
    assert_eq!(
        host["Sysctls"],
        serde_json::json!({"net.core.somaxconn": "1024"}),
        "{host:#}"
    );
    assert_eq!(host["LogConfig"]["Type"], "json-file", "{host:#}");
    assert_eq!(host["LogConfig"]["Config"]["max-size"], "1m", "{host:#}");
}

#[test]
fn override_files_merge_in_order() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("merged");
    let image = c.image();
    let base = c.write_spec(
        "compose.yaml",
        &format!(
            "services:\n  {svc}:\n    image: {image}\n    environment: [ROLE=base, KEEP=yes]\n"
        ),
    );
    let prod = c.write_spec(
        "compose.prod.yaml",
        &format!("services:\n  {svc}:\n    environment:\n      ROLE: prod\n    deploy:\n      replicas: 2\n"),
    );
    let out = c.cli(&[
        "apply",
        "-f",
        base.to_str().unwrap(),
        "-f",
        prod.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let containers = c.wait_service_running(&svc, 2, 1);
    for container in &containers {
        assert_eq!(
            container.env_var("ROLE"),
            Some("prod"),
            "{}",
            container.describe()
        );
        assert_eq!(container.env_var("KEEP"), Some("yes"));
    }
}

#[test]
fn pull_policy_never_fails_naming_the_policy_instead_of_pulling() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("never");
    let file = c.write_spec(
        "never.yaml",
        &format!(
            "services:\n  {svc}:\n    image: convoy-absent-{}:1\n    pull_policy: never\n",
            c.id
        ),
    );
    c.apply(&file);
    let reason = convoy_tests::wait::wait_until(
        "the instance fails naming the pull policy",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(200),
        || {
            let status = c.try_service_status(&svc)?;
            let instance = status
                .instances
                .first()
                .ok_or_else(|| anyhow::anyhow!("no instance"))?;
            if instance.reason.contains("pull_policy: never") {
                Ok(instance.reason.clone())
            } else {
                anyhow::bail!("{}", status.describe())
            }
        },
    );
    assert!(
        reason.starts_with(&format!(
            "image `convoy-absent-{}:1` not found on node",
            c.id
        )),
        "{reason}"
    );
    assert!(docker::of_service(&svc).unwrap().is_empty());
}
