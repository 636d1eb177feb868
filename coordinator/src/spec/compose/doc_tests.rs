//! docs/COMPOSE.md against the parser: each key set of `keys` has a table
//! there, under a `### ` heading naming its mapping, with one row per key
//! (``| `key` | status | why |``), and the status each row gives is the
//! one the parser gives the key: `supported` for SUPPORTED, `warned` for
//! IGNORED, `refused` for REFUSED and CHECKED (refused for the values that
//! give a container the host) and for keys the parser does not know,
//! `ignored` for `x-*` only. A key added to a set, moved between them, or a
//! row written for a key the parser does not treat so, fails here; a row
//! marked refused is also parsed, and must be refused.

use std::collections::BTreeMap;

use super::UNSUPPORTED;

use super::keys::{
    ConvoyKey, ConvoyUpdateKey, DependsOnKey, DeployKey, DeviceKey, HealthcheckKey, HttpProbeKey,
    KeySet, LimitsKey, LoggingKey, NetworkKey, PlacementKey, PortKey, PreDeployKey, PreferenceKey,
    ProbeKey, ReservationsKey, ResourcesKey, RestartPolicyKey, ServiceKey, ServiceNetworkKey,
    TcpProbeKey, TopConvoyKey, TopKey, UnitKey, UpdateConfigKey,
};

use super::keys::{BindKey, MountTmpfsKey, MountVolumeKey, ServiceVolumeKey, VolumeKey};
use super::keys::{ConfigKey, ServiceMountKey};
use super::keys::{IngressKey, IngressRouteKey, IngressTlsKey};
use super::keys::{SecretConvoyKey, SecretGenerateKey, SecretKey, UnitSecretKey};

const DOC: &str = include_str!("../../../../docs/COMPOSE.md");

/// A minimal valid spec; the templates below put `@@` where a key goes.
const SERVICE: &str = "services:\n  web:\n    image: nginx\n";

/// One mapping: its heading in the doc, its key set, and a spec to try a key in.
struct Mapping {
    heading: &'static str,
    supported: &'static [&'static str],
    ignored: &'static [&'static str],
    refused: &'static [(&'static str, &'static str)],
    checked: &'static [&'static str],
    template: String,
}

fn mapping<K: KeySet>(heading: &'static str, template: String) -> Mapping {
    Mapping {
        heading,
        supported: K::SUPPORTED,
        ignored: K::IGNORED,
        refused: K::REFUSED,
        checked: K::CHECKED,
        template,
    }
}

fn mappings() -> Vec<Mapping> {
    let service = |rest: &str| format!("{SERVICE}{rest}");
    vec![
        mapping::<TopKey>("top level", service("@@\n")),
        mapping::<TopConvoyKey>("x-convoy", format!("x-convoy:\n  @@\n{SERVICE}")),
        mapping::<ServiceKey>("services.<name>", service("    @@\n")),
        mapping::<LoggingKey>("services.<name>.logging", service("    logging:\n      @@\n")),
        mapping::<DeployKey>("services.<name>.deploy", service("    deploy:\n      @@\n")),
        mapping::<PlacementKey>(
            "services.<name>.deploy.placement",
            service("    deploy:\n      placement:\n        @@\n"),
        ),
        mapping::<PreferenceKey>(
            "services.<name>.deploy.placement.preferences[]",
            service(
                "    deploy:\n      placement:\n        preferences:\n          - spread: node.labels.zone\n            @@\n",
            ),
        ),
        mapping::<ResourcesKey>(
            "services.<name>.deploy.resources",
            service("    deploy:\n      resources:\n        @@\n"),
        ),
        mapping::<LimitsKey>(
            "services.<name>.deploy.resources.limits",
            service("    deploy:\n      resources:\n        limits:\n          @@\n"),
        ),
        mapping::<ReservationsKey>(
            "services.<name>.deploy.resources.reservations",
            service("    deploy:\n      resources:\n        reservations:\n          @@\n"),
        ),
        mapping::<DeviceKey>(
            "services.<name>.deploy.resources.reservations.devices[]",
            service(
                "    deploy:\n      resources:\n        reservations:\n          devices:\n            - capabilities: [gpu]\n              @@\n",
            ),
        ),
        mapping::<RestartPolicyKey>(
            "services.<name>.deploy.restart_policy",
            service("    deploy:\n      restart_policy:\n        @@\n"),
        ),
        mapping::<UpdateConfigKey>(
            "services.<name>.deploy.update_config",
            service("    deploy:\n      update_config:\n        @@\n"),
        ),
        mapping::<UpdateConfigKey>(
            "services.<name>.deploy.rollback_config",
            service("    deploy:\n      rollback_config:\n        @@\n"),
        ),
        mapping::<DependsOnKey>(
            "services.<name>.depends_on.<service>",
            service("    depends_on:\n      db:\n        @@\n  db:\n    image: redis\n"),
        ),
        mapping::<HealthcheckKey>(
            "services.<name>.healthcheck",
            service("    healthcheck:\n      test: [\"CMD\", \"true\"]\n      @@\n"),
        ),
        mapping::<PortKey>(
            "services.<name>.ports[]",
            service("    ports:\n      - target: 80\n        @@\n"),
        ),
        mapping::<ConvoyKey>("services.<name>.x-convoy", service("    x-convoy:\n      @@\n")),
        mapping::<ConvoyUpdateKey>(
            "services.<name>.x-convoy.update",
            service("    x-convoy:\n      update:\n        @@\n"),
        ),
        mapping::<PreDeployKey>(
            "services.<name>.x-convoy.pre_deploy",
            service("    x-convoy:\n      pre_deploy:\n        command: [/app]\n        @@\n"),
        ),
        mapping::<IngressKey>(
            "services.<name>.x-convoy.ingress",
            service("    x-convoy:\n      ingress:\n        routes: [{port: 80}]\n        @@\n"),
        ),
        mapping::<IngressRouteKey>(
            "services.<name>.x-convoy.ingress.routes[]",
            service("    x-convoy:\n      ingress:\n        routes:\n          - port: 80\n            @@\n"),
        ),
        mapping::<IngressTlsKey>(
            "services.<name>.x-convoy.ingress.tls[]",
            service("    x-convoy:\n      ingress:\n        routes: [{port: 80}]\n        tls:\n          - hosts: [a.example.com]\n            certificate: s\n            @@\nsecrets:\n  s:\n    external: true\n"),
        ),
        mapping::<ProbeKey>(
            "services.<name>.x-convoy.probes[]",
            service("    x-convoy:\n      probes:\n        - tcp: {port: 80}\n          @@\n"),
        ),
        mapping::<HttpProbeKey>(
            "services.<name>.x-convoy.probes[].http",
            service("    x-convoy:\n      probes:\n        - http:\n            port: 80\n            @@\n"),
        ),
        mapping::<TcpProbeKey>(
            "services.<name>.x-convoy.probes[].tcp",
            service("    x-convoy:\n      probes:\n        - tcp:\n            port: 80\n            @@\n"),
        ),
        mapping::<NetworkKey>("networks.<name>", service("networks:\n  n:\n    @@\n")),
        mapping::<ServiceNetworkKey>(
            "services.<name>.networks.<network>",
            service("    networks:\n      n:\n        @@\nnetworks:\n  n:\n"),
        ),
        mapping::<VolumeKey>("volumes.<name>", service("volumes:\n  v:\n    @@\n")),
        mapping::<ServiceVolumeKey>(
            "services.<name>.volumes[]",
            service("    volumes:\n      - type: volume\n        target: /t\n        @@\n"),
        ),
        mapping::<BindKey>(
            "services.<name>.volumes[].bind",
            "services:\n  web:\n    image: nginx\n    volumes:\n      - type: bind\n        source: /s\n        target: /t\n        bind:\n          @@\n".to_owned(),
        ),
        mapping::<MountVolumeKey>(
            "services.<name>.volumes[].volume",
            service("    volumes:\n      - type: volume\n        target: /t\n        volume:\n          @@\n"),
        ),
        mapping::<MountTmpfsKey>(
            "services.<name>.volumes[].tmpfs",
            service("    volumes:\n      - type: tmpfs\n        target: /t\n        tmpfs:\n          @@\n"),
        ),
        mapping::<ConfigKey>(
            "configs.<name>",
            service("configs:\n  c:\n    content: x\n    @@\n"),
        ),
        mapping::<ServiceMountKey>(
            "services.<name>.configs[]",
            service("    configs:\n      - source: c\n        @@\nconfigs:\n  c:\n    content: x\n"),
        ),
        mapping::<SecretKey>(
            "secrets.<name>",
            service("secrets:\n  s:\n    external: true\n    @@\n"),
        ),
        mapping::<SecretConvoyKey>(
            "secrets.<name>.x-convoy",
            service("secrets:\n  s:\n    external: true\n    x-convoy:\n      @@\n"),
        ),
        mapping::<SecretGenerateKey>(
            "secrets.<name>.x-convoy.generate",
            service("secrets:\n  s:\n    x-convoy:\n      generate:\n        @@\n"),
        ),
        mapping::<ServiceMountKey>(
            "services.<name>.secrets[]",
            service("    secrets:\n      - source: s\n        @@\nsecrets:\n  s:\n    external: true\n"),
        ),
        mapping::<UnitKey>(
            "units.<name>",
            "units:\n  u:\n    exec_start: /bin/true\n    @@\n".to_owned(),
        ),
        mapping::<UnitSecretKey>(
            "units.<name>.secrets[]",
            "units:\n  u:\n    exec_start: /bin/true\n    secrets:\n      - source: s\n        @@\nsecrets:\n  s:\n    external: true\n".to_owned(),
        ),
    ]
}

/// A row of a table: its key, its status, and its line in the doc.
struct Row {
    key: String,
    status: String,
    line: usize,
}

/// The key tables of `doc` by heading (backticks dropped), and what is
/// malformed: a key row under no heading, a repeated key, a row without a
/// status.
fn tables(doc: &str) -> (BTreeMap<String, Vec<Row>>, Vec<String>) {
    let mut tables: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut heading: Option<String> = None;
    for (index, text) in doc.lines().enumerate() {
        let line = index + 1;
        let text = text.trim();
        if text.starts_with('#') {
            // Only a `### ` heading opens a key table; any other ends it.
            heading = text
                .strip_prefix("### ")
                .map(|h| h.replace('`', "").trim().to_owned());
            continue;
        }
        // A key row: ``| `key` | status | why |``.
        let Some(rest) = text.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = rest.splitn(3, '|').map(str::trim).collect();
        let (Some(key), Some(status)) = (cells.first(), cells.get(1)) else {
            problems.push(format!(
                "docs/COMPOSE.md:{line}: a key row without a status"
            ));
            continue;
        };
        let key = key.trim_end_matches('`').to_owned();
        let Some(heading) = &heading else {
            problems.push(format!(
                "docs/COMPOSE.md:{line}: the row of `{key}` is under no `### ` heading"
            ));
            continue;
        };
        let rows = tables.entry(heading.clone()).or_default();
        if rows.iter().any(|row| row.key == key) {
            problems.push(format!(
                "docs/COMPOSE.md:{line}: `{key}` has two rows under `{heading}`"
            ));
        }
        rows.push(Row {
            key,
            status: status.to_string(),
            line,
        });
    }
    (tables, problems)
}

/// Values tried for a checked key (read to refuse the values that give a
/// container the host: `privileged: true`, `pid: host`, `cap_add: [x]`).
const HOST_ACCESS_VALUES: &[&str] = &["true", "host", "[x]"];

/// Parses `template` with `key: value` in its place.
fn parse_with_key(template: &str, key: &str, value: &str) -> Result<crate::spec::SpecFile, String> {
    let spec = template.replace("@@", &format!("{key}: {value}"));
    crate::spec::parse("compose.yaml", &spec).map_err(|err| err.to_string())
}

/// Every way `doc` disagrees with the parser, one line each.
fn check(doc: &str) -> Vec<String> {
    let (mut tables, mut problems) = tables(doc);
    for mapping in mappings() {
        let heading = mapping.heading;
        // The template holds a valid spec: an error below is the key's.
        match parse_with_key(&mapping.template, "x-docs-check", "x") {
            Ok(file) if !file.warnings.iter().any(|w| w.contains("x-docs-check")) => {}
            Ok(file) => problems.push(format!(
                "{heading}: the test's spec warns: {:?}",
                file.warnings
            )),
            Err(err) => problems.push(format!("{heading}: the test's spec is refused: {err}")),
        }
        let Some(rows) = tables.remove(heading) else {
            problems.push(format!(
                "docs/COMPOSE.md has no table under `### {heading}`"
            ));
            continue;
        };
        let status_of = |key: &str| {
            rows.iter()
                .find(|row| row.key == key)
                .map(|row| row.status.as_str())
        };
        let expected = mapping
            .supported
            .iter()
            .map(|key| (*key, "supported"))
            .chain(mapping.ignored.iter().map(|key| (*key, "warned")))
            .chain(mapping.refused.iter().map(|(key, _)| (*key, "refused")))
            .chain(mapping.checked.iter().map(|key| (*key, "refused")));
        for (key, want) in expected {
            match status_of(key) {
                Some(status) if status == want => {}
                Some(status) => problems.push(format!(
                    "{heading}: `{key}` is {want} in the parser, {status} in docs/COMPOSE.md"
                )),
                None => problems.push(format!(
                    "{heading}: `{key}` is {want} in the parser and has no row in docs/COMPOSE.md"
                )),
            }
        }
        for row in &rows {
            let (key, line) = (row.key.as_str(), row.line);
            let at = format!("docs/COMPOSE.md:{line}: {heading}: `{key}`");
            let listed = mapping.supported.contains(&key)
                || mapping.ignored.contains(&key)
                || mapping.refused.iter().any(|(k, _)| *k == key);
            match row.status.as_str() {
                "supported" if !mapping.supported.contains(&key) => problems.push(format!(
                    "{at} is marked supported; the parser does not read it"
                )),
                "warned" if !mapping.ignored.contains(&key) => problems.push(format!(
                    "{at} is marked warned; the parser does not ignore it"
                )),
                "warned" => match parse_with_key(&mapping.template, key, "x") {
                    Ok(file)
                        if file
                            .warnings
                            .iter()
                            .any(|w| w.contains(&format!("{key}: {UNSUPPORTED}"))) => {}
                    Ok(file) => problems.push(format!(
                        "{at} is marked warned, and parsing it warns {:?}",
                        file.warnings
                    )),
                    Err(err) => problems.push(format!(
                        "{at} is marked warned, and parsing it fails: {err}"
                    )),
                },
                "refused" if listed && !mapping.refused.iter().any(|(k, _)| *k == key) => problems
                    .push(format!(
                        "{at} is marked refused; the parser reads or warns it"
                    )),
                "refused" => {
                    // A refused key is refused whatever its value, with its
                    // reason; a checked one for the values that give the
                    // host (one of these at least), naming the key; an
                    // unknown one as an unknown field.
                    let (why, values) =
                        if let Some((_, why)) = mapping.refused.iter().find(|(k, _)| *k == key) {
                            (why.to_string(), &["x"][..])
                        } else if mapping.checked.contains(&key) {
                            (format!("remove `{key}`"), HOST_ACCESS_VALUES)
                        } else {
                            (format!("unknown field `{key}`"), &["x"][..])
                        };
                    let errors: Vec<String> = values
                        .iter()
                        .filter_map(|value| parse_with_key(&mapping.template, key, value).err())
                        .collect();
                    if errors.is_empty() {
                        problems.push(format!("{at} is marked refused, and the parser accepts it"));
                    } else if !errors.iter().any(|err| err.contains(&why)) {
                        problems.push(format!(
                            "{at} is marked refused, and no error says {why}: {errors:?}"
                        ));
                    }
                }
                // `x-*` rows: extension keys, skipped silently (the
                // template check above parses one).
                "ignored" if key == "x-*" => {}
                "ignored" => problems.push(format!(
                    "{at} is marked ignored; only `x-*` is skipped silently"
                )),
                "supported" => {}
                other => problems.push(format!(
                    "{at} has the status `{other}`: write supported, warned, refused or ignored"
                )),
            }
        }
    }
    for (heading, rows) in tables {
        let line = rows.first().map_or(0, |row| row.line);
        problems.push(format!(
            "docs/COMPOSE.md:{line}: `### {heading}` names no mapping this test knows"
        ));
    }
    problems
}

#[test]
fn docs_compose_md_gives_every_key_the_status_the_parser_gives_it() {
    let problems = check(DOC);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_docs_check_fails_on_a_missing_or_wrong_row() {
    let image_row = DOC
        .lines()
        .find(|line| line.starts_with("| `image` |"))
        .expect("docs/COMPOSE.md has a row for `image`");
    let without = DOC.replace(&format!("{image_row}\n"), "");
    assert!(
        check(&without)
            .iter()
            .any(|p| p.contains("`image` is supported in the parser and has no row")),
        "{:?}",
        check(&without)
    );
    let warned = DOC.replace("| `image` | supported |", "| `image` | warned |");
    assert!(check(&warned)
        .iter()
        .any(|p| p.contains("`image` is supported in the parser, warned")));
    // A refused row for a key the parser accepts (skips silently).
    let refused = DOC.replace(
        "| `working_dir` | supported |",
        "| `x-made-up` | refused | no |\n| `working_dir` | supported |",
    );
    assert!(check(&refused)
        .iter()
        .any(|p| p.contains("`x-made-up` is marked refused, and the parser accepts it")));
    // A table the test does not know.
    let unknown = DOC.replace("### `services.<name>.deploy.placement`", "### `placement`");
    assert!(check(&unknown)
        .iter()
        .any(|p| p.contains("`### placement` names no mapping")));
}
