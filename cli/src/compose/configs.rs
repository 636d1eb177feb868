//! The top-level `configs:` as far as the CLI reads them: the content of
//! each `file:` (relative to the first spec file's directory, as Compose's
//! project directory) and the value of each `environment:` variable (from
//! the variables interpolation uses), sent beside the spec
//! (`ApplyRequest.config_files`, `config_env`). `content:` is in the spec.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};

use super::Variables;

/// The most bytes one config may hold (as the coordinator checks).
pub const MAX_CONFIG_BYTES: usize = 512 * 1024;

/// What the CLI sends for `configs:`: files by the path as written,
/// variables by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigInputs {
    pub files: BTreeMap<String, Vec<u8>>,
    pub env: BTreeMap<String, String>,
}

impl ConfigInputs {
    /// Bytes in all, counted with the spec against its size limit.
    pub fn total_bytes(&self) -> usize {
        let files: usize = self.files.iter().map(|(k, v)| k.len() + v.len()).sum();
        let env: usize = self.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        files + env
    }
}

#[derive(serde::Deserialize)]
struct Top {
    #[serde(default)]
    configs: Option<BTreeMap<String, Option<Def>>>,
}

#[derive(serde::Deserialize)]
struct Def {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    environment: Option<String>,
}

/// Reads the inputs of the configs `content` declares; `dir` is where
/// relative `file:` paths start. A spec the CLI cannot read is left for
/// the coordinator to explain.
pub fn read(filename: &str, content: &str, dir: &Path, vars: &Variables) -> Result<ConfigInputs> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: 32, max_nodes: 100_000 },
    };
    let Ok(top) = serde_saphyr::from_str_with_options::<Top>(content, options) else {
        return Ok(ConfigInputs::default());
    };
    let mut inputs = ConfigInputs::default();
    for (name, def) in top.configs.unwrap_or_default() {
        let Some(def) = def else { continue };
        if let Some(path) = def.file {
            if inputs.files.contains_key(&path) {
                continue;
            }
            let at = location(filename, content, "configs", &name, "file");
            let full = dir.join(&path);
            let size = std::fs::metadata(&full)
                .map_err(|e| {
                    anyhow!(
                        "{at}: configs.{name}.file: cannot read `{}`: {e}",
                        full.display()
                    )
                })?
                .len();
            if size > MAX_CONFIG_BYTES as u64 {
                return Err(anyhow!(
                    "{at}: configs.{name}.file: `{}` holds {size} bytes, over the limit of \
                     {MAX_CONFIG_BYTES} bytes (512 KiB) for a config: bake large files into the \
                     image or use a volume",
                    full.display()
                ));
            }
            let bytes = std::fs::read(&full).map_err(|e| {
                anyhow!(
                    "{at}: configs.{name}.file: cannot read `{}`: {e}",
                    full.display()
                )
            })?;
            if bytes.len() > MAX_CONFIG_BYTES {
                return Err(anyhow!(
                    "{at}: configs.{name}.file: `{}` is over the limit of {MAX_CONFIG_BYTES} \
                     bytes (512 KiB) for a config",
                    full.display()
                ));
            }
            inputs.files.insert(path, bytes);
        }
        if let Some(var) = def.environment {
            let at = location(filename, content, "configs", &name, "environment");
            let Some(value) = vars.get(&var) else {
                return Err(anyhow!(
                    "{at}: configs.{name}.environment: the variable `{var}` is not set: set it \
                     in the shell or in `.env` (or a file given with `--env-file`)"
                ));
            };
            if value.len() > MAX_CONFIG_BYTES {
                return Err(anyhow!(
                    "{at}: configs.{name}.environment: the variable `{var}` holds {} bytes, over \
                     the limit of {MAX_CONFIG_BYTES} bytes (512 KiB) for a config",
                    value.len()
                ));
            }
            inputs.env.insert(var, value);
        }
    }
    Ok(inputs)
}

/// `FILE:LINE` of the key `key` of entry `name` of the top-level
/// `section` (`configs`, `secrets`) in `content` (the line of the section
/// when it is not found; the file alone when that is not either). Found by
/// reading the text: good enough for block YAML.
pub(super) fn location(
    filename: &str,
    content: &str,
    section: &str,
    name: &str,
    key: &str,
) -> String {
    let lines: Vec<&str> = content.lines().collect();
    let header = format!("{section}:");
    let Some(top) = lines
        .iter()
        .position(|l| l.trim_end() == header || l.starts_with(&header))
    else {
        return filename.to_owned();
    };
    let mut line = top;
    let own = lines.iter().enumerate().skip(top + 1).find(|(_, l)| {
        let t = l.trim_start();
        l.starts_with(' ')
            && (t.starts_with(&format!("{name}:"))
                || t.starts_with(&format!("\"{name}\":"))
                || t.starts_with(&format!("'{name}':")))
    });
    if let Some((at, config_line)) = own {
        line = at;
        let indent = config_line.len() - config_line.trim_start().len();
        for (i, l) in lines.iter().enumerate().skip(at + 1) {
            let this = l.len() - l.trim_start().len();
            if !l.trim().is_empty() && this <= indent {
                break;
            }
            if l.trim_start().starts_with(&format!("{key}:")) {
                line = i;
                break;
            }
        }
    }
    format!("{filename}:{}", line + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "services:\n  web:\n    image: x\n    configs: [app, motd]\nconfigs:\n  app:\n    file: ./conf/app.conf\n  motd:\n    environment: CONVOY_T_MOTD\n  inline:\n    content: hi\n";

    #[test]
    fn files_and_variables_of_configs_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::write(dir.path().join("conf/app.conf"), "port=80\n").unwrap();
        std::env::set_var("CONVOY_T_MOTD", "hello");
        let inputs = read("app.yaml", SPEC, dir.path(), &Variables::default()).unwrap();
        assert_eq!(inputs.files["./conf/app.conf"], b"port=80\n");
        assert_eq!(inputs.env["CONVOY_T_MOTD"], "hello");
        assert_eq!(inputs.files.len() + inputs.env.len(), 2);
    }

    #[test]
    fn a_missing_file_names_the_spec_line_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let err = read("app.yaml", SPEC, dir.path(), &Variables::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("app.yaml:7: configs.app.file: cannot read `"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let spec = "services: {}\nconfigs:\n  motd:\n    environment: CONVOY_T_UNSET_MOTD\n";
        let err = read("app.yaml", spec, dir.path(), &Variables::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "app.yaml:4: configs.motd.environment: the variable `CONVOY_T_UNSET_MOTD` is not set"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_file_over_512_kib_is_refused_naming_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::write(
            dir.path().join("conf/app.conf"),
            vec![b'a'; MAX_CONFIG_BYTES + 1],
        )
        .unwrap();
        std::env::set_var("CONVOY_T_MOTD", "hello");
        let err = read("app.yaml", SPEC, dir.path(), &Variables::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("app.yaml:7: configs.app.file: `"), "{err}");
        assert!(err.contains("over the limit of 524288 bytes"), "{err}");
    }
}
