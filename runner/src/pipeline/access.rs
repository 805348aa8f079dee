//! Whether a task's `user:` (and `group:`) may run its program: the kernel's permission checks
//! (`man 7 path_resolution`) done on the mode bits and owners of each file, for the ids the task
//! will have. `check` runs as another user (root, usually), so its own access proves nothing,
//! and switching its credentials for a moment is not something a process does lightly; reading
//! modes and owners answers the same question. ACLs and capabilities other than root's are not
//! looked at.

use std::ffi::CString;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nonstop_scheduler::spawn::Credentials;

/// Read permission.
const READ: u32 = 4;
/// Execute permission (search, on a directory).
const EXECUTE: u32 = 1;

/// The ids a task runs with, and how messages name them.
#[derive(Debug, Clone)]
pub(super) struct Who {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    name: String,
}

impl Who {
    /// The ids of a task with `credentials` (`user` and `group` as written): those it sets,
    /// this process's for the others (as the child keeps them).
    pub(super) fn of(credentials: &Credentials, user: Option<&str>, group: Option<&str>) -> Who {
        let uid = credentials
            .uid
            .unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        let gid = credentials
            .gid
            .unwrap_or_else(|| nix::unistd::getegid().as_raw());
        let groups = credentials.groups.clone().unwrap_or_else(|| {
            nix::unistd::getgroups()
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_default()
        });
        let name = match (user, group) {
            (Some(user), Some(group)) => format!("user {user} (group {group})"),
            (Some(user), None) => format!("user {user}"),
            (None, Some(group)) => format!("group {group}"),
            (None, None) => format!("uid {uid}"),
        };
        Who {
            uid,
            gid,
            groups,
            name,
        }
    }

    /// Whether a file of `mode`, owned by `owner`:`group`, grants `want` (`READ`, `EXECUTE`)
    /// to these ids: the owner's bits for its owner, the group's for a member of its group,
    /// the others' else. Root may read anything and search any directory, and execute a file
    /// if any of its execute bits is set.
    fn allowed(&self, mode: u32, owner: u32, group: u32, is_dir: bool, want: u32) -> bool {
        if self.uid == 0 {
            return want & EXECUTE == 0 || is_dir || mode & 0o111 != 0;
        }
        let bits = if owner == self.uid {
            mode >> 6
        } else if group == self.gid || self.groups.contains(&group) {
            mode >> 3
        } else {
            mode
        } & 7;
        bits & want == want
    }

    fn may(&self, meta: &Metadata, want: u32) -> bool {
        self.allowed(
            meta.permissions().mode(),
            meta.uid(),
            meta.gid(),
            meta.is_dir(),
            want,
        )
    }

    /// Why these ids could not execute `program` (an absolute path that exists), started in
    /// `cwd`: a directory on the way they cannot search, the file without execute permission
    /// for them, or a script they cannot read, or whose interpreter they could not execute.
    pub(super) fn cannot_run(&self, program: &Path, cwd: &Path) -> Option<String> {
        self.cannot_reach(program)
            .or_else(|| self.lacks(program, EXECUTE, "execute"))
            .or_else(|| {
                let interpreter = interpreter(program, cwd)?;
                self.lacks(program, READ, "read")
                    .map(|why| format!("{why}, and its interpreter must read a script"))
                    .or_else(|| {
                        self.cannot_reach(&interpreter)
                            .or_else(|| self.lacks(&interpreter, EXECUTE, "execute"))
                            .map(|why| format!("its interpreter {}: {why}", interpreter.display()))
                    })
            })
    }

    /// Why these ids could not read `file` (an absolute path that exists).
    pub(super) fn cannot_read(&self, file: &Path) -> Option<String> {
        self.cannot_reach(file)
            .or_else(|| self.lacks(file, READ, "read"))
    }

    /// The first directory on the way to `path`, as written and as its links resolve, that
    /// these ids cannot search.
    fn cannot_reach(&self, path: &Path) -> Option<String> {
        // (`components` drops the `.` of `/srv/./bin`.)
        let dirs_of = |p: &Path| -> Vec<PathBuf> {
            p.ancestors()
                .skip(1)
                .map(|d| d.components().collect())
                .collect()
        };
        let mut dirs = dirs_of(path);
        if let Ok(real) = std::fs::canonicalize(path) {
            dirs.extend(dirs_of(&real));
        }
        // From the root down: the first one in the way is the one to name.
        dirs.sort_by_key(|d| d.components().count());
        dirs.dedup();
        dirs.iter().find_map(|dir| {
            let meta = std::fs::metadata(dir).ok()?;
            (!self.may(&meta, EXECUTE)).then(|| {
                format!(
                    "it cannot search directory \"{}\" ({})",
                    dir.display(),
                    shown(&meta)
                )
            })
        })
    }

    /// Why these ids lack `want` on `file`, if they do.
    fn lacks(&self, file: &Path, want: u32, what: &str) -> Option<String> {
        let meta = std::fs::metadata(file).ok()?;
        (!self.may(&meta, want)).then(|| format!("it may not {what} it ({})", shown(&meta)))
    }

    /// How messages name these ids: `user nobody`.
    pub(super) fn name(&self) -> &str {
        &self.name
    }
}

/// `mode 0700, owner root:root`.
fn shown(meta: &Metadata) -> String {
    let user = nix::unistd::User::from_uid(meta.uid().into())
        .ok()
        .flatten()
        .map_or_else(|| meta.uid().to_string(), |u| u.name);
    let group = nix::unistd::Group::from_gid(meta.gid().into())
        .ok()
        .flatten()
        .map_or_else(|| meta.gid().to_string(), |g| g.name);
    format!(
        "mode {:04o}, owner {user}:{group}",
        meta.permissions().mode() & 0o7777
    )
}

/// The interpreter a script names on its `#!` line (a relative one is relative to `cwd`, as
/// the kernel finds it), if `program` is a script.
fn interpreter(program: &Path, cwd: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(program).ok()?;
    let n = std::io::Read::read(&mut file, &mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let name = line.split_whitespace().next()?;
    // A NUL cannot be in a path the kernel reads.
    CString::new(name).ok()?;
    Some(cwd.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gid: u32, groups: &[u32]) -> Who {
        Who {
            uid,
            gid,
            groups: groups.to_vec(),
            name: String::new(),
        }
    }

    #[test]
    fn the_owner_the_group_or_the_others_bits_decide() {
        let nobody = who(65534, 65534, &[]);
        // Others' bits.
        assert!(!nobody.allowed(0o700, 0, 0, true, EXECUTE));
        assert!(nobody.allowed(0o711, 0, 0, true, EXECUTE));
        assert!(!nobody.allowed(0o751, 0, 0, false, READ));
        // The owner's bits only, even if the others' would allow it.
        assert!(!nobody.allowed(0o077, 65534, 0, false, EXECUTE));
        assert!(nobody.allowed(0o500, 65534, 0, false, READ | EXECUTE));
        // The group's, by primary or supplementary group.
        assert!(nobody.allowed(0o050, 0, 65534, false, EXECUTE));
        let member = who(1000, 1000, &[10]);
        assert!(member.allowed(0o750, 0, 10, true, EXECUTE));
        assert!(!member.allowed(0o705, 0, 10, false, READ));
    }

    #[test]
    fn root_needs_an_execute_bit_to_execute_and_nothing_else() {
        let root = who(0, 0, &[]);
        assert!(root.allowed(0o000, 1000, 1000, true, EXECUTE));
        assert!(root.allowed(0o000, 1000, 1000, false, READ));
        assert!(!root.allowed(0o600, 1000, 1000, false, EXECUTE));
        assert!(root.allowed(0o001, 1000, 1000, false, EXECUTE));
    }
}
