//! Whether `execve` would take a task's command line and environment: each string at most
//! `MAX_ARG_STRLEN` bytes, and all of them (with a pointer to each) within what the kernel
//! allows from the stack limit. A pipeline that passes `check` but whose every start fails
//! with `Argument list too long` (E2BIG) is refused here instead, with the numbers.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use nix::sys::resource::Resource;
use nonstop_scheduler::spawn::SpawnSpec;

/// The longest string execve takes, its NUL included: 32 pages (`MAX_ARG_STRLEN`).
pub(super) const MAX_ARG_STRLEN: usize = 32 * 4096;
/// The least the kernel allows for the strings whatever the stack limit (`ARG_MAX`).
const ARG_MAX_FLOOR: u64 = 128 * 1024;
/// The most it allows whatever the stack limit: three quarters of `_STK_LIM` (8 MiB).
const ARG_MAX_CEILING: u64 = 6 << 20;
/// What the runner adds to a task's environment when it starts it (its heartbeat slot), and
/// to an `on_failure` task's (the failure's task, reason and the last 4 KiB of its log).
pub(super) const RUNNER_VARIABLES: usize = 512;
pub(super) const FAILURE_VARIABLES: usize = 8192;

/// A string or a sum that execve would refuse.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TooBig {
    /// `argv[i]` (0: the program), its length.
    Arg(usize, usize),
    /// The variable `key`'s `KEY=VALUE`, its length.
    Env(OsString, usize),
    /// The whole: its bytes, what the kernel allows, and the stack limit that decides it.
    Total { bytes: u64, limit: u64, stack: u64 },
}

impl TooBig {
    /// Why, in words, after what it is about (`the argument`, `the variable X`); its place is
    /// the caller's.
    pub(super) fn message(&self) -> String {
        let string = |len: &usize| {
            format!(
                "is {len} bytes long, but execve takes a string of at most {} bytes \
                 (MAX_ARG_STRLEN, 128 KiB with its NUL): every start would fail with \"Argument \
                 list too long\"",
                MAX_ARG_STRLEN - 1
            )
        };
        match self {
            TooBig::Arg(_, len) => string(len),
            TooBig::Env(_, len) => string(len),
            TooBig::Total {
                bytes,
                limit,
                stack,
            } => format!(
                "come to {bytes} bytes (each string with its \
                 NUL and a pointer to it, and what the runner adds), but execve takes at most \
                 {limit} here: a quarter of the stack limit ({}), at least {ARG_MAX_FLOOR} and \
                 at most {ARG_MAX_CEILING} (`getconf ARG_MAX`); every start would fail with \
                 \"Argument list too long\"",
                if *stack == u64::MAX {
                    "unlimited".to_owned()
                } else {
                    format!("{stack} bytes")
                }
            ),
        }
    }
}

/// What execve would refuse of `spec` started with `extra` more bytes of environment, as this
/// process's environment and stack limit (or the task's `limits.stack`) say: each string too
/// long, then the whole if it is too big.
pub(super) fn check(spec: &SpawnSpec, extra: usize) -> Vec<TooBig> {
    let mut found = Vec::new();
    let argv: Vec<&[u8]> = std::iter::once(spec.program.as_os_str().as_bytes())
        .chain(spec.args.iter().map(|a| a.as_bytes()))
        .collect();
    for (i, arg) in argv.iter().enumerate() {
        if arg.len() >= MAX_ARG_STRLEN {
            found.push(TooBig::Arg(i, arg.len()));
        }
    }
    // The task's own variables (the last setting of a key wins), then those it inherits.
    let mut own: Vec<(&OsString, &OsString)> = Vec::new();
    for (key, value) in &spec.env {
        own.retain(|(k, _)| *k != key);
        own.push((key, value));
    }
    for (key, value) in &own {
        let len = key.len() + 1 + value.len();
        if len >= MAX_ARG_STRLEN {
            found.push(TooBig::Env((*key).clone(), len));
        }
    }
    let inherited: Vec<(OsString, OsString)> = if spec.clear_env {
        Vec::new()
    } else {
        std::env::vars_os()
            .filter(|(k, _)| !own.iter().any(|(key, _)| *key == k))
            .collect()
    };
    let pointer = std::mem::size_of::<usize>() as u64;
    let strings = |len: usize| len as u64 + 1 + pointer;
    let bytes: u64 = argv.iter().map(|a| strings(a.len())).sum::<u64>()
        // The file name the kernel keeps too.
        + strings(spec.program.as_os_str().len())
        + own
            .iter()
            .map(|(k, v)| strings(k.len() + 1 + v.len()))
            .sum::<u64>()
        + inherited
            .iter()
            .map(|(k, v)| strings(k.len() + 1 + v.len()))
            .sum::<u64>()
        + extra as u64;
    let stack = spec
        .limits
        .iter()
        .find(|l| l.resource == Resource::RLIMIT_STACK)
        .map(|l| l.soft)
        .or_else(|| {
            nix::sys::resource::getrlimit(Resource::RLIMIT_STACK)
                .ok()
                .map(|(soft, _)| soft)
        })
        .unwrap_or(8 << 20);
    let limit = (stack / 4).clamp(ARG_MAX_FLOOR, ARG_MAX_CEILING);
    if bytes > limit {
        found.push(TooBig::Total {
            bytes,
            limit,
            stack,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use nonstop_scheduler::spawn::Limit;

    use super::*;

    fn spec(args: &[usize], env: &[usize], stack: Option<u64>) -> SpawnSpec {
        SpawnSpec {
            program: "/bin/true".into(),
            args: args.iter().map(|&n| "a".repeat(n).into()).collect(),
            env: env
                .iter()
                .enumerate()
                .map(|(i, &n)| (format!("V{i}").into(), "v".repeat(n).into()))
                .collect(),
            clear_env: true,
            limits: stack
                .map(|s| Limit {
                    resource: Resource::RLIMIT_STACK,
                    soft: s,
                    hard: s,
                    inherited: false,
                })
                .into_iter()
                .collect(),
            ..SpawnSpec::default()
        }
    }

    /// The kernel's limits, at their edges: a string of 131071 bytes passes and one more is
    /// refused; the whole is judged against a quarter of the stack limit.
    #[test]
    fn strings_and_their_sum_are_held_to_the_kernels_limits() {
        assert!(check(&spec(&[MAX_ARG_STRLEN - 1], &[], None), 0).is_empty());
        assert_eq!(
            check(&spec(&[1, MAX_ARG_STRLEN], &[], None), 0),
            [TooBig::Arg(2, MAX_ARG_STRLEN)]
        );
        // "V0=" and the value.
        assert_eq!(
            check(&spec(&[], &[MAX_ARG_STRLEN], None), 0),
            [TooBig::Env("V0".into(), MAX_ARG_STRLEN + 3)]
        );
        // 8 MiB of stack: 2 MiB for all; 20 strings of 120 KiB are 2.4 MiB.
        let many = spec(&[120 << 10; 20], &[], Some(8 << 20));
        match &check(&many, 0)[..] {
            [TooBig::Total { limit, stack, .. }] => {
                assert_eq!((*limit, *stack), (2 << 20, 8 << 20));
            }
            other => panic!("{other:?}"),
        }
        // With 16 MiB of stack they fit.
        assert!(check(&spec(&[120 << 10; 20], &[], Some(16 << 20)), 0).is_empty());
    }
}
