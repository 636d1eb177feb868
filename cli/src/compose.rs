//! What the CLI does to a Compose file before sending it: reads it (size
//! and UTF-8 checked, see `commands::read_spec`) and interpolates its
//! variables from the shell and the env files, so that the coordinator
//! stores the spec as it runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};

pub mod configs;
mod dotenv;
pub mod interpolate;
pub mod merge;
pub mod secrets;

/// A spec ready to send: its name as given, its interpolated text, and the
/// warnings interpolation gave (unset variables).
#[derive(Debug)]
pub struct LoadedSpec {
    pub filename: String,
    pub content: String,
    pub warnings: Vec<String>,
    /// The environment the file names (`x-convoy: {environment: prod}` at
    /// the top level), if it names one.
    pub environment: Option<String>,
    /// The variables of the env files its services name (`env_file:`), by
    /// the path as written.
    pub env_files: BTreeMap<String, BTreeMap<String, String>>,
    /// The files and variables of the top-level `configs:`.
    pub configs: configs::ConfigInputs,
    /// The files and variables of the top-level `secrets:` that services
    /// or units use. `Debug` shows their names only.
    pub secrets: secrets::SecretInputs,
}

impl LoadedSpec {
    /// The environment to apply to: the file's, `--env`/`CONVOY_ENV`'s
    /// (`given`, empty when neither is set), or "" for the default; a file
    /// naming another environment than the one given is refused, so that a
    /// spec for `prod` never lands in `staging` by a stale variable.
    pub fn environment_with(&self, given: &str, given_by: &str) -> Result<String> {
        match (&self.environment, given) {
            (None, given) => Ok(given.to_owned()),
            (Some(file), "") => Ok(file.clone()),
            (Some(file), given) if file == given => Ok(given.to_owned()),
            (Some(file), given) => Err(anyhow!(
                "{}: the file's `x-convoy.environment` is `{file}`, but {given_by} says `{given}`: \
                 apply it to `{file}` (leave {given_by} out) or change the file",
                self.filename
            )),
        }
    }
}

/// The top level of a spec, as far as the CLI reads it.
#[derive(serde::Deserialize)]
struct Top {
    #[serde(rename = "x-convoy", default)]
    convoy: Option<TopConvoy>,
}

/// The services' `env_file`s, as far as the CLI reads them.
#[derive(serde::Deserialize)]
struct EnvFileServices {
    #[serde(default)]
    services: BTreeMap<String, ServiceEnvFiles>,
}

#[derive(serde::Deserialize)]
struct ServiceEnvFiles {
    #[serde(default)]
    env_file: Option<EnvFileSpec>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum EnvFileSpec {
    One(String),
    Many(Vec<EnvFileItem>),
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum EnvFileItem {
    Path(String),
    Long {
        path: String,
        #[serde(default = "required_by_default")]
        required: bool,
    },
}

fn required_by_default() -> bool {
    true
}

/// Reads the env files the services of `content` name, relative to `dir`:
/// path as written → its variables. A file that is not there is an error
/// unless `required: false`; a spec the CLI cannot read is left for the
/// coordinator to explain.
fn read_env_files(
    filename: &str,
    content: &str,
    dir: &Path,
) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: 32, max_nodes: 100_000 },
    };
    let Ok(top) = serde_saphyr::from_str_with_options::<EnvFileServices>(content, options) else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (service, spec) in top.services {
        let items = match spec.env_file {
            None => Vec::new(),
            Some(EnvFileSpec::One(path)) => vec![(path, true)],
            Some(EnvFileSpec::Many(items)) => items
                .into_iter()
                .map(|item| match item {
                    EnvFileItem::Path(path) => (path, true),
                    EnvFileItem::Long { path, required } => (path, required),
                })
                .collect(),
        };
        for (path, required) in items {
            if out.contains_key(&path) {
                continue;
            }
            let full = dir.join(&path);
            if !full.exists() && !required {
                continue;
            }
            let mut vars = HashMap::new();
            read_env_file(&full, &mut vars)
                .map_err(|e| anyhow!("{filename}: services.{service}.env_file: {e:#}"))?;
            out.insert(path, vars.into_iter().collect());
        }
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TopConvoy {
    environment: Option<String>,
    /// The services' default Swarm cluster: the coordinator's to read.
    #[serde(default, rename = "swarm")]
    _swarm: Option<serde::de::IgnoredAny>,
}

/// The environment `content` names at `x-convoy.environment`; a file the
/// coordinator will refuse anyway (bad YAML) names none here.
fn named_environment(filename: &str, content: &str) -> Result<Option<String>> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: 32, max_nodes: 100_000 },
    };
    match serde_saphyr::from_str_with_options::<Top>(content, options) {
        Ok(Top {
            convoy: Some(TopConvoy { environment, .. }),
        }) => Ok(environment),
        Ok(Top { convoy: None }) => Ok(None),
        Err(e) if e.to_string().contains("unknown field") => Err(anyhow!(
            "{filename}: x-convoy: {}: the top-level `x-convoy` holds only `environment` and `swarm`",
            e.to_string().lines().next().unwrap_or_default()
        )),
        Err(_) => Ok(None),
    }
}

/// The variables a spec is interpolated with: the shell's environment,
/// then the env files (`--env-file`, repeatable, later files winning, or
/// else `.env` beside the spec file, or in the current directory for
/// stdin), as Compose reads them.
#[derive(Debug, Default)]
pub struct Variables {
    from_files: HashMap<String, String>,
}

impl Variables {
    /// Reads `env_files`, or `.env` beside `spec` when there are none.
    pub fn load(spec: &Path, env_files: &[PathBuf]) -> Result<Self> {
        let mut from_files = HashMap::new();
        if env_files.is_empty() {
            let dir = if spec == Path::new("-") {
                Path::new(".")
            } else {
                spec.parent().unwrap_or(Path::new("."))
            };
            let default = dir.join(".env");
            if default.is_file() {
                read_env_file(&default, &mut from_files)?;
            }
        } else {
            for file in env_files {
                read_env_file(file, &mut from_files)?;
            }
        }
        Ok(Variables { from_files })
    }

    /// The shell's value, else the env files'.
    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.from_files.get(name).cloned())
    }
}

/// Adds the `KEY=VALUE` lines of `path` to `into` (a later file wins). The
/// parsing is dotenvy's (comments, quotes, `export`, `${VAR}` in values),
/// with unquoted values taken to the end of the line as Compose takes them
/// (`dotenv.rs`).
fn read_env_file(path: &Path, into: &mut HashMap<String, String>) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the env file {}", path.display()))?;
    let quoted = dotenv::quote_spaced_values(&text);
    let entries = dotenvy::from_read_iter(quoted.as_bytes());
    for entry in entries {
        let (key, value) = entry.map_err(|e| match e {
            dotenvy::Error::LineParse(line, index) => {
                let number = text
                    .lines()
                    .position(|l| l.trim_end() == line.trim_end() || l.contains(line.as_str()))
                    .map_or(String::new(), |n| format!(":{}", n + 1));
                anyhow!(
                    "{}{number}: cannot read `{line}` (at character {}): write `KEY=VALUE`",
                    path.display(),
                    index + 1
                )
            }
            other => anyhow!("{}: {other}", path.display()),
        })?;
        into.insert(key, value);
    }
    Ok(())
}

/// Reads the spec files `files`, each interpolated with `vars`, and
/// merges them in order as Compose merges override files (see
/// [`merge`]); one file is sent as written, several as their merged text
/// (named `a.yaml+b.yaml`). Scalars of merged files are read as YAML
/// values, as Compose reads them: quote values such as `1.10`.
pub fn load_all(files: &[PathBuf], vars: &Variables) -> Result<LoadedSpec> {
    let mut loaded = match files {
        [] => return Err(anyhow!("no spec file: give one with -f FILE")),
        [one] => load(one, vars)?,
        many => merged(many, vars)?,
    };
    // Relative to the first file's directory, Compose's project directory.
    let dir = match files.first() {
        Some(file) if file != Path::new("-") => file.parent().unwrap_or(Path::new(".")),
        _ => Path::new("."),
    };
    loaded.configs = configs::read(&loaded.filename, &loaded.content, dir, vars)?;
    loaded.secrets = secrets::read(&loaded.filename, &loaded.content, dir, vars)?;
    let max = crate::commands::max_spec_bytes()?;
    let total = loaded
        .content
        .len()
        .saturating_add(loaded.configs.total_bytes())
        .saturating_add(loaded.secrets.total_bytes());
    if total > max {
        return Err(anyhow!(
            "{}: the spec, its configs and its secrets hold {total} bytes, over the limit of \
             {max} bytes: raise it with `CONVOY_MAX_SPEC_BYTES` here and `convoyd \
             --max-spec-bytes` on the coordinator, or make the configs smaller",
            loaded.filename
        ));
    }
    Ok(loaded)
}

/// Several spec files, merged (see [`load_all`]).
fn merged(many: &[PathBuf], vars: &Variables) -> Result<LoadedSpec> {
    let mut merged = serde_json::Value::Null;
    let mut names = Vec::new();
    let mut warnings = Vec::new();
    let mut env_files = BTreeMap::new();
    for file in many {
        let loaded = load(file, vars)?;
        let doc = merge::read(&loaded.filename, &loaded.content)?;
        if merged.is_null() {
            merged = doc;
        } else {
            merge::merge(&mut merged, doc);
        }
        names.push(loaded.filename);
        warnings.extend(loaded.warnings);
        env_files.extend(loaded.env_files);
    }
    let filename = names.join("+");
    let content = serde_saphyr::to_string(&merged)
        .map_err(|e| anyhow!("{filename}: cannot write the merged spec: {e}"))?;
    let environment = named_environment(&filename, &content)?;
    Ok(LoadedSpec {
        filename,
        content,
        warnings,
        environment,
        env_files,
        configs: configs::ConfigInputs::default(),
        secrets: secrets::SecretInputs::default(),
    })
}

/// Reads the spec `file` and interpolates it with `vars`.
pub fn load(file: &Path, vars: &Variables) -> Result<LoadedSpec> {
    let (filename, content) = crate::commands::read_spec(file)?;
    let done = interpolate::interpolate(&filename, &content, &|name: &str| vars.get(name))?;
    let environment = named_environment(&filename, &done.text)?;
    let dir = if file == Path::new("-") {
        Path::new(".")
    } else {
        file.parent().unwrap_or(Path::new("."))
    };
    let env_files = read_env_files(&filename, &done.text, dir)?;
    Ok(LoadedSpec {
        filename,
        content: done.text,
        warnings: done.warnings,
        environment,
        env_files,
        configs: configs::ConfigInputs::default(),
        secrets: secrets::SecretInputs::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_env_beside_the_file_is_read_and_the_shell_wins() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("app.yaml");
        std::fs::write(
            &spec,
            "services:\n  web:\n    image: \"nginx:${CONVOY_TEST_TAG}\"\n    environment:\n      HOME_DIR: ${HOME}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "# tags\nCONVOY_TEST_TAG=1.27\nexport HOME=/not/used\nQUOTED=\"a b\"\n",
        )
        .unwrap();
        let vars = Variables::load(&spec, &[]).unwrap();
        assert_eq!(vars.get("QUOTED").as_deref(), Some("a b"));
        let loaded = load(&spec, &vars).unwrap();
        assert!(
            loaded.content.contains("image: \"nginx:1.27\""),
            "{}",
            loaded.content
        );
        // HOME is set in the shell: the shell wins over the file.
        let home = std::env::var("HOME").unwrap();
        assert!(loaded.content.contains(&format!("HOME_DIR: {home}")));
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn env_files_replace_dot_env_and_later_ones_win() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("app.yaml");
        std::fs::write(dir.path().join(".env"), "CONVOY_T_A=from-dot-env\n").unwrap();
        let one = dir.path().join("one.env");
        let two = dir.path().join("two.env");
        std::fs::write(&one, "CONVOY_T_A=one\nCONVOY_T_B=one\n").unwrap();
        std::fs::write(&two, "CONVOY_T_B=two\n").unwrap();
        let vars = Variables::load(&spec, &[one, two]).unwrap();
        assert_eq!(vars.get("CONVOY_T_A").as_deref(), Some("one"));
        assert_eq!(vars.get("CONVOY_T_B").as_deref(), Some("two"));
    }

    #[test]
    fn a_bad_env_file_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.env");
        std::fs::write(&bad, "A=1\nNOT A LINE\n").unwrap();
        let err = Variables::load(Path::new("app.yaml"), std::slice::from_ref(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{}:2: cannot read", bad.display())),
            "{err}"
        );
        let missing = dir.path().join("missing.env");
        let err = Variables::load(Path::new("app.yaml"), std::slice::from_ref(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("cannot read the env file {}", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn the_file_can_name_its_environment_and_a_conflict_is_an_error() {
        let spec = |content: &str| LoadedSpec {
            filename: "app.yaml".into(),
            content: content.into(),
            warnings: Vec::new(),
            environment: named_environment("app.yaml", content).unwrap(),
            env_files: BTreeMap::new(),
            configs: configs::ConfigInputs::default(),
            secrets: secrets::SecretInputs::default(),
        };
        let named = spec("name: shop\nx-convoy:\n  environment: prod\nservices: {}\n");
        assert_eq!(named.environment.as_deref(), Some("prod"));
        assert_eq!(named.environment_with("", "--env").unwrap(), "prod");
        assert_eq!(named.environment_with("prod", "--env").unwrap(), "prod");
        assert_eq!(
            named
                .environment_with("staging", "CONVOY_ENV")
                .unwrap_err()
                .to_string(),
            "app.yaml: the file's `x-convoy.environment` is `prod`, but CONVOY_ENV says \
             `staging`: apply it to `prod` (leave CONVOY_ENV out) or change the file"
        );
        let plain = spec("services: {}\n");
        assert_eq!(
            plain.environment_with("staging", "--env").unwrap(),
            "staging"
        );
        assert_eq!(plain.environment_with("", "--env").unwrap(), "");
        // Bad YAML is for the coordinator to explain.
        assert_eq!(spec("services: [").environment, None);
        let err = named_environment("app.yaml", "x-convoy:\n  enviroment: prod\n").unwrap_err();
        assert!(err.to_string().starts_with("app.yaml: x-convoy: "), "{err}");
        assert!(err.to_string().contains("enviroment"), "{err}");
        // `swarm` is the coordinator's: the CLI lets it through.
        assert_eq!(
            named_environment("app.yaml", "x-convoy:\n  environment: prod\n  swarm: c1\n").unwrap(),
            Some("prod".to_owned())
        );
    }

    #[test]
    fn a_missing_required_variable_names_variable_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("app.yaml");
        std::fs::write(
            &spec,
            "services:\n  db:\n    image: \"postgres:${CONVOY_T_UNSET_TAG:?pick a tag}\"\n",
        )
        .unwrap();
        let err = load(&spec, &Variables::default()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:3: required variable `CONVOY_T_UNSET_TAG` is not set: pick a tag",
                spec.display()
            )
        );
    }

    #[test]
    fn the_env_files_a_spec_names_are_read_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("app.yaml");
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::write(
            dir.path().join("conf/web.env"),
            "A=1\n# note\nB=\"two words\"\n",
        )
        .unwrap();
        std::fs::write(
            &spec,
            "services:\n  web:\n    image: x\n    env_file: conf/web.env\n  db:\n    image: y\n    env_file:\n      - conf/web.env\n      - path: missing.env\n        required: false\n",
        )
        .unwrap();
        let loaded = load(&spec, &Variables::default()).unwrap();
        assert_eq!(loaded.env_files.len(), 1, "{:?}", loaded.env_files);
        let vars = &loaded.env_files["conf/web.env"];
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        // A required file that is not there names the service and the file.
        std::fs::write(
            &spec,
            "services:\n  web:\n    image: x\n    env_file: [missing.env]\n",
        )
        .unwrap();
        let err = load(&spec, &Variables::default()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: services.web.env_file: cannot read the env file",
                spec.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn several_files_are_merged_and_named_together() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("compose.yaml");
        let prod = dir.path().join("compose.prod.yaml");
        std::fs::write(
            &base,
            "services:\n  web:\n    image: web:1\n    environment: [A=1]\n",
        )
        .unwrap();
        std::fs::write(
            &prod,
            "x-convoy: {environment: prod}\nservices:\n  web:\n    image: web:${CONVOY_T_TAG:-2}\n    environment: {B: '2'}\n",
        )
        .unwrap();
        let loaded = load_all(&[base.clone(), prod.clone()], &Variables::default()).unwrap();
        assert_eq!(
            loaded.filename,
            format!("{}+{}", base.display(), prod.display())
        );
        assert_eq!(loaded.environment.as_deref(), Some("prod"));
        let doc = merge::read("merged", &loaded.content).unwrap();
        assert_eq!(doc["services"]["web"]["image"], "web:2");
        assert_eq!(
            doc["services"]["web"]["environment"],
            serde_json::json!({"A": "1", "B": "2"})
        );
    }
}
