//! Real servers under a real runner (nginx, redis, python's http.server; `.ci/run` installs
//! nginx-light and redis-server): nginx's workers die with a SIGKILLed runner, so the next
//! runner's nginx can bind its port again; a redis that puts itself in the background is
//! watched, not started again into a pile of copies; a killed http.server is back at once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{KillOnDrop, PipelineDir, Runner, alive, pid_of, wait_until};

const SECOND: Duration = Duration::from_secs(1);

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `request` sent to the port on 127.0.0.1, and the whole answer, or `None` if nothing
/// listens.
fn ask(port: u16, request: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, SECOND).ok()?;
    stream.set_read_timeout(Some(5 * SECOND)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if request.starts_with("PING") && answer.ends_with(b"\r\n") {
            break;
        }
    }
    Some(String::from_utf8_lossy(&answer).into_owned())
}

fn http_get(port: u16) -> Option<String> {
    ask(port, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
}

/// The program, or a failure that says how to get it.
fn installed(program: &str) -> &str {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: install nginx-light and redis-server (Debian), as .ci/run does"
    );
    program
}

/// Every process below `pid` (its children, theirs, ...).
fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

#[test]
fn nginx_dies_with_a_sigkilled_runner_and_the_next_runner_serves_again() {
    let nginx = installed("/usr/sbin/nginx");
    let port = free_port();
    let p = PipelineDir::new("tasks: {}\n");
    let dir = p.dir.path().display().to_string();
    std::fs::write(
        p.file("nginx.conf"),
        format!(
            "daemon off;\nmaster_process on;\nworker_processes 2;\npid {dir}/nginx.pid;\n\
             error_log {dir}/nginx-error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp;\n  \
             fastcgi_temp_path {dir}/tmp; uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;\n  \
             server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"served\\n\"; }} }}\n}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        p.path(),
        format!(
            "tasks:\n  web:\n    command: [{nginx}, -c, {dir}/nginx.conf, -p, {dir}]\n    \
             stop: {{ signal: QUIT, grace: 5s }}\n"
        ),
    )
    .unwrap();
    let mut runner = Runner::start(&p);
    let master = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    assert!(
        wait_until(10 * SECOND, || http_get(port)
            .is_some_and(|a| a.contains("served"))),
        "nginx does not answer; its log:\n{}",
        p.log("web")
    );
    let workers = descendants(master);
    assert_eq!(workers.len(), 2, "{workers:?}");
    let all: Vec<i32> = std::iter::once(master).chain(workers).collect();
    let _cleanup = KillOnDrop(all.clone());
    // The runner dies without a word: nothing of nginx may go on serving.
    kill(Pid::from_raw(runner.pid()), Signal::SIGKILL).unwrap();
    assert!(
        wait_until(SECOND, || all.iter().all(|&p| !alive(p))),
        "nginx processes alive 1 s after the runner's SIGKILL: {:?}",
        all.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
    runner.wait(10 * SECOND);
    assert!(wait_until(5 * SECOND, || http_get(port).is_none()));
    // The next runner of the pipeline starts nginx, which binds the port again.
    let mut next = Runner::start(&p);
    let master = pid_of(&next.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![master]);
    assert!(
        wait_until(10 * SECOND, || http_get(port)
            .is_some_and(|a| a.contains("served"))),
        "the second nginx does not answer; its log:\n{}",
        p.log("web")
    );
    assert!(
        !p.log("web").contains("Address already in use"),
        "{}",
        p.log("web")
    );
    assert!(next.terminate(20 * SECOND).success());
    assert!(wait_until(5 * SECOND, || http_get(port).is_none()));
    let log = next.seen.join("\n");
    assert!(log.contains("stopped (status 0) task=web"), "{log}");
}

#[test]
fn a_redis_that_daemonizes_is_watched_not_started_again_into_copies() {
    let redis = installed("/usr/bin/redis-server");
    let port = free_port();
    let p = PipelineDir::new("tasks: {}\n");
    let dir = p.dir.path().display().to_string();
    std::fs::write(
        p.path(),
        format!(
            "tasks:\n  cache:\n    command: [{redis}, --daemonize, \"yes\", --port, \"{port}\", \
             --bind, 127.0.0.1, --save, \"\", --appendonly, \"no\", --dir, {dir}, \
             --pidfile, {dir}/redis.pid, --logfile, {dir}/redis.log]\n    \
             backoff: {{ initial: 0ms }}\n"
        ),
    )
    .unwrap();
    let mut runner = Runner::start(&p);
    let line = runner.wait_for(&["cache", "left 1 process running"], 10 * SECOND);
    assert!(wait_until(10 * SECOND, || ask(port, "PING\r\n")
        .is_some_and(|a| a.contains("PONG"))));
    let daemon: i32 = std::fs::read_to_string(p.file("redis.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _cleanup = KillOnDrop(vec![daemon]);
    assert!(line.contains(&format!("(pids {daemon})")), "{line}");
    std::thread::sleep(2 * SECOND);
    let log = runner.drain().join("\n");
    assert_eq!(log.matches("started task=cache").count(), 1, "{log}");
    assert!(!log.contains("crash loop"), "{log}");
    // Stopping the task stops the daemon.
    assert!(runner.terminate(20 * SECOND).success());
    assert!(!alive(daemon), "{}", runner.seen.join("\n"));
    assert!(ask(port, "PING\r\n").is_none());
}

#[test]
fn a_killed_http_server_is_back_at_once() {
    let port = free_port();
    let p = PipelineDir::new(&format!(
        "tasks:\n  files:\n    command: [python3, -m, http.server, \"{port}\", --bind, 127.0.0.1]\n    \
         backoff: {{ initial: 0ms }}\n"
    ));
    std::fs::write(p.file("hello.txt"), "hello\n").unwrap();
    let mut runner = Runner::start(&p);
    let first = pid_of(&runner.wait_for(&["started", "task=files"], 10 * SECOND));
    assert!(wait_until(10 * SECOND, || http_get(port)
        .is_some_and(|a| a.contains("hello.txt"))));
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    runner.wait_for(
        &["files", "exited with signal SIGKILL", "restarting in 0ms"],
        10 * SECOND,
    );
    let second = pid_of(&runner.wait_for(&["started", "task=files"], 10 * SECOND));
    assert_ne!(first, second);
    assert!(wait_until(10 * SECOND, || http_get(port)
        .is_some_and(|a| a.contains("hello.txt"))));
    assert!(runner.terminate(10 * SECOND).success());
    assert!(!alive(second));
}
