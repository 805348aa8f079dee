//! Plugin tasks at check time: finding the library a `plugin:` names, and validating the
//! task's `args` in a child (`nonstop plugin-host validate`), never in this process: loading a
//! plugin runs its code, and this process may become the supervisor.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a plugin's `validate` may take.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where plugins are looked for, in order: the pipeline's `plugin_dirs` (relative to its
/// directory), the directory of the `nonstop` executable, and `../lib/nonstop/plugins` from
/// there.
pub fn search_dirs(plugin_dirs: &[PathBuf], pipeline_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = plugin_dirs.iter().map(|d| pipeline_dir.join(d)).collect();
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(bin.join("../lib/nonstop/plugins"));
        dirs.insert(plugin_dirs.len(), bin);
    }
    // Each directory once, in its first place.
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.canonicalize().unwrap_or_else(|_| d.clone())));
    dirs
}

/// The library `name` names: a path if it has a `/` (relative to the pipeline's directory),
/// else `libNAME.so` or `libnonstop_NAME.so` in the first of `dirs` that has one.
pub fn locate(name: &str, dirs: &[PathBuf], pipeline_dir: &Path) -> Result<PathBuf, String> {
    if name.contains('/') {
        let path = pipeline_dir.join(name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "plugin file \"{name}\" does not exist (a path is taken from the pipeline's \
                 directory)"
            ))
        };
    }
    if name.is_empty() || name.contains('\0') {
        return Err(format!("{name:?} is not a plugin name"));
    }
    let files = [format!("lib{name}.so"), format!("libnonstop_{name}.so")];
    for dir in dirs {
        for file in &files {
            let path = dir.join(file);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "plugin \"{name}\" not found: no {} or {} in {}",
        files[0],
        files[1],
        looked.join(", ")
    ))
}

/// Why `validate` refused: the argument at fault (dotted, empty for the task) and why.
pub type Refusal = (String, String);

/// Runs the plugin's `validate` on `args` (JSON) in a child, in `cwd` (the task's, where it
/// will run: paths in its arguments are from there), if that is a directory.
pub fn validate(library: &Path, args: &str, cwd: &Path) -> Result<(), Refusal> {
    let whole = |why: String| (String::new(), why);
    let exe = std::env::current_exe()
        .map_err(|e| whole(format!("cannot find the nonstop executable: {e}")))?;
    let mut command = Command::new(exe);
    if cwd.is_dir() {
        command.current_dir(cwd);
    }
    let mut child = command
        .arg("plugin-host")
        .arg("validate")
        .arg(library)
        .arg(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| whole(format!("cannot start the plugin host: {e}")))?;
    let deadline = Instant::now() + VALIDATE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(whole(format!(
                    "{}: its validate did not return within {} s",
                    library.display(),
                    VALIDATE_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(whole(format!("cannot wait for the plugin host: {e}"))),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if status.success() && out.lines().any(|l| l == "ok") {
        return Ok(());
    }
    if let Some(line) = out.lines().find_map(|l| l.strip_prefix("error\t")) {
        let (at, message) = line.split_once('\t').unwrap_or(("", line));
        return Err((at.to_owned(), message.to_owned()));
    }
    let reason = err
        .lines()
        .map(|l| l.strip_prefix("nonstop plugin-host: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ");
    Err(whole(match nix_signal(&status) {
        Some(signal) => format!(
            "{}: the plugin crashed in validate ({signal}){}",
            library.display(),
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        ),
        None if reason.is_empty() => format!("{}: validate failed ({status})", library.display()),
        None => reason,
    }))
}

fn nix_signal(status: &std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    status.signal().map(|s| {
        nix::sys::signal::Signal::try_from(s)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|_| format!("signal {s}"))
    })
}
