//! Locating the gateway and worker binaries from any test binary.
//!
//! `env!("CARGO_BIN_EXE_gateway")` exists only in the gateway package's own
//! tests, so the kit looks next to the running executable instead: a test
//! binary lives in `target/<profile>/deps/`, the `testkit` binary in
//! `target/<profile>/`, and the product binaries in `target/<profile>/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// `target/<profile>` of the running executable (`debug`, `release`, ...).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("executable has a directory").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir
    }
}

/// The binary `name` (`gateway` or `worker`) of this build's profile; built
/// with `cargo build -p gateway -p worker --bins` (`--release` in a release
/// build) when missing.
pub fn bin(name: &str) -> PathBuf {
    bin_in(&profile_dir(), name)
}

/// The binary `name` in `dir`; built there when missing and `dir` is this
/// build's own profile directory (another build's directory is only read).
pub fn bin_in(dir: &Path, name: &str) -> PathBuf {
    // One build at a time: parallel tests would otherwise all start cargo.
    static BUILD: Mutex<()> = Mutex::new(());
    let p = dir.join(name);
    if p.exists() {
        return p;
    }
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !p.exists() && dir == profile_dir() {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "gateway", "-p", "worker", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "{} is missing and `cargo build -p gateway -p worker --bins` failed", p.display());
    }
    assert!(p.exists(), "{} is missing: build with `cargo build -p gateway -p worker --bins`", p.display());
    p
}
