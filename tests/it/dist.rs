//! `cargo xtask dist` and `cargo xtask install`: the tarball unpacks anywhere and runs the
//! demo from the unpacked tree; the installed unit passes `systemd-analyze verify`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{KillOnDrop, Runner, TestKey, pid_of};

const SECOND: Duration = Duration::from_secs(1);

/// `cargo xtask ARGS` in the dev profile (whose builds the test run has made).
fn xtask(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["run", "--quiet", "-p", "xtask", "--"])
        .args(args)
        .arg("--debug")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .status()
        .unwrap();
    assert!(status.success(), "cargo xtask {args:?} failed");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_tarball_unpacks_anywhere_and_runs_the_demo() {
    let out = tempfile::tempdir().unwrap();
    xtask(&["dist", "--out", out.path().to_str().unwrap()]);
    let tarball: PathBuf = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("no tarball");
    let name = tarball.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("nonstop-0."), "{name}");
    assert!(
        name.ends_with("-linux-gnu.tar.gz") || name.contains("linux"),
        "{name}"
    );
    // Somewhere else entirely.
    let elsewhere = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(elsewhere.path())
        .status()
        .unwrap();
    assert!(status.success());
    let tree = elsewhere.path().join(name.trim_end_matches(".tar.gz"));
    for file in [
        "bin/nonstop",
        "bin/nonstop-supervisor",
        "lib/nonstop/plugins/libnonstop_gzip.so",
        "lib/nonstop/plugins/libnonstop_purge.so",
        "lib/nonstop/plugins/libnonstop_sweep.so",
        "lib/systemd/system/nonstop.service",
        "share/man/man1/nonstop.1",
        "share/bash-completion/completions/nonstop",
        "share/zsh/site-functions/_nonstop",
        "share/fish/vendor_completions.d/nonstop.fish",
        "share/nonstop/examples/demo.yaml",
        "share/nonstop/examples/seed.yaml",
        "README.md",
    ] {
        assert!(tree.join(file).is_file(), "{file} is not in the tarball");
    }
    // Stripped: no symbol table.
    let syms = Command::new("nm")
        .arg(tree.join("bin/nonstop"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&syms.stderr).contains("no symbols"),
        "{}",
        String::from_utf8_lossy(&syms.stderr)
    );
    // The plugins unwind: a panic is caught by the SDK, not an abort of the task host
    // (`panic_unwind` imports `_Unwind_RaiseException`; xtask refuses a plugin without it).
    for plugin in ["gzip", "purge", "sweep"] {
        let file = tree.join(format!("lib/nonstop/plugins/libnonstop_{plugin}.so"));
        let syms = Command::new("nm")
            .args(["--dynamic", "--undefined-only"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&syms.stdout).contains("_Unwind_RaiseException"),
            "{} does not unwind",
            file.display()
        );
    }
    let nonstop = tree.join("bin/nonstop");
    // The plugins are found in lib/nonstop/plugins, and the seed's pipeline checks.
    let plugins = Command::new(&nonstop).arg("plugins").output().unwrap();
    let listed = String::from_utf8_lossy(&plugins.stdout);
    for plugin in ["gzip", "purge", "sweep"] {
        assert!(listed.contains(plugin), "{listed}");
    }
    let seed_dirs = tempfile::tempdir().unwrap();
    let seed = crate::harness::seed_example_in(
        &std::fs::read_to_string(tree.join("share/nonstop/examples/seed.yaml")).unwrap(),
        seed_dirs.path(),
    );
    let check = Command::new(&nonstop)
        .arg("check")
        .arg(&seed)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // The demo, from the tree, on this test's own key and port.
    let key = TestKey::new();
    let port = free_port().to_string();
    let demo = tree.join("share/nonstop/examples/demo.yaml");
    let text = std::fs::read_to_string(&demo)
        .unwrap()
        .replace("0x4e53", &key.key().to_string())
        .replace("5005", &port);
    std::fs::write(&demo, text).unwrap();
    let mut runner = Runner::spawn(
        Command::new(&nonstop)
            .arg("run")
            .arg(&demo)
            .env("NONSTOP_SOCKET", tree.join("nonstop.sock")),
    );
    let server = pid_of(&runner.wait_for(&["started", "task=server"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![server]);
    // Ready at its first beat and first healthy probe, in either order.
    runner.wait_for(&["ready: first", "task=server"], 10 * SECOND);
    runner.wait_for(&["run finished with status 0", "task=ingest"], 20 * SECOND);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok());
    assert!(runner.terminate(10 * SECOND).success());
    assert!(tree.join("share/nonstop/examples/logs/server.log").exists());
}

#[test]
fn install_lays_out_the_same_tree_and_a_unit_systemd_accepts() {
    let prefix = tempfile::tempdir().unwrap();
    xtask(&[
        "install",
        "--prefix",
        prefix.path().to_str().unwrap(),
        "--systemd",
    ]);
    for file in [
        "bin/nonstop",
        "bin/nonstop-supervisor",
        "lib/nonstop/plugins/libnonstop_gzip.so",
        "share/man/man1/nonstop.1",
    ] {
        assert!(
            prefix.path().join(file).is_file(),
            "{file} was not installed"
        );
    }
    let unit_path = prefix.path().join("lib/systemd/system/nonstop.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let bin = prefix.path().join("bin/nonstop");
    for line in [
        "Type=notify".to_owned(),
        "WatchdogSec=".to_owned(),
        "Restart=on-failure".to_owned(),
        "KillMode=mixed".to_owned(),
        "Delegate=yes".to_owned(),
        format!("ExecStart={} run /etc/nonstop/pipeline.yaml", bin.display()),
    ] {
        assert!(unit.contains(&line), "{line} not in:\n{unit}");
    }
    // systemd's own check, where it is installed: it exits 0 even on a bad line, so any word
    // from it is a failure.
    if let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit_path)
        .output()
    {
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.trim().is_empty(), "{said}");
    }
    // Installed again over itself (a running nonstop is replaced, not overwritten in place);
    // without --systemd, the unit is left as it was.
    std::fs::write(&unit_path, format!("{unit}# edited by the operator\n")).unwrap();
    xtask(&["install", "--prefix", prefix.path().to_str().unwrap()]);
    assert!(
        std::fs::read_to_string(&unit_path)
            .unwrap()
            .ends_with("# edited by the operator\n")
    );
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("nonstop 0."));
}
