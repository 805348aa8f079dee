//! `nonstop plugins`: every plugin library in the search directories, with what it says of
//! itself. Each library is opened in a child (`nonstop plugin-host info`, in a process group
//! of its own), since loading one runs its code, and given [`INFO_TIMEOUT`].

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::host_child::{self, Text};
use crate::pipeline::plugin::search_dirs;

/// The longest loading one library and reading its declaration may take (see
/// [`crate::host_child`]).
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// Lists the plugins found beside this executable, in `../lib/nonstop/plugins`, and in the
/// `plugin_dirs` of `pipeline`.
pub fn run(pipeline: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (dirs, base) = match pipeline {
        Some(file) => {
            let checked = crate::pipeline::plugin_dirs_of(file)?;
            let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            (checked, base)
        }
        None => (Vec::new(), std::path::PathBuf::from(".")),
    };
    let mut found = 0;
    for dir in search_dirs(&dirs, &base) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut libraries: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("lib") && n.ends_with(".so"))
            })
            .collect();
        libraries.sort();
        for library in libraries {
            let reply = host_child::ask(
                &[
                    "plugin-host".as_ref(),
                    "info".as_ref(),
                    library.as_os_str(),
                    "{}".as_ref(),
                ],
                None,
                INFO_TIMEOUT,
                Text::new(|_| false),
                Text::new(|_| false),
            )
            .with_context(|| format!("cannot run the plugin host on {}", library.display()))?;
            match reply.status {
                Some(status) if status.success() => {
                    found += 1;
                    println!("{}\t{}", library.display(), reply.stdout.text().trim_end());
                }
                Some(_) => {
                    let err = reply.stderr.text();
                    let why = err.trim().trim_start_matches("nonstop plugin-host: ");
                    eprintln!("{}: not usable: {why}", library.display());
                }
                None => eprintln!(
                    "{}: not usable: loading it did not finish within {} s (its initialisers \
                     hang?); the plugin host was killed",
                    library.display(),
                    INFO_TIMEOUT.as_secs()
                ),
            }
        }
    }
    if found == 0 {
        eprintln!("nonstop: no plugins found");
    }
    Ok(ExitCode::SUCCESS)
}
