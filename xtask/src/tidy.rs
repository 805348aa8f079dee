//! Tidy: rules of the codebase checked inside `cargo test`, so CI enforces them.
//!
//! - every `.rs` file starts with a `//!` line saying what it is;
//! - `unsafe` code lives only in `ipc/src` (the crate that talks to the kernel) and in
//!   `scheduler/src/spawn/` (the child's side of the clone, up to `execve`, and the guard);
//! - no `dbg!`, `todo!` or `unimplemented!`;
//! - no file longer than 1000 lines;
//! - crates depend one way (see ARCHITECTURE.md), and all but `ipc` use the workspace lints.

use std::path::{Path, PathBuf};

use crate::root;

fn rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap().display().to_string()
}

#[test]
fn every_rust_file_starts_with_a_doc_line() {
    let bad: Vec<String> = rust_files()
        .into_iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| relative(&f))
        .collect();
    assert!(
        bad.is_empty(),
        "these files do not start with `//!`: {bad:?}"
    );
}

/// Directories and files outside `ipc/src` allowed to hold `unsafe` code: the child side of
/// spawning, the plugin boundary (the SDK's shims in `core`, the task host that loads a
/// library), the test plugin's deliberate crash; this file only names the words.
const UNSAFE_FILES: [&str; 5] = [
    "scheduler/src/spawn/",
    "core/src/plugin/",
    "runner/src/plugin_host.rs",
    "tests/plugins/misbehave/src/lib.rs",
    "xtask/src/tidy.rs",
];

#[test]
fn unsafe_code_only_in_ipc_and_spawn() {
    let words = [
        "unsafe {",
        "unsafe fn",
        "unsafe impl",
        "unsafe extern",
        "#[unsafe(",
    ];
    let mut bad = Vec::new();
    for file in rust_files() {
        let rel = relative(&file);
        // This file names the words it looks for.
        if rel.starts_with("ipc/src/") || UNSAFE_FILES.iter().any(|f| rel.starts_with(f)) {
            continue;
        }
        for (n, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && words.iter().any(|w| code.contains(w)) {
                bad.push(format!("{rel}:{}", n + 1));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "unsafe code outside ipc/src and {UNSAFE_FILES:?}: {bad:?}"
    );
}

#[test]
fn no_debugging_leftovers_and_no_huge_files() {
    let macros = ["dbg", "todo", "unimplemented"].map(|m| format!("{m}!("));
    let mut bad = Vec::new();
    for file in rust_files() {
        let rel = relative(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        if rel != "xtask/src/tidy.rs" {
            for (n, line) in text.lines().enumerate() {
                if macros.iter().any(|m| line.contains(m.as_str())) {
                    bad.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
        let lines = text.lines().count();
        if lines > 1000 {
            bad.push(format!("{rel}: {lines} lines; split it"));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Which workspace crates each crate may depend on (normal, dev and build dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("ipc", &["nonstop-core"]),
    ("scheduler", &["nonstop-core", "nonstop-ipc"]),
    ("watchdog", &["nonstop-core", "nonstop-ipc"]),
    // The long-lived supervisor: no parser, no compressor (its manifest is the boundary).
    (
        "runner/supervisor",
        &[
            "nonstop-core",
            "nonstop-ipc",
            "nonstop-scheduler",
            "nonstop-watchdog",
        ],
    ),
    (
        "runner",
        &[
            "nonstop-core",
            "nonstop-ipc",
            "nonstop-scheduler",
            "nonstop-watchdog",
            "nonstop-supervisor",
        ],
    ),
    ("xtask", &[]),
    // A plugin for the tests, written as third parties write theirs.
    ("tests/plugins/misbehave", &["nonstop-core"]),
    (
        "tests",
        &[
            "nonstop-core",
            "nonstop-ipc",
            "nonstop-scheduler",
            "nonstop-watchdog",
        ],
    ),
];

fn manifests() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (dir, _) in ALLOWED {
        let path = root().join(dir).join("Cargo.toml");
        out.push((dir.to_string(), std::fs::read_to_string(path).unwrap()));
    }
    if let Ok(entries) = std::fs::read_dir(root().join("plugins")) {
        for entry in entries {
            let path = entry.unwrap().path().join("Cargo.toml");
            if let Ok(text) = std::fs::read_to_string(&path) {
                out.push((relative(path.parent().unwrap()), text));
            }
        }
    }
    out
}

/// The `nonstop-*` crates named in a manifest's dependency tables.
fn workspace_deps(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
            continue;
        }
        if in_deps && line.starts_with("nonstop-") {
            let name: String = line
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            deps.push(name);
        }
    }
    deps
}

#[test]
fn crates_depend_one_way() {
    let mut bad = Vec::new();
    for (dir, manifest) in manifests() {
        let allowed: &[&str] = if dir == "plugins/sweep" {
            // The seed's checkproc: the watchdog's decisions over a table it reads.
            &["nonstop-core", "nonstop-ipc", "nonstop-watchdog"]
        } else if dir == "plugins/files" {
            // What the file plugins share: no workspace crate.
            &[]
        } else if dir.starts_with("plugins/") {
            &["nonstop-core", "nonstop-plugin-files"]
        } else {
            ALLOWED.iter().find(|(d, _)| *d == dir).unwrap().1
        };
        for dep in workspace_deps(&manifest) {
            if !allowed.contains(&dep.as_str()) {
                bad.push(format!("{dir} depends on {dep}"));
            }
        }
        let uses_workspace_lints = manifest.contains("[lints]\nworkspace = true");
        if dir != "ipc" && !uses_workspace_lints {
            bad.push(format!("{dir}/Cargo.toml does not use the workspace lints"));
        }
    }
    assert!(
        bad.is_empty(),
        "dependency rules broken (see ARCHITECTURE.md): {bad:?}"
    );
}

/// What the long-lived process must never link (ARCHITECTURE.md): checked in its manifest here,
/// and in its symbols by `tests/it/run_handoff.rs`.
#[test]
fn the_supervisor_crate_depends_on_no_parser_and_no_compressor() {
    let manifest = std::fs::read_to_string(root().join("runner/supervisor/Cargo.toml")).unwrap();
    let heavy = [
        "serde_yaml",
        "yaml-rust2",
        "clap",
        "flate2",
        "serde_path_to_error",
    ];
    let bad: Vec<&str> = heavy
        .into_iter()
        .filter(|k| {
            manifest.lines().any(|l| {
                l.trim_start().starts_with(&format!("{k} "))
                    || l.trim_start().starts_with(&format!("{k}."))
            })
        })
        .collect();
    assert!(bad.is_empty(), "runner/supervisor depends on {bad:?}");
}

#[test]
fn the_dependency_parser_sees_every_table() {
    let manifest = "[dependencies]\nnonstop-core.workspace = true\nnix = \"1\"\n\
                    [dev-dependencies]\nnonstop-ipc = { path = \"../ipc\" }\n[features]\nnonstop-x = []\n";
    assert_eq!(workspace_deps(manifest), ["nonstop-core", "nonstop-ipc"]);
}
