//! Shell completions (`clap_complete`) and man pages (`clap_mangen`) made
//! from a binary's own clap definition: what `convoy completion SHELL`
//! prints and what each binary's hidden `generate-docs DIR` writes for the
//! packages (docs/PACKAGES.md).

use std::io::Write;
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// The shells completions are made for, and where each goes in a package.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "completions/bash"),
    (Shell::Zsh, "completions/zsh"),
    (Shell::Fish, "completions/fish"),
];

/// The file name a shell looks for: bash takes the command's name, zsh
/// `_NAME`, fish `NAME.fish`.
pub fn completion_file_name(shell: Shell, bin: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{bin}"),
        Shell::Fish => format!("{bin}.fish"),
        _ => bin.to_owned(),
    }
}

/// The completion script of `cmd` for `shell`, written to `out`.
pub fn write_completion(mut cmd: clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes `DIR/completions/{bash,zsh,fish}/FILE` and `DIR/man/*.1` (one
/// page for the command, one per subcommand) for `cmd`; returns the files
/// written.
pub fn generate(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let name = cmd.get_name().to_owned();
    let mut written = Vec::new();
    for (shell, sub) in SHELLS {
        let shell_dir = dir.join(sub);
        std::fs::create_dir_all(&shell_dir)?;
        let path = shell_dir.join(completion_file_name(shell, &name));
        let mut text = Vec::new();
        write_completion(cmd.clone(), shell, &mut text);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    // Subcommand pages are named `NAME-SUB.1`, as git's are.
    clap_mangen::generate_to(cmd, &man)?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == format!("{name}.1") || n.starts_with(&format!("{name}-")))
        })
        .collect();
    pages.sort();
    written.extend(pages);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("demo")
            .about("A demo")
            .subcommand(
                clap::Command::new("apply")
                    .about("Apply it")
                    .arg(clap::Arg::new("file").long("file")),
            )
            .subcommand(clap::Command::new("secret-thing").hide(true))
    }

    #[test]
    fn completions_and_man_pages_are_written_for_each_shell_and_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(cmd(), dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        for expected in [
            "completions/bash/demo",
            "completions/zsh/_demo",
            "completions/fish/demo.fish",
            "man/demo.1",
            "man/demo-apply.1",
        ] {
            assert!(
                names.contains(&expected.to_string()),
                "{expected} not in {names:?}"
            );
        }
        let bash = std::fs::read_to_string(dir.path().join("completions/bash/demo")).unwrap();
        assert!(bash.contains("complete -F"), "{bash}");
        assert!(bash.contains("--file"), "{bash}");
        // clap_complete's bash script offers hidden subcommands too (a
        // known wart: `generate-docs` shows up); man pages leave them out.
        let offered = bash
            .lines()
            .find(|l| l.trim_start().starts_with("opts=\"-"))
            .unwrap_or_default();
        assert!(offered.contains("apply"), "{offered}");
        assert!(
            !names.iter().any(|n| n.contains("secret-thing")),
            "{names:?}"
        );
        let page = std::fs::read_to_string(dir.path().join("man/demo-apply.1")).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        assert!(page.contains("Apply it"), "{page}");
    }
}
