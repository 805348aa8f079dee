//! `nonstop plugins`: every plugin library in the search directories, with what it says of
//! itself. Each library is opened in a child (`nonstop plugin-host`'s loader in a process of
//! its own), since loading one runs its code.

use std::path::Path;
use std::process::{Command, ExitCode};

use crate::pipeline::plugin::search_dirs;

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
    let exe = std::env::current_exe()?;
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
            let out = Command::new(&exe)
                .args(["plugin-host", "info"])
                .arg(&library)
                .arg("{}")
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            if out.status.success() {
                found += 1;
                println!("{}\t{}", library.display(), text.trim_end());
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                let why = err.trim().trim_start_matches("nonstop plugin-host: ");
                eprintln!("{}: not usable: {why}", library.display());
            }
        }
    }
    if found == 0 {
        eprintln!("nonstop: no plugins found");
    }
    Ok(ExitCode::SUCCESS)
}
