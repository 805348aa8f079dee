//! [`command`]: this `nonstop` running itself again (a plugin host, a stage of `run -d`).
//!
//! It is executed as `/proc/self/exe`, the very file this process runs, never by the path
//! [`std::env::current_exe`] reads from that link: once an upgrade renamed a new binary over
//! the old one's name, that path names another version (or, with its ` (deleted)` suffix,
//! nothing), while the link itself still opens the file that runs. So a runner started from
//! an old binary checks a reloaded file with that binary, and never with the new one.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The link that opens this process's own executable, whatever its path names now.
pub const EXE: &str = "/proc/self/exe";

/// `nonstop` itself as a [`Command`], with this process's `argv[0]` (for `ps`).
pub fn command() -> Command {
    let mut command = Command::new(EXE);
    command.arg0(
        std::env::args_os()
            .next()
            .unwrap_or_else(|| "nonstop".into()),
    );
    command
}
