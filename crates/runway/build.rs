//! Stamps the git revision the binary is built from into `runway --version`
//! and the `runway_build_info` metric: `RUNWAY_REVISION` when the build sets
//! it (the container build, where there is no .git), else `git rev-parse`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RUNWAY_REVISION");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for watched in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        let path = root.join(watched);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let revision = std::env::var("RUNWAY_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| git_revision(&root))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RUNWAY_REVISION={}", revision.trim());
}

fn git_revision(root: &std::path::Path) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|r| !r.is_empty())
}
