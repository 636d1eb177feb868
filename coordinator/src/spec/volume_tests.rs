//! Volumes (issue 14): the top-level `volumes:`, a service's `volumes` in
//! the short and long syntax, anonymous volumes, and what the agent gets.

use super::*;

fn ok(content: &str) -> SpecFile {
    parse("app.yaml", content).unwrap_or_else(|err| panic!("{err}"))
}

fn web(content: &str) -> ServiceSpec {
    ok(content).services.remove("web").expect("a service `web`")
}

fn error(content: &str) -> String {
    match parse("app.yaml", content) {
        Ok(file) => panic!("parsed, expected an error: {file:?}"),
        Err(err) => err.to_string(),
    }
}

const LONG: &str = "services:
  web:
    image: nginx
    volumes:
      - type: volume
        source: data
        target: /data
        read_only: true
        volume:
          nocopy: true
      - type: bind
        source: /srv/www/
        target: /www
        bind:
          propagation: rshared
          create_host_path: true
      - type: tmpfs
        target: /scratch
        tmpfs:
          size: 64m
          mode: 1777
      - type: volume
        target: /anon
        consistency: cached
      - /cache
volumes:
  data:
    driver: local
    driver_opts:
      type: tmpfs
      device: tmpfs
    labels:
      team: web
  unused: {}
";

#[test]
fn the_long_syntax_and_top_level_volumes_are_read() {
    let file = ok(LONG);
    assert_eq!(
        file.warnings,
        ["app.yaml:24: services.web.volumes[3].consistency: not supported by Convoy yet, ignored"]
    );
    let spec = &file.services["web"];
    assert_eq!(
        spec.mounts,
        [
            MountSpec {
                kind: MountKind::Volume,
                source: "data".into(),
                target: "/data".into(),
                read_only: true,
                volume_nocopy: true,
                ..MountSpec::default()
            },
            MountSpec {
                kind: MountKind::Bind,
                source: "/srv/www".into(),
                target: "/www".into(),
                bind_propagation: "rshared".into(),
                bind_create_host_path: true,
                ..MountSpec::default()
            },
            MountSpec {
                kind: MountKind::Tmpfs,
                target: "/scratch".into(),
                tmpfs_size_bytes: 64 << 20,
                tmpfs_mode: 0o1777,
                ..MountSpec::default()
            },
            MountSpec {
                kind: MountKind::Volume,
                target: "/anon".into(),
                ..MountSpec::default()
            },
            MountSpec {
                kind: MountKind::Volume,
                target: "/cache".into(),
                ..MountSpec::default()
            },
        ]
    );
    // Only what the service mounts.
    assert_eq!(
        spec.named_volumes,
        [VolumeDecl {
            key: "data".into(),
            driver: "local".into(),
            driver_opts: [("type", "tmpfs"), ("device", "tmpfs")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            labels: [("team".to_owned(), "web".to_owned())].into(),
            ..VolumeDecl::default()
        }]
    );
    let wire = spec.container_spec();
    assert!(wire.volumes.is_empty());
    assert_eq!(wire.mounts.len(), 5);
    assert_eq!(wire.mounts[1].r#type, "bind");
    assert_eq!(wire.mounts[2].tmpfs_size_bytes, 64 << 20);
    assert_eq!(wire.named_volumes[0].key, "data");
    assert_eq!(wire.named_volumes[0].driver_opts["device"], "tmpfs");
}

#[test]
fn short_syntax_options_are_honoured_or_refused() {
    let spec = web(
        "services:\n  web:\n    image: x\n    volumes:\n      - data:/d:ro,nocopy\n      - /srv:/s:rw,rslave\nvolumes:\n  data:\n",
    );
    assert!(spec.mounts[0].read_only && spec.mounts[0].volume_nocopy);
    assert_eq!(spec.mounts[1].bind_propagation, "rslave");
    assert!(spec.mounts[1].bind_create_host_path && !spec.mounts[1].read_only);
    let one = |v: &str| {
        error(&format!(
            "services:\n  web:\n    image: x\n    volumes: [\"{v}\"]\nvolumes:\n  data:\n"
        ))
    };
    assert!(one("/srv:/s:Z").contains("SELinux"), "{}", one("/srv:/s:Z"));
    assert!(one("/srv:/s:nocopy").contains("`nocopy` applies to volumes"));
    assert!(one("data:/d:ro,rw").contains("one mode"));
    assert!(one("data").contains("must be an absolute path"));
    assert!(one("da ta:/d").contains("is not a volume name"));
}

#[test]
fn an_undeclared_named_volume_is_an_error_naming_file_line_and_key() {
    assert_eq!(
        error(
            "services:\n  web:\n    image: x\n    volumes:\n      - /a:/a\n      - cache:/cache\n"
        ),
        "app.yaml:6:7: services.web.volumes[1]: volume `cache` is not declared: declare it under \
         top-level `volumes:` (`volumes: {cache: {}}`), as Compose requires"
    );
    let long = "services:\n  web:\n    image: x\n    volumes:\n      - type: volume\n        source: db\n        target: /d\n";
    assert!(
        error(long)
            .starts_with("app.yaml:5:7: services.web.volumes[0]: volume `db` is not declared"),
        "{}",
        error(long)
    );
}

#[test]
fn mount_types_convoy_cannot_mount_are_refused_saying_why() {
    let with = |body: &str| {
        error(&format!(
            "services:\n  web:\n    image: x\n    volumes:\n      - {body}\n"
        ))
    };
    assert!(with("{type: npipe, source: x, target: /t}").contains("Windows named pipe"));
    assert!(with("{type: cluster, source: x, target: /t}").contains("Swarm's CSI"));
    assert!(with("{type: image, source: x, target: /t}").contains("Docker Engine 28"));
    assert!(with("{type: volume, target: /t, volume: {subpath: a}}").contains("Docker Engine 26"));
    assert!(with("{type: bind, source: /s, target: /t, bind: {selinux: z}}").contains("SELinux"));
    assert!(with("{type: tmpfs, source: x, target: /t}").contains("has no `source`"));
    assert!(with("{type: bind, target: /t}").contains("missing field `source`"));
    assert!(with("{source: /s, target: /t}").contains("missing field `type`"));
    assert!(with("{type: bind, source: /s}").contains("missing field `target`"));
    assert!(with("{type: bind, source: ./s, target: /t}").contains("relative host paths"));
    assert!(with("{type: bind, source: /s/../etc, target: /t}").contains("`..`"));
    assert!(
        with("{type: volume, target: /t, bind: {propagation: shared}}")
            .contains("`bind` options apply to `type: bind` only")
    );
    assert!(with("{type: tmpfs, target: /t, tmpfs: {mode: 999}}").contains("not a file mode"));
}

#[test]
fn external_and_named_volumes_keep_their_names_and_drop_creation_settings() {
    let file = ok("services:\n  web:\n    image: x\n    volumes: [\"old:/old\", \"shared:/s\"]\nvolumes:\n  old:\n    external: true\n    name: cache\n    driver: local\n  shared:\n    name: team-shared\n");
    assert_eq!(
        file.warnings,
        ["app.yaml:9: volumes.old.driver: ignored for an external volume: Convoy neither creates nor changes it"]
    );
    let spec = &file.services["web"];
    assert_eq!(
        spec.named_volumes,
        [
            VolumeDecl {
                key: "old".into(),
                name: "cache".into(),
                external: true,
                ..VolumeDecl::default()
            },
            VolumeDecl {
                key: "shared".into(),
                name: "team-shared".into(),
                ..VolumeDecl::default()
            }
        ]
    );
}

#[test]
fn a_change_of_mounts_or_of_a_volume_declaration_replaces_the_instances() {
    let base =
        "services:\n  web:\n    image: x\n    volumes: [\"data:/d\"]\nvolumes:\n  data: {}\n";
    let old = web(base);
    let ro = web(&base.replace("data:/d", "data:/d:ro"));
    let driver = web(&base.replace("data: {}", "data: {driver: local}"));
    assert_ne!(old.spec_hash(), ro.spec_hash());
    assert_ne!(old.spec_hash(), driver.spec_hash());
    assert_eq!(changed_fields(&old, &ro), ["volumes"]);
    assert_eq!(changed_fields(&old, &driver), ["top-level volumes"]);
    // A declaration no service mounts changes nothing.
    let unused = web(&format!("{base}  other: {{}}\n"));
    assert_eq!(old.spec_hash(), unused.spec_hash());
}

#[test]
fn revisions_stored_before_mounts_still_load_with_their_volumes() {
    let json = r#"{"image":"x","volumes":["cache:/cache","/srv:/srv:ro"]}"#;
    let spec: ServiceSpec = serde_json::from_str(json).unwrap();
    assert!(spec.mounts.is_empty());
    let wire = spec.container_spec();
    assert_eq!(wire.volumes, ["cache:/cache", "/srv:/srv:ro"]);
    assert!(wire.mounts.is_empty());
    // Their host paths still need the admin's permission.
    let binds: Vec<_> = crate::placement::bind_sources(&spec).collect();
    assert_eq!(binds, [(1, "/srv")]);
}

/// Issue 14: a host path in the long syntax is host access as in the
/// short one: placed only where `--allow-bind` covers it.
#[test]
fn a_long_syntax_bind_needs_the_admins_permission_as_the_short_one() {
    let spec = web(
        "services:\n  web:\n    image: x\n    volumes:\n      - type: tmpfs\n        target: /t\n      - type: bind\n        source: /etc\n        target: /host-etc\n",
    );
    let binds: Vec<_> = crate::placement::bind_sources(&spec).collect();
    assert_eq!(binds, [(1, "/etc")]);
    let facts = |roots: &[&str]| {
        crate::facts::Facts::from(convoy_proto::NodeFacts {
            allowed_bind_paths: roots.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        })
    };
    assert!(!crate::placement::allows_host_access(&spec, &facts(&[])));
    assert!(!crate::placement::allows_host_access(
        &spec,
        &facts(&["/srv"])
    ));
    assert!(crate::placement::allows_host_access(
        &spec,
        &facts(&["/etc"])
    ));
}
