//! `cargo xtask demo`: builds the runner and the example server, then runs
//! `examples/demo.yaml` in the foreground until Ctrl-C. Works wherever cargo puts its builds
//! (`CARGO_TARGET_DIR`, `build.target-dir`): the pipeline's `../target/` paths are pointed at
//! the real target directory in a copy under it.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::{cargo, exec, root};

pub fn run() -> Result<()> {
    exec(&mut build_demo())?;
    let target = target_dir()?;
    let demo = target.join("demo");
    std::fs::create_dir_all(&demo).with_context(|| format!("cannot create {}", demo.display()))?;
    let text = std::fs::read_to_string(root().join("examples/demo.yaml"))
        .context("cannot read examples/demo.yaml")?;
    let pipeline = demo.join("demo.yaml");
    std::fs::write(&pipeline, pointed_at(&text, &target))
        .with_context(|| format!("cannot write {}", pipeline.display()))?;
    eprintln!(
        "demo: running examples/demo.yaml (as {}); task logs in {}\n\
         demo: try `nc 127.0.0.1 5005` in another terminal; Ctrl-C stops every task",
        pipeline.display(),
        demo.join("logs").display()
    );
    // Replace this process, so that Ctrl-C goes to the runner itself.
    let err = std::process::Command::new(target.join("debug/nonstop"))
        .arg("run")
        .arg(&pipeline)
        .current_dir(root())
        .exec();
    bail!("cannot start the runner: {err}")
}

/// `cargo build` of what the demo runs: both binaries and the example server (in the dev
/// profile; `--release` may be added).
pub(crate) fn build_demo() -> std::process::Command {
    let mut build = cargo();
    build.args([
        "build",
        "-p",
        "nonstop-runner",
        "-p",
        "nonstop-supervisor",
        "--bins",
        "--example",
        "demo-server",
    ]);
    build
}

/// `examples/demo.yaml` with its `../target/` paths (relative to `examples/`) made absolute
/// paths into `target`.
fn pointed_at(text: &str, target: &std::path::Path) -> String {
    text.replace("../target/", &format!("{}/", target.display()))
}

/// Where cargo puts builds, as `cargo metadata` says (it knows `CARGO_TARGET_DIR` and
/// `build.target-dir`).
pub(crate) fn target_dir() -> Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    json_string(&String::from_utf8_lossy(&out.stdout), "target_directory")
        .map(PathBuf::from)
        .context("cargo metadata names no target_directory")
}

/// The string value of `"key":"..."` in a JSON text (escapes undone; enough for a path).
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_directory_is_read_from_cargo_metadata_json() {
        let json = r#"{"packages":[],"target_directory":"/srv/build/my \"t\"","version":1}"#;
        assert_eq!(
            json_string(json, "target_directory").as_deref(),
            Some("/srv/build/my \"t\"")
        );
        assert_eq!(json_string(json, "workspace_root"), None);
    }

    #[test]
    fn the_demo_pipeline_points_into_the_target_directory() {
        let text =
            "logs:\n  dir: ../target/demo/logs\ncommand: [../target/debug/examples/demo-server]\n";
        assert_eq!(
            pointed_at(text, std::path::Path::new("/tmp/t")),
            "logs:\n  dir: /tmp/t/demo/logs\ncommand: [/tmp/t/debug/examples/demo-server]\n"
        );
    }
}
