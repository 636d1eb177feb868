//! Which context of the config file applies: the one `--context` names, else
//! the file's current one.

use std::path::Path;

use anyhow::{anyhow, bail, Result};

use super::{ConfigFile, Context, Flags};

/// The context in use, or a note on why the current one is missing.
pub(super) fn select_context<'a>(
    flags: &Flags,
    file: Option<(&Path, &'a ConfigFile)>,
) -> Result<(Option<&'a Context>, Option<String>)> {
    if let Some(name) = &flags.context {
        let Some((path, config)) = file else {
            bail!("no context `{name}`: no config file (set CONVOY_CONFIG or HOME)");
        };
        return config
            .contexts
            .get(name)
            .map(|c| (Some(c), None))
            .ok_or_else(|| {
                let known: Vec<&str> = config.contexts.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "it has none".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                anyhow!("no context `{name}` in {} ({known})", path.display())
            });
    }
    let Some((path, config)) = file else {
        return Ok((None, None));
    };
    match &config.current_context {
        None => Ok((None, None)),
        Some(name) => match config.contexts.get(name) {
            Some(c) => Ok((Some(c), None)),
            None => Ok((
                None,
                Some(format!(
                    "current_context `{name}` is not defined in {}",
                    path.display()
                )),
            )),
        },
    }
}
