//! The image the tests deploy: convoy-testapp, built FROM scratch by
//! `scripts/build-test-image.sh` (no registry can be reached here). Built at
//! most once per source version, even with several test processes.

use std::fs::File;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bins::{profile_dir, workspace_root};
use crate::process::output_within;

/// Returns the test image's content-hash tag (`convoy-testapp:src-HASH`),
/// building it first if Docker does not have it.
pub fn ensure_test_image() -> String {
    static TAG: OnceLock<Result<String, String>> = OnceLock::new();
    match TAG.get_or_init(|| build().map_err(|e| format!("{e:#}"))) {
        Ok(tag) => tag.clone(),
        Err(e) => panic!("cannot build the test image: {e}"),
    }
}

fn build() -> Result<String> {
    // Other test processes may be building it right now: one at a time.
    let lock_path = profile_dir().join(".convoy-test-image.lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let root = workspace_root();
    let out = output_within(
        Command::new("bash")
            .arg(root.join("scripts/build-test-image.sh"))
            .current_dir(&root),
        Duration::from_secs(600),
    )?;
    let _ = lock.unlock();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tag = stdout.lines().last().unwrap_or("").trim().to_string();
    if !out.status.success() || !tag.contains(":src-") {
        bail!(
            "scripts/build-test-image.sh failed ({}):\n{}\n{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(tag)
}
