//! `cargo xtask demo`: builds the runner and the example server, then runs
//! `examples/demo.yaml` in the foreground until Ctrl-C.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Result, bail};

use crate::{cargo, exec, root};

pub fn run() -> Result<()> {
    exec(cargo().args([
        "build",
        "-p",
        "nonstop-runner",
        "-p",
        "nonstop-supervisor",
        "--bins",
        "--example",
        "demo-server",
    ]))?;
    let root = root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    if target != root.join("target") {
        bail!(
            "examples/demo.yaml expects the default target directory ({}); unset CARGO_TARGET_DIR",
            root.join("target").display()
        );
    }
    eprintln!(
        "demo: running examples/demo.yaml; task logs in target/demo/logs/\n\
         demo: try `nc 127.0.0.1 5005` in another terminal; Ctrl-C stops every task"
    );
    // Replace this process, so that Ctrl-C goes to the runner itself.
    let err = Command::new(target.join("debug/nonstop"))
        .args(["run", "examples/demo.yaml"])
        .current_dir(&root)
        .exec();
    bail!("cannot start the runner: {err}")
}
