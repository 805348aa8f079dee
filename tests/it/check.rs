//! `nonstop check`: one line per task for a good pipeline; for every file in
//! `tests/fixtures/bad/`, exactly the errors its `# error:` lines expect, with file:line:column.

use std::path::Path;
use std::process::Command;

use crate::harness::{PipelineDir, PublicBinaries, Runner, check_ok, nonstop};

const SECOND: std::time::Duration = std::time::Duration::from_secs(1);

#[test]
fn a_good_pipeline_gets_one_line_per_task_and_exit_0() {
    let p = PipelineDir::new(
        "\
heartbeat: { key: 0x7e4e5300, slots: 64 }
logs: { max_size: 1M, keep: 3, compress: true }
tasks:
  server:
    command: [/bin/sleep, \"1000\"]
    backoff: { initial: 0ms, max: 5s }
  compress:
    every: 5m
    timeout: 1m
    command: [/bin/true]
    after: [server]
  purge:
    cron: \"0 3 * * *\"
    timezone: UTC
    command: [\"true\"]
    env: { PATH: /usr/bin }
",
    );
    let stdout = check_ok(&p.path());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "server    resident, restart always, backoff 0ms..5s: /bin/sleep 1000",
            "compress  periodic, every 5m, timeout 1m, after server: /bin/true",
            "purge     periodic, cron \"0 3 * * *\" (UTC): /usr/bin/true",
        ]
    );
}

#[test]
fn every_bad_pipeline_gets_its_exact_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# error: "))
            .collect();
        assert!(!expected.is_empty(), "{name} has no `# error:` line");
        let out = Command::new(nonstop())
            .arg("check")
            .arg(&name)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: exit status");
        assert!(out.stdout.is_empty(), "{name}: printed a task summary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut got: Vec<&str> = stderr.lines().collect();
        let summary = got.pop().unwrap_or_default();
        let count = expected.len();
        let plural = if count == 1 { "" } else { "s" };
        assert_eq!(summary, format!("{name}: {count} error{plural}"));
        assert_eq!(got, expected, "{name}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures");
}

#[test]
fn run_refuses_a_bad_pipeline_with_the_same_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad");
    let out = Command::new(nonstop())
        .args(["run", "unknown_variant.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "unknown_variant.yaml:6:14: tasks.server.restart: unknown variant \"allways\""
        ),
        "{stderr}"
    );
}

/// `command` run to its end, killed if it has not ended within a minute (then the test
/// fails): its exit code and stderr.
fn within_a_minute(command: &mut Command) -> (Option<i32>, String) {
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = crate::harness::wait_until(std::time::Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} still ran after a minute: it blocked");
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Only a regular file is read as a pipeline: a device that never ends (`/dev/zero`), a
/// directory, and a FIFO, which would block `check` (and `run`) for ever waiting for a writer,
/// are refused at once, each said as what it is.
#[test]
fn anything_but_a_regular_file_is_refused_at_once_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let refused = |what: &str| {
        format!(
            "the pipeline is {what}: it must be a regular file (a pipe or a device could block \
             the reader or never end)"
        )
    };
    for command in ["check", "run"] {
        let (code, err) = within_a_minute(Command::new(nonstop()).arg(command).arg(&fifo));
        assert_eq!(code, Some(1), "{command}: {err}");
        assert_eq!(
            err,
            format!(
                "{}:1:1: {}\n{}",
                fifo.display(),
                refused("a FIFO (named pipe)"),
                if command == "check" {
                    format!("{}: 1 error\n", fifo.display())
                } else {
                    String::new()
                }
            ),
            "{command}"
        );
    }
    let (code, err) = within_a_minute(Command::new(nonstop()).args(["check", "/dev/zero"]));
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "/dev/zero:1:1: {}\n/dev/zero: 1 error\n",
            refused("a character device")
        )
    );
    let (code, err) = within_a_minute(Command::new(nonstop()).arg("check").arg(dir.path()));
    assert_eq!(code, Some(1));
    assert!(err.contains(&refused("a directory")), "{err}");
    let socket = dir.path().join("s.yaml");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (code, err) = within_a_minute(Command::new(nonstop()).arg("check").arg(&socket));
    assert_eq!(code, Some(1));
    assert!(err.contains(&refused("a socket")), "{err}");
}

/// What `check` lists of a task (its program and arguments) is shown on one line of printable
/// text: an argument holding an escape sequence, a bell or a newline shows them escaped, so it
/// can neither drive the terminal nor pass for another task's line.
#[test]
fn the_listing_of_check_shows_control_characters_escaped() {
    let p = PipelineDir::new(
        "tasks:\n  web:\n    command: [sh, -c, \"exit 1\", \"\\e[31mRED\\e]0;title\\a\", \"line1\\nFAKE  resident, restart always: /bin/evil\"]\n",
    );
    let stdout = check_ok(&p.path());
    assert_eq!(
        stdout,
        "web  resident, restart always, backoff 100ms..30s: /usr/bin/sh -c 'exit 1' \
         '\\u{1b}[31mRED\\u{1b}]0;title\\u{7}' 'line1\\nFAKE  resident, restart always: /bin/evil'\n"
            .replace("/usr/bin/sh", &which_sh()),
    );
}

/// Where `sh` is found in `PATH`, as `check` resolves it.
fn which_sh() -> String {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("sh"))
        .find(|p| p.exists())
        .unwrap()
        .display()
        .to_string()
}

/// Each argument and variable must fit what execve takes (a string of at most 128 KiB with
/// its NUL), and all of them a quarter of the stack limit: else every start would fail with
/// "Argument list too long", so `check` refuses them, with the numbers, at the field.
#[test]
fn arguments_and_variables_execve_would_refuse_are_refused_at_the_field() {
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK).unwrap();
    let long = "x".repeat(140_000);
    let part = "y".repeat(100_000);
    let hard = if hard == u64::MAX {
        "unlimited".to_owned()
    } else {
        hard.to_string()
    };
    let p = PipelineDir::new(&format!(
        "tasks:\n  one:\n    command: [/bin/true, \"{long}\"]\n    env: {{ BIG: \"{long}\" }}\n  \
         all:\n    command: [/bin/true, \"{part}\", \"{part}\", \"{part}\"]\n    clear_env: true\n    \
         limits: {{ stack: {{ soft: 1048576, hard: {hard} }} }}\n"
    ));
    let out = Command::new(nonstop())
        .args(["check", "pipeline.yaml"])
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    let too_long = "bytes long, but execve takes a string of at most 131071 bytes (MAX_ARG_STRLEN, \
                    128 KiB with its NUL): every start would fail with \"Argument list too long\"";
    assert_eq!(
        lines[0],
        format!("pipeline.yaml:3:26: tasks.one.command[1]: this argument is 140000 {too_long}")
    );
    assert_eq!(
        lines[1],
        format!("pipeline.yaml:4:17: tasks.one.env.BIG: BIG=VALUE is 140004 {too_long}")
    );
    assert!(
        lines[2].starts_with(
            "pipeline.yaml:6:5: tasks.all.command: the command and the environment come to 30"
        ),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].ends_with(
            "but execve takes at most 262144 here: a quarter of the stack limit (1048576 \
             bytes), at least 131072 and at most 6291456 (`getconf ARG_MAX`); every start would \
             fail with \"Argument list too long\""
        ),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "pipeline.yaml: 3 errors");
}

#[test]
fn a_hard_limit_above_the_users_own_needs_cap_sys_resource() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::getuid().is_root() {
        return;
    }
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if hard >= nr_open {
        return;
    }
    let asked = hard + 1;
    let p = PipelineDir::new(&format!(
        "tasks:\n  server:\n    command: [/bin/sleep, \"100\"]\n    limits: {{ nofile: {asked} }}\n"
    ));
    std::fs::set_permissions(
        p.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    // Root may raise it if it has CAP_SYS_RESOURCE (a container's root may not: then check
    // says so for root too).
    let cap_sys_resource = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap() & (1 << 24) != 0)
        .unwrap();
    let root = Command::new(nonstop())
        .arg("check")
        .arg(p.path())
        .output()
        .unwrap();
    assert_eq!(
        root.status.success(),
        cap_sys_resource,
        "{}",
        String::from_utf8_lossy(&root.stderr)
    );
    // nobody, with the same hard limit and no capability, may not (running a copy it can
    // reach: this clone may be private).
    let public = PublicBinaries::new();
    let nobody = Command::new(public.nonstop())
        .arg("check")
        .arg(p.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    let err = String::from_utf8_lossy(&nobody.stderr);
    assert!(
        err.contains(&format!(
            "pipeline.yaml:4:23: tasks.server.limits.nofile: a hard limit of {asked} is above this process's own ({hard}), and raising a hard limit needs root (CAP_SYS_RESOURCE)"
        )),
        "{err}"
    );
}

/// A task's `user:` must be able to execute its program: every directory on the way, the
/// file, and for a script reading it too. Checked on the files' modes and owners, for the
/// user's ids, whoever runs `check` (root may reach them all).
#[test]
fn a_program_the_tasks_user_cannot_execute_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .is_none()
    {
        return;
    }
    let p = PipelineDir::new("tasks:\n  job:\n    command: [./bin/job]\n    user: nobody\n");
    std::fs::create_dir(p.file("bin")).unwrap();
    p.executable("bin/job", "#!/bin/sh\nexit 0\n");
    let mode = |path: &str, mode: u32| {
        std::fs::set_permissions(p.file(path), PermissionsExt::from_mode(mode)).unwrap();
    };
    let check = || {
        let out = Command::new(nonstop())
            .arg("check")
            .arg(p.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let refused = |why: &str| {
        let (code, err) = check();
        assert_eq!(code, Some(1), "{err}");
        let line = format!(
            "{}:3:15: tasks.job.command[0]: user nobody cannot execute program \"./bin/job\": \
             {why}\n",
            p.path().display()
        );
        assert!(err.starts_with(&line), "expected {line}\n got {err}");
    };
    let owner = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    let group = nix::unistd::Group::from_gid(nix::unistd::getgid())
        .unwrap()
        .unwrap()
        .name;
    // A private directory, as `mktemp -d` makes them.
    mode(".", 0o700);
    let dir = p.dir.path().display();
    refused(&format!(
        "it cannot search directory \"{dir}\" (mode 0700, owner {owner}:{group})"
    ));
    mode(".", 0o755);
    mode("bin", 0o750);
    refused(&format!(
        "it cannot search directory \"{dir}/bin\" (mode 0750, owner {owner}:{group})"
    ));
    mode("bin", 0o711);
    mode("bin/job", 0o744);
    refused(&format!(
        "it may not execute it (mode 0744, owner {owner}:{group})"
    ));
    mode("bin/job", 0o711);
    refused(&format!(
        "it may not read it (mode 0711, owner {owner}:{group}), and its interpreter must read \
         a script"
    ));
    mode("bin/job", 0o755);
    check_ok(&p.path());
}

/// A control socket named at run time (`NONSTOP_SOCKET`, `--socket`, `XDG_RUNTIME_DIR`) whose
/// path a Unix socket cannot have is refused by `run` with the path and where it came from,
/// before the runner takes the pipeline's lock or makes anything.
#[test]
fn run_refuses_a_control_socket_path_too_long_for_a_unix_socket() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [/bin/sleep, \"100\"]\n");
    let socket = p.file(&format!("{}/nonstop.sock", "s".repeat(120)));
    let out = Command::new(nonstop())
        .arg("run")
        .arg(p.path())
        .env("NONSTOP_SOCKET", &socket)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let expected = format!(
        "nonstop: cannot serve the control socket named by NONSTOP_SOCKET: the socket path \
         \"{}\" is {} bytes long, but a Unix socket's path is at most 107 bytes",
        socket.display(),
        socket.as_os_str().len()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(!p.file("logs").exists(), "the runner started: {err}");
}

#[test]
fn run_never_removes_a_file_that_the_control_socket_path_names() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [/bin/sleep, \"100\"]\n");
    let precious = p.file("precious.conf");
    std::fs::write(&precious, "keep me\n").unwrap();
    // Named by the environment (a typo in NONSTOP_SOCKET) ...
    let mut runner = Runner::spawn(
        Command::new(nonstop())
            .arg("run")
            .arg(p.path())
            .env("NONSTOP_SOCKET", &precious),
    );
    let status = runner.wait(30 * SECOND);
    let log = runner.seen.join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("exists and is a regular file, not a socket"),
        "{log}"
    );
    // ... and by the pipeline.
    std::fs::write(
        p.path(),
        "control: { socket: precious.conf }\ntasks:\n  web:\n    command: [/bin/sleep, \"100\"]\n",
    )
    .unwrap();
    let mut runner = Runner::spawn(
        Command::new(nonstop())
            .arg("run")
            .arg(p.path())
            .env_remove("NONSTOP_SOCKET"),
    );
    let status = runner.wait(30 * SECOND);
    let log = runner.seen.join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("control.socket"), "{log}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
}
