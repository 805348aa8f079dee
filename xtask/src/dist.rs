//! `cargo xtask dist` and `cargo xtask install`: one layout, in a tarball or in a prefix.
//!
//! ```text
//! bin/nonstop, bin/nonstop-supervisor              stripped
//! lib/nonstop/plugins/libnonstop_{gzip,purge,sweep}.so   stripped; their panics unwind
//! lib/nonstop/demo-server                          the demo's resident server
//! lib/systemd/system/nonstop.service               Type=notify, WatchdogSec, Delegate=yes
//! share/man/man1/nonstop.1                         `nonstop manpage`
//! share/bash-completion/completions/nonstop, share/zsh/site-functions/_nonstop,
//! share/fish/vendor_completions.d/nonstop.fish     `nonstop completions SHELL`
//! share/nonstop/examples/{demo,seed}.yaml          demo.yaml runs from the unpacked tree
//! share/doc/nonstop/                               README.md and docs/
//! README.md
//! ```
//!
//! `dist` writes it under `target/dist/nonstop-VERSION-TARGET/` and packs that directory into
//! `target/dist/nonstop-VERSION-TARGET.tar.gz` (tar and flate2). `install` writes it into a
//! prefix (`/usr/local`), each file through a temporary name and a rename, so a running
//! `nonstop` is never overwritten in place.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, exec, root};

/// The built-in plugins (package, library file).
const PLUGINS: &[(&str, &str)] = &[
    ("nonstop-gzip", "libnonstop_gzip.so"),
    ("nonstop-purge", "libnonstop_purge.so"),
    ("nonstop-sweep", "libnonstop_sweep.so"),
];

/// The unit, with `@BINDIR@` to fill in.
const UNIT: &str = include_str!("nonstop.service");

/// Options shared by `dist` and `install`.
pub struct Options {
    /// Build in the dev profile instead of release (the tests use it: the builds exist).
    pub debug: bool,
}

/// `cargo xtask dist [--debug] [--out DIR]`: returns the tarball.
pub fn dist(options: &Options, out: Option<&Path>) -> Result<PathBuf> {
    let built = build(options)?;
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("nonstop-{version}-{}", host_target()?);
    let out = out.map_or_else(|| built.target.join("dist"), Path::to_path_buf);
    let tree = out.join(&name);
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("cannot empty {}", tree.display()))?;
    }
    // Where the unit expects the binaries: a tarball is unpacked under /usr/local or /opt/...;
    // docs/boot.md says to fix ExecStart when it is unpacked elsewhere.
    lay_out(&built, &tree, Some(Path::new("/usr/local/bin")))?;
    let tarball = out.join(format!("{name}.tar.gz"));
    pack(&tree, &name, &tarball)?;
    eprintln!("xtask: wrote {}", tarball.display());
    Ok(tarball)
}

/// `cargo xtask install [--debug] [--prefix P] [--systemd]`.
pub fn install(options: &Options, prefix: &Path, systemd: bool) -> Result<()> {
    let built = build(options)?;
    let prefix = if prefix.is_absolute() {
        prefix.to_path_buf()
    } else {
        std::env::current_dir()?.join(prefix)
    };
    // Without --systemd, a unit installed before is left as it is.
    let bindir = prefix.join("bin");
    lay_out(&built, &prefix, systemd.then_some(bindir.as_path()))?;
    let unit = prefix.join("lib/systemd/system/nonstop.service");
    if !systemd {
        eprintln!("xtask: installed into {}", prefix.display());
        return Ok(());
    }
    eprintln!(
        "xtask: installed into {}; the unit is {}",
        prefix.display(),
        unit.display()
    );
    let system = Path::new("/run/systemd/system").exists();
    let standard = ["/usr", "/usr/local"]
        .iter()
        .any(|p| prefix == Path::new(p));
    if system && standard {
        exec(Command::new("systemctl").arg("daemon-reload"))?;
        eprintln!("xtask: write /etc/nonstop/pipeline.yaml, then: systemctl enable --now nonstop");
    } else {
        eprintln!(
            "xtask: link or copy it into /etc/systemd/system (or use --prefix /usr/local), then \
             systemctl daemon-reload && systemctl enable --now nonstop"
        );
    }
    Ok(())
}

/// What the build made, and where.
struct Built {
    /// The profile's directory (`target/release`, `target/debug`).
    profile: PathBuf,
    /// The target directory.
    target: PathBuf,
}

fn build(options: &Options) -> Result<Built> {
    let mut build = crate::demo::build_demo();
    if !options.debug {
        build.arg("--release");
    }
    exec(&mut build)?;
    let mut plugins = cargo();
    plugins.args(["build", "--lib"]);
    for (package, _) in PLUGINS {
        plugins.args(["-p", package]);
    }
    if !options.debug {
        plugins.arg("--release");
    }
    exec(&mut plugins)?;
    let target = crate::demo::target_dir()?;
    let profile = target.join(if options.debug { "debug" } else { "release" });
    Ok(Built { profile, target })
}

/// Writes the layout into `tree`, with the unit if `bindir` is given (it runs
/// `BINDIR/nonstop`).
fn lay_out(built: &Built, tree: &Path, bindir: Option<&Path>) -> Result<()> {
    let p = &built.profile;
    for bin in ["nonstop", "nonstop-supervisor"] {
        put_stripped(&p.join(bin), &tree.join("bin").join(bin), 0o755)?;
    }
    for (_, file) in PLUGINS {
        unwinds(&p.join(file))?;
        put_stripped(
            &p.join(file),
            &tree.join("lib/nonstop/plugins").join(file),
            0o755,
        )?;
    }
    put_stripped(
        &p.join("examples/demo-server"),
        &tree.join("lib/nonstop/demo-server"),
        0o755,
    )?;
    let nonstop = p.join("nonstop");
    let output = |args: &[&str]| -> Result<Vec<u8>> {
        let out = Command::new(&nonstop)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", nonstop.display()))?;
        if !out.status.success() {
            bail!("nonstop {args:?} failed");
        }
        Ok(out.stdout)
    };
    write(
        &tree.join("share/man/man1/nonstop.1"),
        &output(&["manpage"])?,
        0o644,
    )?;
    for (shell, path) in [
        ("bash", "share/bash-completion/completions/nonstop"),
        ("zsh", "share/zsh/site-functions/_nonstop"),
        ("fish", "share/fish/vendor_completions.d/nonstop.fish"),
    ] {
        write(&tree.join(path), &output(&["completions", shell])?, 0o644)?;
    }
    if let Some(bindir) = bindir {
        let unit = UNIT.replace("@BINDIR@", &bindir.display().to_string());
        write(
            &tree.join("lib/systemd/system/nonstop.service"),
            unit.as_bytes(),
            0o644,
        )?;
    }
    let root = root();
    let demo = fs::read_to_string(root.join("examples/demo.yaml"))?;
    write(
        &tree.join("share/nonstop/examples/demo.yaml"),
        demo_for_the_tree(&demo)?.as_bytes(),
        0o644,
    )?;
    let seed = fs::read(root.join("examples/seed.yaml"))?;
    write(&tree.join("share/nonstop/examples/seed.yaml"), &seed, 0o644)?;
    let readme = fs::read(root.join("README.md"))?;
    write(&tree.join("README.md"), &readme, 0o644)?;
    write(&tree.join("share/doc/nonstop/README.md"), &readme, 0o644)?;
    for entry in fs::read_dir(root.join("docs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().unwrap_or_default();
            write(
                &tree.join("share/doc/nonstop/docs").join(name),
                &fs::read(&path)?,
                0o644,
            )?;
        }
    }
    Ok(())
}

/// `examples/demo.yaml` with its paths pointed into the tree, relative to
/// `share/nonstop/examples/`: the binaries in `bin/` and `lib/nonstop/`, the logs beside it.
fn demo_for_the_tree(text: &str) -> Result<String> {
    let out = text
        .replace("../target/debug/examples/demo-server", "../../../lib/nonstop/demo-server")
        .replace("../target/debug/nonstop", "../../../bin/nonstop")
        .replace("../target/demo/logs", "logs")
        .replace(
            "Run it with\n# `cargo xtask demo` (it builds the runner and the example server first)",
            "Run it with\n# `bin/nonstop run share/nonstop/examples/demo.yaml` from the unpacked tree",
        );
    if out.contains("../target/") {
        bail!("examples/demo.yaml has a ../target/ path dist does not know how to point");
    }
    Ok(out)
}

/// Refuses a plugin built with `panic = "abort"`: the SDK catches a plugin's panic and reports it
/// as the task's failure only if the panic unwinds; an aborting plugin takes its task host down
/// with SIGABRT. `panic_unwind`, the runtime linked when panics unwind, is what imports
/// `_Unwind_RaiseException`; `panic_abort` does not.
fn unwinds(plugin: &Path) -> Result<()> {
    let out = Command::new("nm")
        .args(["--dynamic", "--undefined-only"])
        .arg(plugin)
        .output()
        .context("cannot run nm (binutils)")?;
    if !out.status.success() {
        bail!(
            "nm {} failed: {}",
            plugin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|s| s.starts_with("_Unwind_RaiseException"))
    {
        bail!(
            "{} was built with panic = \"abort\": its panics would kill the task host instead \
             of failing the task (the release profile must unwind)",
            plugin.display()
        );
    }
    Ok(())
}

/// Copies `from` to `to` (through a temporary name and a rename), stripped of symbols.
fn put_stripped(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let tmp = temporary(to)?;
    fs::copy(from, &tmp).with_context(|| format!("cannot copy {}", from.display()))?;
    let status = Command::new("strip")
        .arg("--strip-unneeded")
        .arg(&tmp)
        .status()
        .context("cannot run strip (binutils)")?;
    if !status.success() {
        bail!("strip {} failed", tmp.display());
    }
    finish(&tmp, to, mode)
}

/// Writes `data` to `to` through a temporary name and a rename.
fn write(to: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = temporary(to)?;
    fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    finish(&tmp, to, mode)
}

fn temporary(to: &Path) -> Result<PathBuf> {
    let dir = to.parent().context("a path with no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut name = to.file_name().unwrap_or_default().to_owned();
    name.push(".xtask-tmp");
    Ok(dir.join(name))
}

fn finish(tmp: &Path, to: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(tmp, to).with_context(|| format!("cannot install {}", to.display()))
}

/// `tree` packed as `name/...` into a gzipped tar at `tarball`.
fn pack(tree: &Path, name: &str, tarball: &Path) -> Result<()> {
    let tmp = temporary(tarball)?;
    let file =
        fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    tar.append_dir_all(name, tree)
        .with_context(|| format!("cannot pack {}", tree.display()))?;
    let file = tar.into_inner()?.finish()?;
    file.sync_all()?;
    finish(&tmp, tarball, 0o644)
}

/// The host's target triple (`rustc -vV`).
fn host_target() -> Result<String> {
    let out = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}
