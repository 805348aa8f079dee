//! Plugin tasks through the real runner: a real `cdylib` built by cargo
//! (`tests/plugins/misbehave`) that behaves or misbehaves on request, plugins written in C,
//! and libraries that are not plugins. The runner lives through all of it.

use std::process::Command;
use std::time::Duration;

use crate::harness::{PipelineDir, Runner, c_library, check_ok, misbehave_plugin, nonstop};

const SECOND: Duration = Duration::from_secs(1);

fn check(p: &PipelineDir) -> (bool, String) {
    let out = Command::new(nonstop())
        .args(["check", "pipeline.yaml"])
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_validates_plugin_args_in_a_child_and_points_at_the_argument() {
    let lib = misbehave_plugin();
    let p = PipelineDir::new(&format!(
        "plugin_dirs: [{dir}]\ntasks:\n  \
         limit:\n    plugin: misbehave\n    args:\n      limit: 11\n  \
         typo:\n    plugin: misbehave\n    args: {{ lnies: 3 }}\n  \
         wrong:\n    plugin: misbehave\n    args: {{ act: dance }}\n  \
         panics:\n    plugin: misbehave\n    args: {{ panic_in_validate: true }}\n  \
         missing:\n    plugin: nosuch\n  \
         fine:\n    plugin: {lib}\n    args: {{ lines: 1 }}\n",
        dir = lib.parent().unwrap().display(),
        lib = lib.display(),
    ));
    let (ok, out) = check(&p);
    assert!(!ok);
    let lines: Vec<&str> = out.lines().collect();
    let expect = [
        "pipeline.yaml:6:14: tasks.limit.args.limit: 11 is more than 10",
        "pipeline.yaml:9:13: tasks.typo.args.lnies: unknown field \"lnies\", expected one of \
         act, lines, limit, panic_in_validate, pid_file",
        "pipeline.yaml:12:18: tasks.wrong.args.act: unknown variant \"dance\", expected one of \
         ok, fail, panic, abort, segv, hang, beat, fork_in_validate, hang_in_validate, \
         flood_in_validate, long_refusal",
        "pipeline.yaml:14:13: tasks.panics.plugin: the plugin panicked in validate: validate \
         was asked to panic",
        "pipeline.yaml:17:13: tasks.missing.plugin: plugin \"nosuch\" not found: no \
         libnosuch.so or libnonstop_nosuch.so in ",
    ];
    for (line, expected) in lines.iter().zip(expect) {
        assert!(line.starts_with(expected), "{line}\n  expected {expected}");
    }
    assert_eq!(lines.len(), expect.len() + 1, "{out}");
    assert!(out.ends_with("pipeline.yaml: 5 errors\n"), "{out}");
}

#[test]
fn a_plugin_that_fails_panics_aborts_or_crashes_takes_only_its_task_host_down() {
    let lib = misbehave_plugin();
    let mut yaml = format!(
        "plugin_dirs: [{}]\ntasks:\n  good:\n    plugin: misbehave\n    args: {{ lines: 3 }}\n    \
         restart: never\n",
        lib.parent().unwrap().display()
    );
    for act in ["fail", "panic", "abort", "segv"] {
        yaml += &format!(
            "  {act}:\n    plugin: misbehave\n    args: {{ act: {act} }}\n    restart: never\n"
        );
    }
    yaml += "  hang:\n    plugin: misbehave\n    args: { act: hang }\n    every: 1m\n    \
             timeout: 200ms\n    stop: { grace: 100ms }\n";
    let p = PipelineDir::new(&yaml);
    let mut runner = Runner::start(&p);
    runner.wait_for(&["exited with status 0", "task=good"], 10 * SECOND);
    runner.wait_for(&["exited with status 1", "task=fail"], 10 * SECOND);
    runner.wait_for(&["exited with status 1", "task=panic"], 10 * SECOND);
    let abort = runner.wait_for(&["exited with signal SIGABRT", "task=abort"], 10 * SECOND);
    assert!(abort.contains("libmisbehave.so"), "{abort}");
    let segv = runner.wait_for(&["exited with signal SIGSEGV", "task=segv"], 10 * SECOND);
    assert!(segv.contains("(plugin "), "{segv}");
    // SIGTERM is only a request to a plugin; one that does not look gets the SIGKILL.
    runner.wait_for(&["run exceeded its timeout", "task=hang"], 10 * SECOND);
    runner.wait_for(&["signal SIGKILL", "task=hang"], 10 * SECOND);
    assert_eq!(
        p.log("good"),
        "misbehave: line 0\nmisbehave: line 1\nmisbehave: line 2\n"
    );
    assert!(p.log("fail").contains("asked to fail"), "{}", p.log("fail"));
    assert!(
        p.log("panic")
            .contains("the plugin panicked: asked to panic"),
        "{}",
        p.log("panic")
    );
    // The runner is fine: it stops cleanly.
    assert!(runner.terminate(10 * SECOND).success());
}

/// A plugin built in the release profile, as `cargo build --release` and `cargo xtask dist`
/// build them, that panics: the panic is caught at the boundary and is its task's failure, with
/// its message, in `validate` and in `run`. (While the profile was `panic = "abort"`, the task
/// host died of SIGABRT, exit status 134 from a shell.)
#[test]
fn a_release_built_plugin_that_panics_fails_with_its_message_instead_of_aborting() {
    let lib = crate::harness::misbehave_plugin_release();
    let host = |entry: &str, args: &str| {
        Command::new(nonstop())
            .args(["plugin-host", entry])
            .arg(&lib)
            .arg(args)
            .output()
            .unwrap()
    };
    let out = host("run", r#"{"act": "panic"}"#);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    assert!(
        stderr.contains("nonstop plugin-host: the plugin panicked: asked to panic"),
        "{stderr}"
    );
    let out = host("validate", r#"{"panic_in_validate": true}"#);
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "error\t\tthe plugin panicked in validate: validate was asked to panic\n"
    );
    // Through the runner: a failed run, the message in the task's log.
    let p = PipelineDir::new(&format!(
        "tasks:\n  panic:\n    plugin: {}\n    args: {{ act: panic }}\n    restart: never\n",
        lib.display()
    ));
    let mut runner = Runner::start(&p);
    runner.wait_for(&["exited with status 1", "task=panic"], 20 * SECOND);
    assert!(
        p.log("panic")
            .contains("the plugin panicked: asked to panic"),
        "{}",
        p.log("panic")
    );
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_plugin_beats_through_its_context_and_stops_when_asked() {
    let key = crate::harness::TestKey::new();
    let lib = misbehave_plugin();
    let p = PipelineDir::new(&format!(
        "heartbeat: {{ key: {} }}\ntasks:\n  beater:\n    plugin: {}\n    args: {{ act: beat }}\n    \
         heartbeat: {{ timeout: 300ms, start: 10s }}\n    stop: {{ grace: 5s }}\n",
        key.arg(),
        lib.display()
    ));
    let mut runner = Runner::start(&p);
    runner.wait_for(&["ready: first heartbeat", "task=beater"], 10 * SECOND);
    std::thread::sleep(SECOND);
    assert!(
        !runner.drain().iter().any(|l| l.contains("hung")),
        "a beating plugin was taken for hung"
    );
    // SIGTERM: the plugin sees the request and returns 0 well within its 5 s grace.
    let status = runner.terminate(10 * SECOND);
    assert!(status.success());
    runner.wait_for(&["stopped (status 0)", "task=beater"], SECOND);
    assert!(
        p.log("beater").contains("asked to stop; stopping"),
        "{}",
        p.log("beater")
    );
}

#[test]
fn libraries_that_are_not_plugins_are_refused_naming_the_file_and_a_c_plugin_runs() {
    let p = PipelineDir::new("");
    std::fs::write(p.file("libtext.so"), "not an ELF file\n").unwrap();
    let c = c_library("plugin_c", "", &[]);
    let cases = [
        (p.file("libtext.so"), "cannot load it as a shared library"),
        // Why dlopen failed, not only that it did.
        (
            c_library("plugin_c", "_undefined", &["-DUNDEFINED"]),
            "cannot load it as a shared library: dlopen failed: ",
        ),
        (
            c_library("plugin_c", "_undefined", &["-DUNDEFINED"]),
            "undefined symbol: nonstop_test_no_such_function",
        ),
        (
            c_library("plugin_c", "_nosym", &["-DNO_SYMBOL"]),
            "not a nonstop plugin: it exports no NONSTOP_PLUGIN declaration",
        ),
        (
            c_library("plugin_c", "_magic", &["-DMAGIC=0x1234"]),
            "does not start with the nonstop plugin magic",
        ),
        (
            c_library("plugin_c", "_abi", &["-DABI=2"]),
            "built for plugin ABI version 2; this nonstop",
        ),
        (
            c_library("plugin_c", "_size", &["-DSIZE=8"]),
            "its declaration is 8 bytes, ABI version 1 says",
        ),
    ];
    let mut yaml = "tasks:\n".to_owned();
    for (i, (lib, _)) in cases.iter().enumerate() {
        yaml += &format!("  t{i}:\n    plugin: {}\n", lib.display());
    }
    std::fs::write(p.path(), &yaml).unwrap();
    let (ok, out) = check(&p);
    assert!(!ok);
    for (i, (lib, why)) in cases.iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("tasks.t{i}.plugin:")))
            .unwrap_or_else(|| panic!("no error for t{i}:\n{out}"));
        assert!(line.contains(&lib.display().to_string()), "{line}");
        assert!(line.contains(why), "{line}\n  expected {why}");
    }

    // Written in C, by hand, to the ABI: it runs.
    std::fs::write(
        p.path(),
        format!(
            "tasks:\n  c:\n    plugin: {}\n    restart: never\n",
            c.display()
        ),
    )
    .unwrap();
    let mut runner = Runner::start(&p);
    runner.wait_for(&["exited with status 0", "task=c"], 10 * SECOND);
    assert_eq!(p.log("c"), "plugin_c: hello from C\n");
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn nonstop_plugins_lists_what_it_finds_and_what_it_cannot_use() {
    let lib = misbehave_plugin();
    let p = PipelineDir::new("");
    std::fs::create_dir(p.file("plugins")).unwrap();
    std::fs::copy(&lib, p.file("plugins/libmisbehave.so")).unwrap();
    std::fs::write(p.file("plugins/libbroken.so"), "junk").unwrap();
    std::fs::write(
        p.path(),
        "plugin_dirs: [plugins]\ntasks:\n  t:\n    command: [true]\n",
    )
    .unwrap();
    let out = Command::new(nonstop())
        .args(["plugins", "--pipeline"])
        .arg(p.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(
            "libmisbehave.so\tmisbehave\t0.1.0\tdoes on request what a plugin should not"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("libbroken.so: not usable:") && stderr.contains("cannot load it"),
        "{stderr}"
    );
}

/// The built-in purge plugin as a periodic task of the real runner: old matching files go, a
/// link to a directory outside is not followed.
#[test]
fn purge_runs_as_a_task_and_never_leaves_its_directory() {
    let lib = crate::harness::purge_plugin();
    let p = PipelineDir::new("");
    let data = p.file("data");
    let outside = p.file("outside");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    for f in [
        "data/a.log",
        "data/sub/b.log",
        "data/keep.txt",
        "outside/precious.log",
    ] {
        std::fs::write(p.file(f), "x").unwrap();
    }
    std::os::unix::fs::symlink(&outside, data.join("escape")).unwrap();
    std::fs::write(
        p.path(),
        format!(
            "plugin_dirs: [{}]\ntasks:\n  purge:\n    plugin: purge\n    \
             args: {{ dir: data, match: \"*.log\", older_than: 0s, remove_empty_dirs: true }}\n    \
             every: 1h\n",
            lib.parent().unwrap().display()
        ),
    )
    .unwrap();
    let mut runner = Runner::start(&p);
    runner.wait_for(&["run finished with status 0", "task=purge"], 20 * SECOND);
    assert!(!p.file("data/a.log").exists() && !p.file("data/sub").exists());
    assert!(p.file("data/keep.txt").exists());
    assert!(
        p.file("outside/precious.log").exists(),
        "purge left its directory"
    );
    let log = p.log("purge");
    assert!(
        log.contains("purge: removed 2 files (2 bytes), 1 directories"),
        "{log}"
    );
    assert!(runner.terminate(10 * SECOND).success());
}

/// The built-in sweep plugin, the seed's checkproc as a periodic task: a seed-style C service
/// that stops beating is stopped; a live process whose slot is in nonstop's layout too.
#[test]
fn sweep_stops_hung_services_of_a_seed_table_and_of_a_nonstop_table() {
    use crate::harness::{Proc, TestKey, c_program};
    let lib = crate::harness::sweep_plugin();
    let seed_key = TestKey::new();
    let mut service = Proc::spawn(Command::new(c_program("seed_client")).args([
        seed_key.arg().as_str(),
        "stuck",
        "1",
        "hang",
    ]));
    service.line(10 * SECOND);
    let table_key = TestKey::new();
    let (table, mut silent) = crate::harness::table_with_a_silent_service(&table_key);
    let p = PipelineDir::new(&format!(
        "tasks:\n  checkproc:\n    plugin: {lib}\n    args: {{ key: {seed}, layout: seed, grace: 1s }}\n    \
         every: 500ms\n  sweep:\n    plugin: {lib}\n    args: {{ key: \"{table}\" }}\n    every: 500ms\n",
        lib = lib.display(),
        seed = seed_key.arg(),
        table = table_key.arg(),
    ));
    let mut runner = Runner::start(&p);
    let status = service.wait(10 * SECOND);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15),
        "the seed service was not stopped with SIGTERM"
    );
    let status = silent.wait(10 * SECOND);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );
    runner.wait_for(
        &["run finished with status 0", "task=checkproc"],
        10 * SECOND,
    );
    assert!(runner.terminate(10 * SECOND).success());
    let log = p.log("checkproc");
    assert!(
        log.contains("sweep: stuck (pid") && log.contains("is hung"),
        "{log}"
    );
    assert!(
        p.log("sweep").contains("sweep: silent (pid"),
        "{}",
        p.log("sweep")
    );
    assert!(table.snapshot().is_empty(), "the slot was freed");
}

/// `examples/plugin-template`, built as a stranger would (its own workspace, `cargo build
/// --release`), runs with no `args` through the real runner, named by its path.
#[test]
fn the_template_builds_out_of_the_workspace_and_runs_with_no_args() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-template");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--manifest-path"])
        .arg(root.join("examples/plugin-template/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "the template does not build");
    let lib = target.join("release/libtemplate.so");
    let p = PipelineDir::new(&format!(
        "tasks:\n  count:\n    plugin: {}\n    restart: never\n",
        lib.display()
    ));
    std::fs::write(p.file("a"), "").unwrap();
    let mut runner = Runner::start(&p);
    runner.wait_for(&["exited with status 0", "task=count"], 20 * SECOND);
    let log = p.log("count");
    assert!(log.starts_with("hello from the template plugin\n"), "{log}");
    // The pipeline file, the file above and the log directory.
    assert!(log.contains(". has 3 entries"), "{log}");
    assert!(runner.terminate(10 * SECOND).success());
}

/// gzip killed with SIGKILL at many instants: every file is always there, as the original or
/// as a complete `.gz` (or both); a run to the end compresses what is left and removes the
/// temporaries of the killed ones.
#[test]
fn gzip_killed_at_any_instant_leaves_the_original_or_a_complete_gz() {
    use std::os::unix::process::ExitStatusExt;
    let lib = crate::harness::gzip_plugin();
    let p = PipelineDir::new("");
    let dir = p.file("data");
    std::fs::create_dir(&dir).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let body: String = (0..60_000)
                .map(|l| {
                    format!(
                        "{i} 2026-12-02T10:{l:05} <record n=\"{}\"/>\n",
                        l * 7919 % 1000
                    )
                })
                .collect();
            (format!("f{i}.log"), body.into_bytes())
        })
        .collect();
    for (name, body) in &files {
        std::fs::write(dir.join(name), body).unwrap();
    }
    let args = format!(
        "{{\"dir\": \"{}\", \"match\": \"*.log\", \"jobs\": 2}}",
        dir.display()
    );
    let intact = |name: &str, body: &[u8]| {
        let original = std::fs::read(dir.join(name)).ok();
        let gz = dir.join(format!("{name}.gz"));
        let decompressed = gz.exists().then(|| {
            let out = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
            assert!(
                out.status.success(),
                "{} is not a complete gzip file",
                gz.display()
            );
            out.stdout
        });
        assert!(
            original.is_some() || decompressed.is_some(),
            "{name}: neither the original nor its .gz"
        );
        if let Some(o) = original {
            assert_eq!(o, body, "{name}: the original changed");
        }
        if let Some(d) = decompressed {
            assert_eq!(d, body, "{name}.gz does not decompress to the original");
        }
    };
    let mut killed = 0;
    for round in 0..15 {
        let mut child = Command::new(nonstop())
            .args(["plugin-host", "run"])
            .arg(&lib)
            .arg(&args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(3 * round));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            killed += 1;
        }
        for (name, body) in &files {
            intact(name, body);
        }
    }
    assert!(
        killed >= 5,
        "only {killed} runs were killed before they ended"
    );
    let status = Command::new(nonstop())
        .args(["plugin-host", "run"])
        .arg(&lib)
        .arg(&args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for (name, body) in &files {
        assert!(!dir.join(name).exists(), "{name} left uncompressed");
        intact(name, body);
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".nonstop-partial")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `examples/seed.yaml` (the seed's deployment as a pipeline) passes `check` with the built-in
/// plugins built beside `nonstop`, so the example cannot rot (its directories made elsewhere).
#[test]
fn the_seed_example_checks_with_the_built_in_plugins() {
    // Built into the same directory as nonstop, where `plugin: NAME` looks first.
    for lib in [
        crate::harness::gzip_plugin(),
        crate::harness::purge_plugin(),
        crate::harness::sweep_plugin(),
    ] {
        assert_eq!(lib.parent(), nonstop().parent(), "{}", lib.display());
    }
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed.yaml");
    let dirs = tempfile::tempdir().unwrap();
    let copy =
        crate::harness::seed_example_in(&std::fs::read_to_string(example).unwrap(), dirs.path());
    let stdout = check_ok(&copy);
    for task in ["checkproc", "gzipfiles", "deletelogs", "deletesurf"] {
        assert!(stdout.contains(task), "{stdout}");
    }
    assert!(stdout.contains("libnonstop_sweep.so"), "{stdout}");
}

/// No table at the key (no service registered yet): nothing to watch, not a failure.
#[test]
fn sweep_of_a_key_without_a_table_succeeds_and_says_so() {
    let lib = crate::harness::sweep_plugin();
    let key = crate::harness::TestKey::new();
    for layout in ["nonstop", "seed"] {
        let out = Command::new(nonstop())
            .args(["plugin-host", "run"])
            .arg(&lib)
            .arg(format!(
                "{{\"key\": \"{}\", \"layout\": \"{layout}\"}}",
                key.arg()
            ))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{layout}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("nothing to watch"), "{stdout}");
    }
}
