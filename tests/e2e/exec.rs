//! Issue 19: `convoy exec` and `convoy run` on real Docker: output and exit
//! codes passed through, standard input with `-i`, a terminal with `-t`;
//! a one-off container from the service's spec (its secret included) that
//! is gone once it exited, and leaves the service's instances alone.

use std::process::Output;

use convoy_tests::{docker, skip_without_docker, Cluster};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// `convoy ARGS` with `input` on its standard input.
fn with_stdin(c: &Cluster, args: &[&str], input: &str) -> Output {
    c.cli_with_input(args, input.as_bytes())
}

#[test]
fn exec_passes_output_input_terminal_and_exit_codes_through() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    c.wait_nodes_ready(&c.node_names());
    let svc = c.service_name("box");
    let spec = format!(
        "services:\n  {svc}:\n    image: {}\n    command: [\"/convoy-testapp\", \"--listen\", \"0.0.0.0:8080\"]\n",
        c.image()
    );
    c.apply(&c.write_spec("box.yaml", &spec));
    c.wait_service_running(&svc, 1, 1);
    let instance = format!("{svc}-1");

    // Output and exit code 0.
    let out = c.cli(&["exec", &instance, "--", "/convoy-testapp", "--version"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("convoy-testapp "), "{out:?}");
    assert!(!text(&out.stdout).contains('\r'), "no terminal without -t");

    // A failing command's stderr and exit code (1), without `--`.
    let out = c.cli(&["exec", &svc, "/convoy-testapp", "--cat", "/nope"]);
    assert_eq!(code(&out), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("/nope"), "{out:?}");

    // Another exit code: 3, from --exit-after.
    let out = c.cli(&[
        "exec",
        &instance,
        "--",
        "/convoy-testapp",
        "--listen",
        "127.0.0.1:9999",
        "--exit-after",
        "0",
    ]);
    assert_eq!(code(&out), Some(3), "{out:?}");

    // -i: standard input reaches the command, EOF ends it.
    let out = with_stdin(
        &c,
        &[
            "exec",
            "-i",
            &instance,
            "--",
            "/convoy-testapp",
            "--cat",
            "/dev/stdin",
        ],
        "piped hello\nsecond line\n",
    );
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "piped hello\nsecond line\n");

    // -t: the command writes to a terminal (its line ends become \r\n).
    let out = c.cli(&[
        "exec",
        "-t",
        &instance,
        "--",
        "/convoy-testapp",
        "--version",
    ]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert!(text(&out.stdout).ends_with("\r\n"), "{out:?}");

    // Errors name what is wrong.
    let out = c.cli(&["exec", "nosuch-1", "--", "/convoy-testapp", "--version"]);
    assert_ne!(code(&out), Some(0));
    assert!(
        text(&out.stderr).contains("no service, instance or unit `nosuch-1`"),
        "{out:?}"
    );
    // Audited with the command line.
    let audit = text(&c.cli(&["audit"]).stdout);
    assert!(
        audit.contains("exec") && audit.contains("--cat /nope"),
        "{audit}"
    );
    c.delete(&svc);
    c.wait_service_gone(&svc);
}

#[test]
fn run_starts_a_one_off_container_from_the_services_spec_and_removes_it() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    c.wait_nodes_ready(&c.node_names());
    let svc = c.service_name("app");
    std::fs::write(c.root().join("db.txt"), "s3cret-for-run\n").unwrap();
    let spec = format!(
        "services:\n  {svc}:\n    image: {}\n    command: [\"/convoy-testapp\", \"--listen\", \"0.0.0.0:8080\"]\n    environment:\n      GREETING: from-the-spec\n    secrets:\n      - source: db\n        target: db\nsecrets:\n  db:\n    file: ./db.txt\n",
        c.image()
    );
    c.apply(&c.write_spec("app.yaml", &spec));
    let before = c.wait_service_running(&svc, 1, 1);

    // The one-off has the service's secret (and so its spec) ...
    let out = c.cli(&[
        "run",
        &svc,
        "--",
        "/convoy-testapp",
        "--cat",
        "/run/secrets/db",
    ]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "s3cret-for-run\n");
    // ... a failing one's exit code comes back ...
    let out = c.cli(&["run", &svc, "--", "/convoy-testapp", "--cat", "/missing"]);
    assert_eq!(code(&out), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("/missing"), "{out:?}");
    // ... with input too.
    let out = with_stdin(
        &c,
        &[
            "run",
            "-i",
            &svc,
            "--",
            "/convoy-testapp",
            "--cat",
            "/dev/stdin",
        ],
        "migrate up\n",
    );
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "migrate up\n");

    // No one-off is left, and the service's instance is the same one.
    let left = docker::docker(&["ps", "-aq", "--filter", "label=io.convoy.run"]).unwrap();
    assert!(left.trim().is_empty(), "one-off containers left: {left}");
    let after = c.wait_service_running(&svc, 1, 1);
    assert_eq!(before[0].id, after[0].id, "the instance was not touched");

    // `run` takes a service, not an instance.
    let out = c.cli(&[
        "run",
        &format!("{svc}-1"),
        "--",
        "/convoy-testapp",
        "--version",
    ]);
    assert_ne!(code(&out), Some(0));
    assert!(text(&out.stderr).contains("takes a service"), "{out:?}");
    c.delete(&svc);
    c.wait_service_gone(&svc);
}

/// `x-convoy.pre_deploy`: a failing hook (a migration that exits 1) stops
/// the apply with its output, and nothing is stored or started; a passing
/// one runs from the NEW spec (its new variable) before the rollout.
#[test]
fn a_failing_pre_deploy_hook_stops_the_apply_and_stores_nothing() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    c.wait_nodes_ready(&c.node_names());
    let svc = c.service_name("migr");
    let spec = |greeting: &str, hook: &[&str]| {
        let hook: Vec<String> = hook.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "services:\n  {svc}:\n    image: {}\n    command: [\"/convoy-testapp\", \"--listen\", \"0.0.0.0:8080\"]\n    environment:\n      GREETING: {greeting}\n    x-convoy:\n      pre_deploy:\n        command: [{}]\n        timeout: 1m\n",
            c.image(),
            hook.join(", ")
        )
    };
    // First deploy: the hook passes.
    let ok = c.write_spec("ok.yaml", &spec("one", &["/convoy-testapp", "--version"]));
    c.apply(&ok);
    let first = c.wait_service_running(&svc, 1, 1);

    // A new revision whose migration fails: the apply fails with the
    // hook's output, revision 1 stays, its container is the same, no
    // one-off is left.
    let bad = c.write_spec(
        "bad.yaml",
        &spec(
            "two",
            &["/convoy-testapp", "--cat", "/migrations/missing.sql"],
        ),
    );
    let out = c.cli(&["apply", "-f", bad.to_str().unwrap()]);
    assert_ne!(code(&out), Some(0), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("pre-deploy hook"), "{err}");
    assert!(err.contains("exited with code 1"), "{err}");
    assert!(
        err.contains("/migrations/missing.sql"),
        "the hook's output: {err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    let status = c.service_status(&svc);
    assert_eq!(status.revision, 1, "{}", status.describe());
    let history = text(&c.cli(&["history", &svc]).stdout);
    assert!(!history.contains(" 2 "), "no revision 2: {history}");
    let now = c.wait_service_running(&svc, 1, 1);
    assert_eq!(
        first[0].id, now[0].id,
        "the running instance was not touched"
    );
    let left = docker::docker(&["ps", "-aq", "--filter", "label=io.convoy.run"]).unwrap();
    assert!(left.trim().is_empty(), "one-off containers left: {left}");

    // The hook runs the NEW spec: a secret only revision 2 mounts is
    // there for it (the old spec would have no such file).
    std::fs::write(c.root().join("mig.txt"), "new-secret\n").unwrap();
    let good = format!(
        "{}    secrets:\n      - source: mig\n        target: mig\nsecrets:\n  mig:\n    file: ./mig.txt\n",
        spec("three", &["/convoy-testapp", "--cat", "/run/secrets/mig"])
    );
    let good = c.write_spec("good.yaml", &good);
    c.apply(&good);
    c.wait_service_running(&svc, 1, 2);
    c.delete(&svc);
    c.wait_service_gone(&svc);
}
