//! The runner's children as the kernel sees them: the tasks it started, and the processes it
//! adopted as a child subreaper (a task's descendant whose parent died, such as a daemon that
//! called `setsid` and so left its task's process group). At shutdown, once every task is
//! stopped, what is left here is stopped too, so nothing the runner started outlives it.

use nix::unistd::Pid;

/// The live (not zombie) children of this process. From `/proc/self/task/TID/children` when
/// the kernel has it (`CONFIG_PROC_CHILDREN`, one small read), else from every
/// `/proc/PID/stat`.
pub fn children() -> Vec<Pid> {
    let me = nix::unistd::getpid();
    let listed = std::fs::read_dir("/proc/self/task").ok().and_then(|tasks| {
        let mut pids = Vec::new();
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).ok()?;
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
        Some(pids)
    });
    let candidates = match listed {
        Some(pids) => pids,
        None => all_pids(),
    };
    candidates
        .into_iter()
        .filter(|&pid| matches!(parent_and_state(pid), Some((ppid, state)) if ppid == me.as_raw() && state != 'Z'))
        .map(Pid::from_raw)
        .collect()
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The parent and the state letter of `pid`, from `/proc/PID/stat`.
fn parent_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::*;

    fn is_zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn running_children_are_listed_and_zombies_are_not() {
        let me = nix::unistd::getpid();
        let mut running = Command::new("sleep").arg("1000").spawn().unwrap();
        let mut exited = Command::new("true").spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_zombie(exited.id()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let listed = children();
        let scanned: Vec<i32> = all_pids()
            .into_iter()
            .filter(|&p| parent_and_state(p).is_some_and(|(ppid, _)| ppid == me.as_raw()))
            .collect();
        running.kill().unwrap();
        running.wait().unwrap();
        exited.wait().unwrap();
        assert!(
            listed.contains(&Pid::from_raw(running.id() as i32)),
            "{listed:?}"
        );
        assert!(
            !listed.contains(&Pid::from_raw(exited.id() as i32)),
            "{listed:?}"
        );
        // The full scan (the fallback) sees the same child.
        assert!(scanned.contains(&(running.id() as i32)), "{scanned:?}");
    }
}
