//! Where things are: the workspace root, the target directory and the cargo binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use xshell::Shell;

use crate::Result;

/// The workspace root, found from this crate's manifest directory (its parent).
///
/// `CARGO_MANIFEST_DIR` is baked in at compile time, so this works from any current directory.
pub fn root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// The cargo target directory: `CARGO_TARGET_DIR` when set, `<root>/target` otherwise.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                root().join(dir)
            }
        }
        _ => root().join("target"),
    }
}

/// The folder that holds every server's data directory and log.
pub fn servers_dir() -> PathBuf {
    target_dir().join("rkproxy-servers")
}

/// The path of the release rkproxy binary.
pub fn release_rkproxy() -> PathBuf {
    target_dir().join("release").join("rkproxy")
}

/// The cargo that is running us (cargo sets `CARGO` for `cargo run`), so that every cargo we
/// start uses the same toolchain; `cargo` from `PATH` otherwise.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// An xshell `Shell` whose commands start in the workspace root.
pub fn shell() -> Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(root());
    Ok(sh)
}

/// Shows a path relative to the workspace root when it is inside it, for shorter messages.
pub fn display(path: &Path) -> String {
    let root = root();
    match path.strip_prefix(&root) {
        Ok(relative) => relative.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}
