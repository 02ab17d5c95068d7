//! Records build information for `wsrelay version`: the git commit (when the source is a git
//! checkout and `git` is installed; `unknown` otherwise), the target triple and the profile.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    if commit.is_some() {
        // Rebuild when HEAD moves: a commit or a checkout changes HEAD or the ref it names.
        for dir in [
            git(&["rev-parse", "--git-dir"]),
            git(&["rev-parse", "--git-common-dir"]),
        ]
        .into_iter()
        .flatten()
        {
            // Only paths that exist: a missing one would rerun this script on every build.
            for path in ["HEAD", "refs/heads", "packed-refs"] {
                let path = format!("{dir}/{path}");
                if std::path::Path::new(&path).exists() {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
        }
    }
    println!(
        "cargo:rustc-env=WSRELAY_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=WSRELAY_TARGET={}", var("TARGET"));
    println!("cargo:rustc-env=WSRELAY_PROFILE={}", var("PROFILE"));
}
