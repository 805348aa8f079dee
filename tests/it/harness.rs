//! The test harness: IPC keys that are unique and removed on drop (`TestKey`), child processes that are
//! killed and reaped on drop, line reading with deadlines, and C compilation.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use nonstop_ipc::testing::TestKey;

/// A child process with piped stdin/stdout; killed and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    pub fn spawn(command: &mut Command) -> Proc {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let lines = forward_lines(child.stdout.take().unwrap());
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines,
        }
    }

    /// The `test-helper` binary of this package with `args`.
    pub fn helper(args: &[&str]) -> Proc {
        Proc::spawn(Command::new(helper_path()).args(args))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line of output; panics after `timeout` or at end of output.
    pub fn line(&self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("pid {}: no output for {timeout:?}", self.pid())
            }
            Err(RecvTimeoutError::Disconnected) => panic!("pid {}: output ended", self.pid()),
        }
    }

    /// The next line of output if one came already.
    pub fn try_line(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }

    /// Sends SIGKILL without reaping: the child stays a zombie until `wait`.
    pub fn sigkill(&self) {
        kill(Pid::from_raw(self.pid()), Signal::SIGKILL).unwrap();
    }

    /// Waits for exit; panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "pid {} still runs after {timeout:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `test-helper` binary (`tests/src/bin/test-helper.rs`).
pub fn helper_path() -> &'static str {
    env!("CARGO_BIN_EXE_test-helper")
}

/// A thread that sends each line read from `reader` to the returned channel, until the end.
fn forward_lines(reader: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Compiles `tests/c/NAME.c` against `ipc/include` with `$CC` (default `cc`), once per test
/// run, and returns the executable.
pub fn c_program(name: &str) -> PathBuf {
    compile_c(name, name, &[])
}

/// Compiles `tests/c/NAME.c` as a shared library with `defines` (`-D` arguments), once per
/// test run and set of defines, and returns it (`lib{NAME}{variant}.so`).
pub fn c_library(name: &str, variant: &str, defines: &[&str]) -> PathBuf {
    let mut args = vec!["-shared", "-fPIC"];
    args.extend_from_slice(defines);
    compile_c(name, &format!("lib{name}{variant}.so"), &args)
}

/// `tests/c/NAME.c` compiled with `extra` arguments into `out` (a file name in the tests'
/// temporary target directory), once per test run for each `out`.
fn compile_c(name: &str, out: &str, extra: &[&str]) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(path) = built.get(out) {
        return path.clone();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(out);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-I"])
        .arg(root.join("../ipc/include"))
        .args(extra)
        .arg(root.join("c").join(format!("{name}.c")))
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(
        output.status.success(),
        "{cc} failed on {name}.c:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    built.insert(out.to_owned(), path.clone());
    path
}

/// The test plugin `tests/plugins/misbehave` (a cdylib).
pub fn misbehave_plugin() -> PathBuf {
    plugin_library("nonstop-test-misbehave", "libmisbehave.so")
}

/// The built-in plugin `plugins/sweep`.
pub fn sweep_plugin() -> PathBuf {
    plugin_library("nonstop-sweep", "libnonstop_sweep.so")
}

/// The built-in plugin `plugins/gzip`.
pub fn gzip_plugin() -> PathBuf {
    plugin_library("nonstop-gzip", "libnonstop_gzip.so")
}

/// The built-in plugin `plugins/purge`.
pub fn purge_plugin() -> PathBuf {
    plugin_library("nonstop-purge", "libnonstop_purge.so")
}

/// The test plugin built in the release profile, as `cargo build --release` and `cargo xtask
/// dist` build plugins (its panics must still be caught), whatever profile this test runs in.
pub fn misbehave_plugin_release() -> PathBuf {
    build_library("nonstop-test-misbehave", "libmisbehave.so", true)
}

/// The cdylib `file` of workspace package `package`, built once per test run by cargo, in the
/// profile of this test binary (`cargo test` does not promise other packages' cdylibs).
fn plugin_library(package: &str, file: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    build_library(
        package,
        file,
        profile_dir.file_name().is_some_and(|n| n == "release"),
    )
}

/// The cdylib `file` of workspace package `package`, built once per test run by cargo, in the
/// release profile or else in this test binary's, in this test binary's target directory.
fn build_library(package: &str, file: &str, release: bool) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(path) = built.get(&(package.to_owned(), release)) {
        return path.clone();
    }
    // This test binary is TARGET/PROFILE/deps/it-HASH.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--lib", "-p", package])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    if release {
        build.arg("--release");
    }
    assert!(
        build.status().unwrap().success(),
        "building {package} failed"
    );
    let path = if release {
        profile_dir.parent().unwrap().join("release").join(file)
    } else {
        profile_dir.join(file)
    };
    built.insert((package.to_owned(), release), path.clone());
    path
}

/// The `nonstop` binary, built once per test run by the cargo running the tests, in the same
/// profile (only the runner's own tests get `CARGO_BIN_EXE_nonstop`), with
/// `nonstop-supervisor` beside it.
pub fn nonstop() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // This test binary is target/PROFILE/deps/it-HASH.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "nonstop-runner",
                "-p",
                "nonstop-supervisor",
                "--bins",
            ])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cannot run cargo to build nonstop");
        assert!(status.success(), "building nonstop failed");
        profile_dir.join("nonstop")
    })
    .clone()
}

/// The `nonstop` and `nonstop-supervisor` binaries of [`nonstop`] in a fresh directory that
/// every user can reach, for tests that run them as another user: the build's own are in the
/// clone's `target/`, which another user cannot reach from a private clone (`/root/...`, a
/// `mktemp -d` directory, mode 0700). Hard links where the files allow it, else copies.
/// Removed on drop.
#[derive(Debug)]
pub struct PublicBinaries {
    dir: tempfile::TempDir,
}

impl PublicBinaries {
    #[allow(clippy::new_without_default)]
    pub fn new() -> PublicBinaries {
        use std::os::unix::fs::PermissionsExt;
        // A base every user can search: each directory from the root down has o+x.
        let searchable = |dir: &Path| {
            dir.ancestors().all(|d| {
                std::fs::metadata(d)
                    .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
            })
        };
        let base = [std::env::temp_dir(), PathBuf::from("/tmp")]
            .into_iter()
            .find(|d| searchable(d))
            .expect("neither $TMPDIR nor /tmp can be searched by every user");
        let dir = tempfile::Builder::new()
            .prefix("nonstop-bin-")
            .tempdir_in(&base)
            .unwrap();
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let nonstop = nonstop();
        let helper = PathBuf::from(helper_path());
        for from in [
            nonstop.with_file_name("nonstop"),
            nonstop.with_file_name("nonstop-supervisor"),
            helper,
        ] {
            let to = dir.path().join(from.file_name().unwrap());
            let mode = std::fs::metadata(&from).unwrap().permissions().mode();
            if mode & 0o001 == 0 || std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).unwrap();
                std::fs::set_permissions(&to, PermissionsExt::from_mode(0o755)).unwrap();
            }
        }
        PublicBinaries { dir }
    }

    /// `nonstop` in it (`nonstop-supervisor` beside it).
    pub fn nonstop(&self) -> PathBuf {
        self.dir.path().join("nonstop")
    }

    /// The `test-helper` binary in it.
    pub fn helper(&self) -> PathBuf {
        self.dir.path().join("test-helper")
    }
}

/// A pipeline file in a temporary directory of its own (logs go to its `logs/`).
#[derive(Debug)]
pub struct PipelineDir {
    pub dir: tempfile::TempDir,
}

impl PipelineDir {
    pub fn new(yaml: &str) -> PipelineDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.yaml"), yaml).unwrap();
        PipelineDir { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pipeline.yaml")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name` in this directory, mode 0755.
    pub fn executable(&self, name: &str, contents: &str) {
        let path = self.file(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }

    /// The numbers a task wrote to `file` in this directory, one per line.
    pub fn numbers<T: std::str::FromStr>(&self, file: &str) -> Vec<T> {
        std::fs::read_to_string(self.file(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn log(&self, task: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{task}.log")))
            .unwrap_or_default()
    }
}

/// `nonstop run` on a pipeline, its log (stderr) read line by line; killed on drop, which
/// kills its tasks too (they die with the runner).
#[derive(Debug)]
pub struct Runner {
    pub proc: Proc,
    /// Every line logged so far.
    pub seen: Vec<String>,
    /// Which of them a `wait_for` already returned.
    claimed: Vec<bool>,
}

impl Runner {
    pub fn start(pipeline: &PipelineDir) -> Runner {
        Runner::spawn(Command::new(nonstop()).arg("run").arg(pipeline.path()))
    }

    /// A runner started some other way: `command` must end up as `nonstop run` itself (e.g.
    /// through `exec`). Its stdin is `/dev/null`; its stdout and stderr are the log.
    pub fn spawn(command: &mut Command) -> Runner {
        with_socket(command);
        let (reader, writer) = std::io::pipe().unwrap();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(writer.try_clone().unwrap())
            .stderr(writer)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let lines = forward_lines(reader);
        let stdin = child.stdin.take();
        Runner {
            proc: Proc {
                child,
                stdin,
                lines,
            },
            seen: Vec::new(),
            claimed: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// The first line not returned before that contains every word of `needles`, waiting
    /// for more log lines as needed; each line is returned once, so waiting for the same words
    /// again waits for the next such line.
    pub fn wait_for(&mut self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let matches = |line: &str| needles.iter().all(|n| line.contains(n));
        let mut i = 0;
        loop {
            while i < self.seen.len() {
                if !self.claimed[i] && matches(&self.seen[i]) {
                    self.claimed[i] = true;
                    return self.seen[i].clone();
                }
                i += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.proc.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line);
                    self.claimed.push(false);
                }
                Err(_) => panic!(
                    "no log line with {needles:?} within {timeout:?}; the log so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every line logged so far (without waiting).
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.proc.lines.try_recv() {
            self.seen.push(line);
            self.claimed.push(false);
        }
        &self.seen
    }

    /// Waits for the runner to exit, then for the rest of its log: the lines it wrote last
    /// may still be on their way through the pipe and the reading thread.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let status = self.proc.wait(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.proc.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line);
                    self.claimed.push(false);
                }
                // End of the log: every writer is gone.
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "the runner exited ({status}) but its log did not end within {timeout:?}"
                ),
            }
        }
        status
    }

    /// SIGTERM, then waits for the runner to exit and for the end of its log.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        kill(Pid::from_raw(self.pid()), Signal::SIGTERM).unwrap();
        self.wait(timeout)
    }
}

/// The number after `pid=` in a runner log line.
pub fn pid_of(line: &str) -> i32 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid= in {line:?}"))
}

/// Whether a process with this pid exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Children of `parent` that are zombies right now.
pub fn zombie_children(parent: i32) -> Vec<i32> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&parent.to_string().as_str()) {
            zombies.push(pid);
        }
    }
    zombies
}

/// SIGKILLs the process groups of these pids (each leads its own) if they are still alive when
/// dropped: processes a test started through the runner, so that a failing test leaves
/// nothing behind.
#[derive(Debug, Default)]
pub struct KillOnDrop(pub Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// The pid in `file` of the pipeline directory (the first line), once it is there.
pub fn pid_in(p: &PipelineDir, file: &str) -> i32 {
    assert!(
        wait_until(Duration::from_secs(10), || !p
            .numbers::<i32>(file)
            .is_empty()),
        "no pid in {file}"
    );
    p.numbers::<i32>(file)[0]
}

/// The live children of `pid` named `comm`.
pub fn children_named(pid: i32, comm: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            let name = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if name.trim_end() == comm && alive(child) {
                found.push(child);
            }
        }
    }
    found
}

/// Gives a `nonstop run FILE` command its own control socket, `logs/nonstop.sock` beside
/// FILE (removed with the test's directory), unless it names one: tests run runners in
/// parallel, and the default socket is one per machine.
pub fn with_socket(command: &mut Command) {
    if command.get_envs().any(|(k, _)| k == "NONSTOP_SOCKET") {
        return;
    }
    let args: Vec<&std::ffi::OsStr> = command.get_args().collect();
    let Some(file) = args
        .iter()
        .position(|a| *a == "run")
        .and_then(|i| args.get(i + 1))
    else {
        return;
    };
    let dir = Path::new(file).parent().unwrap_or(Path::new("."));
    let socket = dir.join("logs/nonstop.sock");
    command.env("NONSTOP_SOCKET", socket);
}

/// `nonstop ARGS` against the runner of `p`, through the control socket [`Runner::spawn`]
/// gave it (`logs/nonstop.sock`).
pub fn ctl(p: &PipelineDir, args: &[&str]) -> std::process::Output {
    Command::new(nonstop())
        .args(args)
        .env("NONSTOP_SOCKET", p.file("logs/nonstop.sock"))
        .output()
        .unwrap()
}

/// [`ctl`] that must succeed: its stdout.
pub fn ctl_ok(p: &PipelineDir, args: &[&str]) -> String {
    let out = ctl(p, args);
    assert!(
        out.status.success(),
        "nonstop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `seed.yaml` (the text of `examples/seed.yaml`) with its directories, all under
/// `/tmp/nonstop-seed`, moved into `dir` and made (its gzip and purge tasks refuse a `dir`
/// that does not exist): returns the copy's path in `dir`.
pub fn seed_example_in(seed: &str, dir: &Path) -> PathBuf {
    let root = "/tmp/nonstop-seed";
    assert!(
        seed.contains(root),
        "examples/seed.yaml no longer uses {root}"
    );
    for sub in ["log/idc", "surfdata"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let copy = dir.join("seed.yaml");
    std::fs::write(&copy, seed.replace(root, &dir.display().to_string())).unwrap();
    copy
}

/// `nonstop check FILE`, which must succeed: its stdout (one line per task).
pub fn check_ok(file: &Path) -> String {
    let out = Command::new(nonstop())
        .arg("check")
        .arg(file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nonstop check {}: {stdout}{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A heartbeat table of 4 slots at `key` in which a `sleep 1000` registered itself (timeout
/// 10 ms) and never beats: a hung service for a sweep to find. The table is removed with the
/// key; the process is killed on drop.
pub fn table_with_a_silent_service(key: &TestKey) -> (nonstop_ipc::HeartbeatTable, Proc) {
    let table = nonstop_ipc::HeartbeatTable::open_or_create(
        key.key(),
        &nonstop_ipc::TableOptions {
            slots: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let silent = Proc::spawn(Command::new("sleep").arg("1000"));
    let id = nonstop_ipc::ProcessId::of(silent.pid()).unwrap().unwrap();
    table
        .register_process(id, "silent", Duration::from_millis(10))
        .unwrap();
    (table, silent)
}
