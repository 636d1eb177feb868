//! The JSON Schema of the spec format (docs/convoy-spec.schema.json, served
//! at `GET /api/schema`), made from the parser's own key sets (`keys`): each
//! mapping the parser reads is a definition whose properties are exactly
//! the keys it reads, checks or skips with a warning; keys it refuses are
//! listed as never valid, with why; `x-*` keys are free; anything else is an
//! error, as in the parser. Values are typed where the parser takes one
//! shape only and left open where Compose allows several.

use serde_json::{json, Map, Value};

use super::keys::{
    AnalysisKey, AnalysisQueryKey, BindKey, ConfigKey, ConvoyKey, ConvoyUpdateKey, DependsOnKey,
    DeployKey, DeviceKey, EnvFileKey, HealthcheckKey, HttpProbeKey, IngressKey, IngressRouteKey,
    IngressTlsKey, KeySet, LimitsKey, LoggingKey, MountTmpfsKey, MountVolumeKey, NetworkKey,
    PlacementKey, PortKey, PreDeployKey, PreferenceKey, ProbeKey, ReservationsKey, ResourcesKey,
    RestartPolicyKey, SecretConvoyKey, SecretGenerateKey, SecretKey, ServiceKey, ServiceMountKey,
    ServiceNetworkKey, ServiceVolumeKey, TcpProbeKey, TopConvoyKey, TopKey, UlimitKey, UnitKey,
    UnitSecretKey, UpdateConfigKey, VolumeKey,
};

/// The schema's `$id`, a name rather than an address: a coordinator
/// serves it at `http://HOST:7402/api/schema`.
pub const SCHEMA_ID: &str = "urn:convoy:spec-schema";

fn r(def: &str) -> Value {
    json!({ "$ref": format!("#/$defs/{def}") })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

fn string_or_strings() -> Value {
    json!({ "anyOf": [string(), strings()] })
}

/// A list whose entries are a short string or a mapping `def`.
fn short_or_long(def: &str) -> Value {
    json!({ "type": "array", "items": { "anyOf": [string(), r(def)] } })
}

/// A mapping of names to `def` (a null value: all defaults).
fn named(def: &str) -> Value {
    json!({ "type": "object", "additionalProperties": { "anyOf": [r(def), { "type": "null" }] } })
}

/// `KEY=VALUE` strings or a mapping of them.
fn list_or_dict() -> Value {
    json!({ "anyOf": [strings(), { "type": "object" }] })
}

/// One mapping of the parser: its key set, with the schema of the values
/// that have one.
fn mapping<K: KeySet>(description: &str, values: &[(&str, Value)]) -> Value {
    let mut properties = Map::new();
    for key in K::SUPPORTED.iter().chain(K::CHECKED) {
        let value = values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| json!({}));
        properties.insert((*key).to_owned(), value);
    }
    for key in K::IGNORED {
        properties.insert(
            (*key).to_owned(),
            json!({ "description": "A Compose key Convoy does not support yet: skipped with a warning." }),
        );
    }
    for (key, why) in K::REFUSED {
        properties.insert(
            (*key).to_owned(),
            json!({ "description": format!("Refused: {why}"), "not": {} }),
        );
    }
    json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "patternProperties": { "^x-": {} },
        "additionalProperties": false,
    })
}

/// The definitions, by name: one per key set of `keys` (the test below
/// holds them to that).
fn definitions() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Top",
            mapping::<TopKey>(
                "A spec file: a Compose file with Convoy's `units:` and `x-convoy`.",
                &[
                    ("services", named("Service")),
                    ("units", named("Unit")),
                    ("name", string()),
                    ("version", string()),
                    ("networks", named("Network")),
                    ("volumes", named("Volume")),
                    ("configs", named("Config")),
                    ("secrets", named("Secret")),
                    ("x-convoy", r("TopConvoy")),
                ],
            ),
        ),
        (
            "TopConvoy",
            mapping::<TopConvoyKey>("The file's `x-convoy`.", &[("environment", string())]),
        ),
        (
            "Service",
            mapping::<ServiceKey>(
                "A service: containers run by Docker.",
                &[
                    ("image", string()),
                    ("command", string_or_strings()),
                    ("entrypoint", string_or_strings()),
                    ("environment", list_or_dict()),
                    ("labels", list_or_dict()),
                    (
                        "ports",
                        json!({ "type": "array", "items": { "anyOf": [string(), { "type": "integer" }, r("Port")] } }),
                    ),
                    ("volumes", short_or_long("ServiceVolume")),
                    (
                        "networks",
                        json!({ "anyOf": [strings(), named("ServiceNetwork")] }),
                    ),
                    ("hostname", string()),
                    ("working_dir", string()),
                    ("user", string()),
                    ("restart", string()),
                    ("stop_signal", string()),
                    ("healthcheck", r("Healthcheck")),
                    ("deploy", r("Deploy")),
                    ("profiles", strings()),
                    (
                        "env_file",
                        json!({ "anyOf": [string(), { "type": "array", "items": { "anyOf": [string(), r("EnvFile")] } }] }),
                    ),
                    ("logging", r("Logging")),
                    (
                        "depends_on",
                        json!({ "anyOf": [strings(), { "type": "object", "additionalProperties": r("DependsOn") }] }),
                    ),
                    ("configs", short_or_long("ServiceMount")),
                    ("secrets", short_or_long("ServiceMount")),
                    (
                        "ulimits",
                        json!({ "type": "object", "additionalProperties": { "anyOf": [{ "type": ["integer", "string"] }, r("Ulimit")] } }),
                    ),
                    (
                        "gpus",
                        json!({ "anyOf": [string(), { "type": "array", "items": r("Device") }] }),
                    ),
                    ("x-convoy", r("Convoy")),
                ],
            ),
        ),
        (
            "Unit",
            mapping::<UnitKey>(
                "A unit: a systemd service the agent writes or adopts.",
                &[
                    ("unit", string()),
                    ("exec_start", string_or_strings()),
                    ("user", string()),
                    ("restart", string()),
                    ("environment", list_or_dict()),
                    ("working_dir", string()),
                    ("description", string()),
                    ("deploy", r("Deploy")),
                    ("secrets", short_or_long("UnitSecret")),
                    ("x-convoy", r("Convoy")),
                ],
            ),
        ),
        (
            "Deploy",
            mapping::<DeployKey>(
                "`deploy:`",
                &[
                    ("mode", string()),
                    ("placement", r("Placement")),
                    ("restart_policy", r("RestartPolicy")),
                    ("update_config", r("UpdateConfig")),
                    ("rollback_config", r("UpdateConfig")),
                    ("resources", r("Resources")),
                    ("labels", list_or_dict()),
                ],
            ),
        ),
        (
            "Resources",
            mapping::<ResourcesKey>(
                "`deploy.resources`",
                &[("limits", r("Limits")), ("reservations", r("Reservations"))],
            ),
        ),
        (
            "Limits",
            mapping::<LimitsKey>("`deploy.resources.limits`", &[]),
        ),
        (
            "Reservations",
            mapping::<ReservationsKey>(
                "`deploy.resources.reservations`",
                &[("devices", json!({ "type": "array", "items": r("Device") }))],
            ),
        ),
        (
            "Device",
            mapping::<DeviceKey>(
                "A device request (GPUs): `reservations.devices` or `gpus:`.",
                &[
                    ("driver", string()),
                    ("device_ids", strings()),
                    ("capabilities", strings()),
                ],
            ),
        ),
        (
            "EnvFile",
            mapping::<EnvFileKey>("An `env_file` entry.", &[("path", string())]),
        ),
        (
            "DependsOn",
            mapping::<DependsOnKey>("A `depends_on` entry.", &[("condition", string())]),
        ),
        (
            "Logging",
            mapping::<LoggingKey>("`logging:`", &[("driver", string())]),
        ),
        ("Ulimit", mapping::<UlimitKey>("An `ulimits` entry.", &[])),
        (
            "UpdateConfig",
            mapping::<UpdateConfigKey>(
                "`update_config` / `rollback_config`",
                &[("failure_action", string()), ("order", string())],
            ),
        ),
        (
            "Placement",
            mapping::<PlacementKey>(
                "`deploy.placement`",
                &[
                    ("constraints", strings()),
                    (
                        "preferences",
                        json!({ "type": "array", "items": r("Preference") }),
                    ),
                ],
            ),
        ),
        (
            "Preference",
            mapping::<PreferenceKey>("A placement preference.", &[("spread", string())]),
        ),
        (
            "RestartPolicy",
            mapping::<RestartPolicyKey>("`deploy.restart_policy`", &[("condition", string())]),
        ),
        (
            "Healthcheck",
            mapping::<HealthcheckKey>("`healthcheck:`", &[("test", string_or_strings())]),
        ),
        (
            "Convoy",
            mapping::<ConvoyKey>(
                "Convoy's settings of a service or unit.",
                &[
                    ("probes", json!({ "type": "array", "items": r("Probe") })),
                    ("update", r("ConvoyUpdate")),
                    ("pre_deploy", r("PreDeploy")),
                    ("ingress", r("Ingress")),
                ],
            ),
        ),
        (
            "Ingress",
            mapping::<IngressKey>(
                "`x-convoy.ingress`: routes of the agents' per-host proxy (docs/PROXY.md).",
                &[
                    (
                        "routes",
                        json!({ "type": "array", "items": r("IngressRoute"), "minItems": 1 }),
                    ),
                    ("drain_timeout", string()),
                    (
                        "tls",
                        json!({ "type": "array", "items": r("IngressTls"), "maxItems": 16 }),
                    ),
                    ("https_redirect", json!({ "type": "boolean" })),
                ],
            ),
        ),
        (
            "IngressTls",
            mapping::<IngressTlsKey>(
                "A certificate of the proxy's TLS listener: presented for `hosts` (SNI); \
                 `certificate` and `key` are keys of the top-level `secrets:` (PEM); without \
                 `key`, the certificate's secret holds the key too.",
                &[
                    (
                        "hosts",
                        json!({ "type": "array", "items": { "type": "string" }, "minItems": 1 }),
                    ),
                    ("certificate", string()),
                    ("key", string()),
                ],
            ),
        ),
        (
            "IngressRoute",
            mapping::<IngressRouteKey>(
                "A route: requests for `host` (any when left out) whose path starts with \
                 `path_prefix` (default `/`) go to the instances' container `port`.",
                &[
                    ("host", string()),
                    ("path_prefix", string()),
                    (
                        "port",
                        json!({ "type": "integer", "minimum": 1, "maximum": 65535 }),
                    ),
                ],
            ),
        ),
        (
            "PreDeploy",
            mapping::<PreDeployKey>(
                "`x-convoy.pre_deploy`: a one-off command from the new spec run before a \
                 rollout starts; its failure stops the apply (docs/LOGS.md).",
                &[("command", string_or_strings()), ("timeout", string())],
            ),
        ),
        (
            "ConvoyUpdate",
            mapping::<ConvoyUpdateKey>(
                "`x-convoy.update`: the rollout.",
                &[
                    (
                        "strategy",
                        json!({ "type": "string", "enum": ["rolling", "canary", "blue-green"] }),
                    ),
                    ("analysis", r("Analysis")),
                    (
                        "canary_weights",
                        json!({
                            "type": "array",
                            "items": { "type": "integer", "minimum": 1, "maximum": 99 },
                            "minItems": 1
                        }),
                    ),
                ],
            ),
        ),
        (
            "Analysis",
            mapping::<AnalysisKey>(
                "`x-convoy.update.analysis`: PromQL gates of the rollout (docs/ANALYSIS.md).",
                &[
                    ("prometheus", string()),
                    (
                        "queries",
                        json!({ "type": "array", "items": r("AnalysisQuery") }),
                    ),
                ],
            ),
        ),
        (
            "AnalysisQuery",
            mapping::<AnalysisQueryKey>(
                "A PromQL query or a proxy figure, and the bound a measurement must keep (`max`, `min`, `max_worse_than_stable`).",
                &[
                    ("name", string()),
                    ("query", string()),
                    ("max", json!({ "type": "number" })),
                    ("min", json!({ "type": "number" })),
                    (
                        "proxy",
                        json!({ "type": "string", "enum": ["error-rate", "latency-p95", "latency-p99", "request-rate"] }),
                    ),
                    (
                        "max_worse_than_stable",
                        json!({ "type": ["string", "number"] }),
                    ),
                ],
            ),
        ),
        (
            "Probe",
            mapping::<ProbeKey>(
                "A health probe the agent runs.",
                &[
                    ("name", string()),
                    ("http", r("HttpProbe")),
                    ("tcp", r("TcpProbe")),
                    ("exec", string_or_strings()),
                ],
            ),
        ),
        (
            "HttpProbe",
            mapping::<HttpProbeKey>("An HTTP probe.", &[("path", string())]),
        ),
        ("TcpProbe", mapping::<TcpProbeKey>("A TCP probe.", &[])),
        (
            "Network",
            mapping::<NetworkKey>(
                "A network of the file.",
                &[
                    ("driver", string()),
                    ("name", string()),
                    ("labels", list_or_dict()),
                ],
            ),
        ),
        (
            "ServiceNetwork",
            mapping::<ServiceNetworkKey>("A service's network.", &[("aliases", strings())]),
        ),
        (
            "Config",
            mapping::<ConfigKey>(
                "A config of the file.",
                &[
                    ("file", string()),
                    ("content", string()),
                    ("environment", string()),
                    ("name", string()),
                ],
            ),
        ),
        (
            "ServiceMount",
            mapping::<ServiceMountKey>(
                "A service's config or secret, long syntax.",
                &[("source", string()), ("target", string())],
            ),
        ),
        (
            "Secret",
            mapping::<SecretKey>(
                "A secret of the file.",
                &[
                    ("file", string()),
                    ("environment", string()),
                    ("name", string()),
                    ("x-convoy", r("SecretConvoy")),
                ],
            ),
        ),
        (
            "SecretConvoy",
            mapping::<SecretConvoyKey>(
                "A secret's `x-convoy`.",
                &[(
                    "generate",
                    json!({ "anyOf": [{ "type": "boolean" }, r("SecretGenerate")] }),
                )],
            ),
        ),
        (
            "SecretGenerate",
            mapping::<SecretGenerateKey>("How a secret is generated.", &[("charset", string())]),
        ),
        (
            "UnitSecret",
            mapping::<UnitSecretKey>(
                "A unit's secret: a systemd credential.",
                &[("source", string()), ("target", string())],
            ),
        ),
        (
            "Volume",
            mapping::<VolumeKey>(
                "A volume of the file.",
                &[
                    ("name", string()),
                    ("driver", string()),
                    ("labels", list_or_dict()),
                ],
            ),
        ),
        (
            "ServiceVolume",
            mapping::<ServiceVolumeKey>(
                "A service's volume, long syntax.",
                &[
                    (
                        "type",
                        json!({ "type": "string", "enum": ["bind", "volume", "tmpfs"] }),
                    ),
                    ("source", string()),
                    ("target", string()),
                    ("bind", r("Bind")),
                    ("volume", r("MountVolume")),
                    ("tmpfs", r("MountTmpfs")),
                ],
            ),
        ),
        (
            "Bind",
            mapping::<BindKey>("A bind mount's options.", &[("propagation", string())]),
        ),
        (
            "MountVolume",
            mapping::<MountVolumeKey>("A volume mount's options.", &[]),
        ),
        (
            "MountTmpfs",
            mapping::<MountTmpfsKey>("A tmpfs mount's options.", &[]),
        ),
        (
            "Port",
            mapping::<PortKey>(
                "A port, long syntax.",
                &[
                    ("host_ip", string()),
                    ("protocol", string()),
                    ("mode", string()),
                ],
            ),
        ),
    ]
}

/// The schema document.
pub fn schema() -> Value {
    let defs: Map<String, Value> = definitions()
        .into_iter()
        .map(|(name, def)| (name.to_owned(), def))
        .collect();
    let mut doc = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Convoy spec",
        "description": "A Convoy spec file: a Docker Compose file with Convoy's `units:` and `x-convoy` extensions (docs/COMPOSE.md). Generated from the parser's key sets.",
        "$ref": "#/$defs/Top",
    });
    doc["$defs"] = Value::Object(defs);
    doc
}

/// The schema as the repository keeps it: pretty JSON, one trailing newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = include_str!("../../../../docs/convoy-spec.schema.json");
    const KEYS: &str = include_str!("keys.rs");

    /// The file in docs/ is what the code makes: regenerate it with
    /// `CONVOY_WRITE_SCHEMA=1 cargo test -p convoy-coordinator --lib schema`.
    #[test]
    fn the_schema_file_in_docs_is_the_generated_one() {
        let text = schema_text();
        if std::env::var_os("CONVOY_WRITE_SCHEMA").is_some() {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../docs/convoy-spec.schema.json"
            );
            std::fs::write(path, &text).unwrap();
            return;
        }
        assert!(
            FILE == text,
            "docs/convoy-spec.schema.json is stale: run \
             `CONVOY_WRITE_SCHEMA=1 cargo test -p convoy-coordinator --lib schema`"
        );
    }

    /// Every key set the parser has (a `key_set!` in keys.rs) is a
    /// definition, and every `$ref` points at one.
    #[test]
    fn every_key_set_of_the_parser_is_in_the_schema() {
        let sets: Vec<&str> = KEYS
            .match_indices("\nkey_set!(")
            .map(|(at, m)| {
                let rest = &KEYS[at + m.len()..];
                rest[..rest.find(' ').unwrap_or(0)].trim()
            })
            .collect();
        assert!(sets.len() > 30, "{sets:?}");
        let defs = definitions();
        let names: Vec<&str> = defs.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            sets.len(),
            defs.len(),
            "key sets {sets:?} vs definitions {names:?}"
        );
        let text = schema_text();
        for (at, _) in text.match_indices("\"$ref\": \"#/$defs/") {
            let rest = &text[at + "\"$ref\": \"#/$defs/".len()..];
            let name = &rest[..rest.find('"').unwrap_or(0)];
            assert!(names.contains(&name), "$ref to a missing {name}");
        }
        // Each definition's properties are its key set's keys, no more.
        let doc = schema();
        let service = &doc["$defs"]["Service"]["properties"];
        for key in ServiceKey::SUPPORTED.iter().chain(ServiceKey::IGNORED) {
            assert!(service.get(*key).is_some(), "{key}");
        }
        assert_eq!(
            service.as_object().map(|o| o.len()),
            Some(
                ServiceKey::SUPPORTED.len()
                    + ServiceKey::CHECKED.len()
                    + ServiceKey::IGNORED.len()
                    + ServiceKey::REFUSED.len()
            )
        );
        assert_eq!(doc["$defs"]["Service"]["additionalProperties"], false);
    }

    fn validator() -> jsonschema::Validator {
        jsonschema::validator_for(&schema()).unwrap()
    }

    fn yaml(text: &str) -> Value {
        serde_saphyr::from_str(text).unwrap()
    }

    /// The schema accepts the repository's example spec and the Compose
    /// files of the YAML parser benchmark's corpus (anchors, merge keys).
    #[test]
    fn the_schema_accepts_the_example_specs() {
        let v = validator();
        for (name, text) in [
            (
                "examples/hello.yaml",
                include_str!("../../../../examples/hello.yaml"),
            ),
            (
                "bench/yaml-parsers/corpus/compose-10.yaml",
                include_str!("../../../../bench/yaml-parsers/corpus/compose-10.yaml"),
            ),
            (
                "bench/yaml-parsers/corpus/compose-10-merge.yaml",
                include_str!("../../../../bench/yaml-parsers/corpus/compose-10-merge.yaml"),
            ),
            (
                "bench/yaml-parsers/corpus/compose-200.yaml",
                include_str!("../../../../bench/yaml-parsers/corpus/compose-200.yaml"),
            ),
        ] {
            let doc = yaml(text);
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{name}: {errors:?}");
        }
    }

    /// What the parser refuses as an unknown or refused key, the schema
    /// refuses too; `x-*` keys and Compose keys skipped with a warning are
    /// accepted by both.
    #[test]
    fn the_schema_refuses_the_keys_the_parser_refuses() {
        let v = validator();
        let ok = |text: &str| v.is_valid(&yaml(text));
        assert!(ok("services:\n  web:\n    image: nginx\n"));
        assert!(ok(
            "services:\n  web:\n    image: nginx\n    x-team: a\n    container_name: w\n"
        ));
        assert!(!ok(
            "services:\n  web:\n    image: nginx\n    imagee: nginx\n"
        ));
        assert!(!ok("services:\n  web:\n    image: nginx\n    build: .\n"));
        assert!(!ok("services:\n  web:\n    image: nginx\n    x-convoy:\n      update:\n        stratgy: canary\n"));
        assert!(!ok("services:\n  web:\n    image: nginx\n    deploy:\n      replicas: 2\n      placment: {}\n"));
        assert!(!ok("unknown_top: 1\n"));
    }
}
