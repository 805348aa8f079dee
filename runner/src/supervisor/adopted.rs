//! The runner's children as the kernel sees them: the tasks it started, and the processes it
//! adopted as a child subreaper (a task's descendant whose parent died, such as a daemon that
//! called `setsid` and so left its task's process group). At shutdown, once every task is
//! stopped, what is left here is stopped too, so nothing the runner started outlives it.

use nix::unistd::Pid;

/// The live (not zombie) children of `parent`, from `/proc/*/stat`. Works on every kernel
/// (`/proc/PID/task/TID/children` needs `CONFIG_PROC_CHILDREN`); read only at shutdown.
pub fn children(parent: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let ppid: i32 = fields.next()?.parse().ok()?;
            (ppid == parent.as_raw() && state != "Z").then_some(Pid::from_raw(pid))
        })
        .collect()
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
        let listed = children(me);
        let of_init = children(Pid::from_raw(1));
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
        assert!(!of_init.contains(&Pid::from_raw(running.id() as i32)));
    }
}
