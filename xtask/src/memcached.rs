//! Making sure a `memcached` binary is there for the tests.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `memcached` is looked for when neither `MEMCACHED_BIN` nor `PATH`
/// has it; the same order as the test harness (`memha-tests`).
const FALLBACK_BINARY: &str = "/usr/bin/memcached";

/// Returns the `memcached` binary the tests will use, installing it with
/// `apt-get` first when it is missing and we are root.
///
/// # Errors
///
/// A message for the user when it is missing and cannot be installed.
pub(crate) fn ensure_installed() -> Result<PathBuf, String> {
    if let Some(binary) = find()? {
        return Ok(binary);
    }
    if !is_root() {
        return Err(
            "memcached not found and not running as root: install it with \
             `sudo apt-get install memcached` (or set MEMCACHED_BIN to its path)"
                .to_owned(),
        );
    }
    eprintln!("memcached not found: installing it with apt-get");
    apt_get(&["update", "-qq"])?;
    apt_get(&["install", "-y", "-qq", "memcached"])?;
    find()?.ok_or_else(|| "apt-get installed memcached but it is still not found".to_owned())
}

/// The binary from `MEMCACHED_BIN`, else `memcached` on `PATH`, else
/// `/usr/bin/memcached`; `None` if there is none.
fn find() -> Result<Option<PathBuf>, String> {
    if let Some(explicit) = env::var_os("MEMCACHED_BIN").filter(|value| !value.is_empty()) {
        let explicit = PathBuf::from(explicit);
        return if explicit.is_file() {
            Ok(Some(explicit))
        } else {
            Err(format!(
                "MEMCACHED_BIN is set to {}, which is not a file",
                explicit.display()
            ))
        };
    }
    let on_path = env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join("memcached"))
        .chain([PathBuf::from(FALLBACK_BINARY)])
        .find(|candidate| is_executable(candidate));
    Ok(on_path)
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Whether we run as root (uid 0), asked from `id -u` to stay std-only.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

fn apt_get(args: &[&str]) -> Result<(), String> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|err| format!("could not run apt-get: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`apt-get {}` failed ({status})", args.join(" ")))
    }
}
