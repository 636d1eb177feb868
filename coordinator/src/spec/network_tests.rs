//! Networks on a node (issue 14): top-level and per-service `networks:`,
//! `hostname`, `extra_hosts`, `dns` and `expose`, read from spec files and
//! carried to the agent.

use std::collections::BTreeMap;

use super::{changed_fields, parse, NetworkAttachment, ServiceSpec, SpecFile};

fn ok(content: &str) -> SpecFile {
    parse("app.yaml", content).unwrap_or_else(|e| panic!("{e}"))
}

/// One service `web` with `image: nginx` and `extra`, indented 4 spaces,
/// then `top` at the top level.
fn web_with(extra: &str, top: &str) -> String {
    let mut yaml = String::from("services:\n  web:\n    image: nginx\n");
    for line in extra.lines() {
        yaml += &format!("    {line}\n");
    }
    yaml + top
}

fn web(extra: &str) -> ServiceSpec {
    let file = ok(&web_with(extra, ""));
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    file.services["web"].clone()
}

fn error(content: &str) -> String {
    match parse("app.yaml", content) {
        Ok(file) => panic!("parsed, expected an error: {:?}", file.services),
        Err(e) => e.to_string(),
    }
}

fn attachment(name: &str, aliases: &[&str]) -> NetworkAttachment {
    NetworkAttachment {
        name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..NetworkAttachment::default()
    }
}

#[test]
fn a_service_without_networks_has_none_and_joins_the_default_one_on_the_node() {
    let spec = web("");
    assert!(spec.networks.is_empty());
    assert!(spec.container_spec().networks.is_empty());
}

#[test]
fn service_networks_as_a_list_resolve_against_the_top_level_ones() {
    let file = ok(&web_with(
        "networks: [front, back, default]",
        "networks:\n  front:\n  back:\n    internal: true\n    labels:\n      tier: back\n",
    ));
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    let back = NetworkAttachment {
        internal: true,
        labels: BTreeMap::from([("tier".into(), "back".into())]),
        ..attachment("back", &[])
    };
    assert_eq!(
        file.services["web"].networks,
        vec![attachment("front", &[]), back, attachment("default", &[])]
    );
}

#[test]
fn service_networks_as_a_mapping_carry_aliases_and_warn_about_addresses() {
    let file = ok(&web_with(
        "networks:\n  back:\n    aliases: [database, db.internal]\n    ipv4_address: 172.16.0.5\n  front:\n",
        "networks:\n  back: {}\n  front: {}\n",
    ));
    assert_eq!(
        file.services["web"].networks,
        vec![
            attachment("back", &["database", "db.internal"]),
            attachment("front", &[])
        ]
    );
    assert_eq!(file.warnings.len(), 1, "{:?}", file.warnings);
    assert!(
        file.warnings[0]
            .starts_with("app.yaml:7: services.web.networks.back.ipv4_address: not supported"),
        "{:?}",
        file.warnings
    );
}

#[test]
fn an_external_network_is_used_by_its_name() {
    let file = ok(&web_with(
        "networks: [proxy, legacy]",
        "networks:\n  proxy:\n    external: true\n    name: shared-proxy\n  legacy:\n    external: true\n    internal: true\n",
    ));
    let networks = &file.services["web"].networks;
    assert_eq!(networks[0].name, "shared-proxy");
    assert!(networks[0].external);
    assert_eq!(networks[1].name, "legacy");
    assert!(networks[1].external && !networks[1].internal);
    assert_eq!(file.warnings.len(), 1, "{:?}", file.warnings);
    assert!(
        file.warnings[0].contains("networks.legacy.internal: ignored for an external network"),
        "{:?}",
        file.warnings
    );
    let wire = file.services["web"].container_spec();
    assert_eq!(wire.networks[0].name, "shared-proxy");
    assert!(wire.networks[0].external);
}

#[test]
fn the_hosts_network_is_refused_as_host_access() {
    for top in [
        "networks:\n  host:\n    external: true\n",
        "networks:\n  net:\n    external: true\n    name: host\n",
    ] {
        let key = if top.contains("name: host") {
            "net"
        } else {
            "host"
        };
        let err = error(&web_with(&format!("networks: [{key}]"), top));
        assert!(err.contains(&format!("networks.{key}")), "{err}");
        assert!(
            err.contains("the external network `host` gives the container the host's network"),
            "{err}"
        );
    }
}

#[test]
fn a_name_for_a_network_convoy_creates_is_ignored_with_a_warning() {
    let file = ok(&web_with(
        "networks: [back]",
        "networks:\n  back:\n    name: my-back\n    driver: bridge\n    driver_opts:\n      a: b\n",
    ));
    assert_eq!(file.services["web"].networks, vec![attachment("back", &[])]);
    let all = file.warnings.join("\n");
    assert!(
        all.contains("app.yaml:7: networks.back.name: ignored: Convoy names"),
        "{all}"
    );
    assert!(
        all.contains("app.yaml:9: networks.back.driver_opts: not supported"),
        "{all}"
    );
}

#[test]
fn an_undeclared_network_is_an_error_naming_the_service_and_line() {
    let err = error(&web_with("networks: [back]", "networks:\n  front:\n"));
    assert!(err.starts_with("app.yaml:4"), "{err}");
    assert!(err.contains("services.web.networks"), "{err}");
    assert!(err.contains("network `back` is not declared"), "{err}");
    // Without any top-level `networks:` too.
    let err = error(&web_with("networks:\n  back:\n", ""));
    assert!(err.contains("network `back` is not declared"), "{err}");
}

#[test]
fn other_network_drivers_are_refused_naming_the_line() {
    let err = error(&web_with(
        "networks: [mesh]",
        "networks:\n  mesh:\n    driver: overlay\n",
    ));
    assert!(err.starts_with("app.yaml:7"), "{err}");
    assert!(err.contains("networks.mesh.driver"), "{err}");
    assert!(
        err.contains("network driver `overlay` is not supported"),
        "{err}"
    );
}

#[test]
fn bad_network_names_aliases_and_keys_are_refused() {
    let err = error(&web_with(
        "networks: ['bad name']",
        "networks:\n  default:\n",
    ));
    assert!(err.contains("invalid network name `bad name`"), "{err}");
    let err = error(&web_with(
        "networks:\n  back:\n    aliases: ['-db']\n",
        "networks:\n  back:\n",
    ));
    assert!(err.starts_with("app.yaml:6"), "{err}");
    assert!(err.contains("invalid host name `-db`"), "{err}");
    let err = error(&web_with("networks: [a, a]", "networks:\n  a:\n"));
    assert!(err.contains("duplicate network `a`"), "{err}");
    let err = error(&web_with(
        "networks: [a]",
        "networks:\n  a:\n    externall: true\n",
    ));
    assert!(err.contains("externall"), "{err}");
    let err = error(&web_with(
        "networks: [a]",
        "networks:\n  a:\n    internal: maybe\n",
    ));
    assert!(err.contains("`maybe` is not `true` or `false`"), "{err}");
}

#[test]
fn hostname_is_read_and_checked() {
    assert_eq!(web("hostname: api-1.internal").hostname, "api-1.internal");
    let err = error(&web_with("hostname: 'api_1!'", ""));
    assert!(err.starts_with("app.yaml:4"), "{err}");
    assert!(err.contains("services.web.hostname"), "{err}");
    assert!(err.contains("invalid host name"), "{err}");
}

#[test]
fn extra_hosts_are_read_as_a_list_or_a_mapping() {
    let spec = web("extra_hosts:\n  - 'db.local:10.0.0.5'\n  - 'v6=::1'\n  - 'gw:host-gateway'\n");
    assert_eq!(
        spec.extra_hosts,
        vec!["db.local:10.0.0.5", "v6:::1", "gw:host-gateway"]
    );
    let spec = web("extra_hosts:\n  db.local: 10.0.0.5\n  v6: '[fe80::1]'\n");
    assert_eq!(spec.extra_hosts, vec!["db.local:10.0.0.5", "v6:fe80::1"]);
    assert_eq!(spec.container_spec().extra_hosts, spec.extra_hosts);

    let err = error(&web_with("extra_hosts:\n  - 'db.local:nowhere'\n", ""));
    assert!(err.starts_with("app.yaml:5"), "{err}");
    assert!(err.contains("services.web.extra_hosts"), "{err}");
    assert!(err.contains("`nowhere` is not an IP address"), "{err}");
    let err = error(&web_with("extra_hosts: ['db.local']", ""));
    assert!(err.contains("`db.local` is not `HOST:IP`"), "{err}");
}

#[test]
fn dns_is_one_address_or_a_list() {
    assert_eq!(web("dns: 10.0.0.53").dns, vec!["10.0.0.53"]);
    assert_eq!(
        web("dns: [10.0.0.53, '2001:db8::1']").dns,
        vec!["10.0.0.53", "2001:db8::1"]
    );
    let err = error(&web_with("dns: [10.0.0.53, resolver]", ""));
    assert!(err.starts_with("app.yaml:4"), "{err}");
    assert!(err.contains("services.web.dns"), "{err}");
    assert!(err.contains("`resolver` is not an IP address"), "{err}");
}

#[test]
fn expose_takes_ports_protocols_and_ranges_once_each() {
    let spec = web("expose: [9000, '53/udp', '7000-7002', 9000]");
    assert_eq!(
        spec.expose,
        vec!["9000/tcp", "53/udp", "7000/tcp", "7001/tcp", "7002/tcp"]
    );
    assert_eq!(spec.container_spec().expose, spec.expose);
    for (bad, why) in [
        ("'0'", "is not a port"),
        ("'80/sctp'", "protocol `sctp`"),
        ("'90-80'", "ends before it starts"),
        ("'1-65535'", "names more than 1024 ports"),
        (
            "'1-1000', '2000-2100'",
            "`expose` names more than 1024 ports with `2000-2100`",
        ),
    ] {
        let err = error(&web_with(&format!("expose: [{bad}]"), ""));
        assert!(err.starts_with("app.yaml:4"), "{err}");
        assert!(err.contains("services.web.expose"), "{err}");
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn network_keys_change_the_hash_and_name_themselves_in_diffs() {
    let base = web("");
    for (extra, field) in [
        ("networks: [default]", "networks"),
        ("hostname: h", "hostname"),
        ("extra_hosts: ['a:10.0.0.1']", "extra_hosts"),
        ("dns: 10.0.0.1", "dns"),
        ("expose: [80]", "expose"),
    ] {
        let changed = web(extra);
        assert_ne!(base.spec_hash(), changed.spec_hash(), "{extra}");
        assert_eq!(changed_fields(&base, &changed), vec![field], "{extra}");
    }
}

#[test]
fn services_without_network_keys_keep_their_stored_form_and_hash() {
    let spec = web("");
    let json = serde_json::to_string(&spec).unwrap();
    for key in ["networks", "hostname", "extra_hosts", "dns", "expose"] {
        assert!(!json.contains(&format!("\"{key}\"")), "{key} in {json}");
    }
}
