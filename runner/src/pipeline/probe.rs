//! A task's `probe:`: checked and turned into the scheduler's `ProbeSpec`. Host names are
//! resolved here, once, so that the runner never blocks on DNS in its loop.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use nonstop_scheduler::probe::{ProbeCheck, ProbeSpec};
use nonstop_scheduler::spawn::SpawnSpec;

use super::exec_size::TooBig;
use super::{Ctx, raw, task::resolve_program};

/// Defaults: a probe every second, 1 s to answer, 3 failures in a row, 60 s to start.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_FAILURES: u32 = 3;
pub const DEFAULT_START: Duration = Duration::from_secs(60);
/// Shortest `every`.
const MIN_EVERY: Duration = Duration::from_millis(10);

/// Checks `p` (at `path`) for a task started as `task`; `search` is its `PATH`.
pub(super) fn check(
    ctx: &mut Ctx,
    path: &str,
    p: raw::Probe,
    task: &SpawnSpec,
    search: Option<&str>,
) -> Option<ProbeSpec> {
    let field = |f: &str| format!("{path}.{f}");
    let errors_before = ctx.errors.len();
    let given = [p.exec.is_some(), p.tcp.is_some(), p.http.is_some()];
    let check = match (p.exec, p.tcp, p.http) {
        (Some(argv), None, None) => exec(ctx, &field("exec"), argv, task, search),
        (None, Some(addr), None) => tcp(ctx, &field("tcp"), &addr).map(ProbeCheck::Tcp),
        (None, None, Some(url)) => http(ctx, &field("http"), &url),
        _ => {
            let what = if given.iter().any(|&g| g) {
                "give only one of `exec`, `tcp` and `http`"
            } else {
                "a probe needs one of `exec: [PROGRAM, ARGS...]`, `tcp: \"HOST:PORT\"` or \
                 `http: \"http://HOST:PORT/PATH\"`"
            };
            ctx.error(path, what);
            None
        }
    };
    let every = p.every.map_or(DEFAULT_EVERY, |d| d.0);
    let timeout = p.timeout.map_or(DEFAULT_TIMEOUT.min(every), |d| d.0);
    let failures = p.failures.unwrap_or(DEFAULT_FAILURES);
    let start = p.start.map_or(DEFAULT_START, |d| d.0);
    let shown = nonstop_core::Duration;
    if every < MIN_EVERY {
        ctx.error(
            &field("every"),
            format!(
                "{} is too short: the shortest is {}",
                shown(every),
                shown(MIN_EVERY)
            ),
        );
    }
    if timeout.is_zero() || timeout > every {
        ctx.error(
            &field("timeout"),
            format!(
                "{} must be longer than 0 and at most `every` ({}): one probe at a time",
                shown(timeout),
                shown(every)
            ),
        );
    }
    if failures == 0 {
        ctx.error(&field("failures"), "must be at least 1");
    }
    (ctx.errors.len() == errors_before).then_some(ProbeSpec {
        check: check?,
        every,
        timeout,
        failures,
        start,
    })
}

fn exec(
    ctx: &mut Ctx,
    path: &str,
    argv: Vec<String>,
    task: &SpawnSpec,
    search: Option<&str>,
) -> Option<ProbeCheck> {
    let Some(first) = argv.first() else {
        ctx.error(path, "empty: the first item is the program to run");
        return None;
    };
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        ctx.error(
            &format!("{path}[{i}]"),
            "a NUL byte cannot be passed to a program",
        );
        return None;
    }
    let cwd = task.cwd.as_deref().unwrap_or(Path::new("/"));
    let program = match resolve_program(first, cwd, search) {
        Ok(program) => program,
        Err(why) => {
            ctx.error(&format!("{path}[0]"), why);
            return None;
        }
    };
    // As the task: same user, directory, environment and limits.
    let spec = SpawnSpec {
        program,
        args: argv[1..].iter().map(Into::into).collect(),
        ..task.clone()
    };
    // What execve would refuse of it: its own arguments, or all with the task's environment
    // (the task's own strings are the task's errors).
    let mut refused = false;
    for too_big in super::exec_size::check(&spec, super::exec_size::RUNNER_VARIABLES) {
        let (at, what) = match &too_big {
            TooBig::Arg(i, _) => (format!("{path}[{i}]"), "this argument"),
            TooBig::Total { .. } => (path.to_owned(), "the probe's command and the environment"),
            TooBig::Env(..) => continue,
        };
        ctx.error(&at, format!("{what} {}", too_big.message()));
        refused = true;
    }
    (!refused).then_some(ProbeCheck::Exec(spec))
}

fn tcp(ctx: &mut Ctx, path: &str, addr: &str) -> Option<SocketAddr> {
    match resolve(addr) {
        Ok(a) => Some(a),
        Err(why) => {
            ctx.error(path, why);
            None
        }
    }
}

/// `HOST:PORT` (`[v6]:PORT` too) to its first address.
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if !addr.contains(':') {
        return Err(format!("\"{addr}\" has no port: write HOST:PORT"));
    }
    let found = match addr.to_socket_addrs() {
        Ok(mut found) => found
            .next()
            .ok_or_else(|| format!("\"{addr}\" resolves to no address"))?,
        Err(e) => return Err(format!("cannot resolve \"{addr}\": {e}")),
    };
    // Nothing listens on port 0 (binding to it picks a free port): a probe of it could never
    // succeed.
    if found.port() == 0 {
        return Err(format!(
            "\"{addr}\": port 0 is not a port a service listens on: give the service's port"
        ));
    }
    Ok(found)
}

fn http(ctx: &mut Ctx, path: &str, url: &str) -> Option<ProbeCheck> {
    match parse_url(url) {
        Ok((host, path_query)) => match resolve(&host) {
            Ok(addr) => Some(ProbeCheck::Http {
                addr,
                host,
                path: path_query,
            }),
            Err(why) => {
                ctx.error(path, why);
                None
            }
        },
        Err(why) => {
            ctx.error(path, why);
            None
        }
    }
}

/// `http://HOST[:PORT][/PATH]` to `HOST:PORT` and the path (`/` if none).
fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            format!("\"{url}\": https is not supported; probe the plain-HTTP port, or use tcp")
        } else {
            format!("\"{url}\" is not an http:// URL")
        }
    })?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(format!(
            "\"{url}\": a user and password (user:password@) are not supported: the probe sends \
             no credentials; probe a path that needs none"
        ));
    }
    if authority.is_empty() || authority.contains(' ') {
        return Err(format!("\"{url}\": no usable host"));
    }
    if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "\"{url}\": the path cannot contain spaces or control characters"
        ));
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let host = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((host, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_host_and_path() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/health?x=1").unwrap(),
            ("127.0.0.1:8080".into(), "/health?x=1".into())
        );
        assert_eq!(
            parse_url("http://localhost").unwrap(),
            ("localhost:80".into(), "/".into())
        );
        assert_eq!(
            parse_url("http://[::1]/x").unwrap(),
            ("[::1]:80".into(), "/x".into())
        );
        assert!(
            parse_url("https://a/")
                .unwrap_err()
                .contains("https is not supported")
        );
        assert!(
            parse_url("ftp://a/")
                .unwrap_err()
                .contains("not an http:// URL")
        );
        assert!(
            parse_url("http:///x")
                .unwrap_err()
                .contains("no usable host")
        );
        assert!(parse_url("http://a/b c").is_err());
        assert!(
            parse_url("http://user:pw@127.0.0.1/")
                .unwrap_err()
                .contains("a user and password (user:password@) are not supported")
        );
    }

    #[test]
    fn addresses_need_a_port_and_must_resolve() {
        assert_eq!(
            resolve("127.0.0.1:6379").unwrap(),
            ([127, 0, 0, 1], 6379).into()
        );
        assert!(resolve("localhost:80").is_ok());
        assert!(resolve("127.0.0.1").unwrap_err().contains("has no port"));
        assert!(
            resolve("127.0.0.1:0")
                .unwrap_err()
                .contains("port 0 is not a port a service listens on")
        );
        assert!(
            resolve("no-such-host.invalid:80")
                .unwrap_err()
                .contains("cannot resolve")
        );
    }
}
