//! Where the binaries under test are: beside the test executable, in the
//! same target dir (`target/debug/deps/e2e-HASH` → `target/debug/convoyd`).

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The profile dir the test executable was built into, e.g. `target/debug`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe
        .parent()
        .expect("the test executable is in a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// The path of a workspace binary; panics with what to do when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "`{}` is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}
