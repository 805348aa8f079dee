//! The built-in purge plugin through the real runner while another process changes the tree:
//! an archiver (`test-helper mover`) renames day directories out of `dir` the moment the purge
//! is in them. What was moved out keeps every file it held at the move.

use std::path::Path;
use std::time::Duration;

use crate::harness::{PipelineDir, Proc, Runner, ctl_ok, purge_plugin};

const SECOND: Duration = Duration::from_secs(1);

/// Regular files under `dir`, at any depth.
fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn purge_deletes_nothing_in_a_day_directory_moved_out_of_dir_while_it_runs() {
    const ROUNDS: usize = 6;
    const DAYS: usize = 12;
    // In each day: 300 files, and 100 more in a subdirectory (moving `day` moves those too).
    const FILES: usize = 400;
    let lib = purge_plugin();
    let p = PipelineDir::new("");
    let data = p.file("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        p.path(),
        format!(
            "plugin_dirs: [{}]\ntasks:\n  purge:\n    plugin: purge\n    \
             args: {{ dir: data, match: \"*\", older_than: 0s }}\n    every: 1d\n",
            lib.parent().unwrap().display()
        ),
    )
    .unwrap();
    let mut runner: Option<Runner> = None;
    let mut caught = 0;
    for round in 0..ROUNDS {
        for day in 0..DAYS {
            let dir = data.join(format!("day{round}-{day:02}"));
            std::fs::create_dir_all(dir.join("deep")).unwrap();
            for f in 0..FILES {
                let name = if f < 300 {
                    format!("{f}.log")
                } else {
                    format!("deep/{f}.log")
                };
                std::fs::write(dir.join(name), "x").unwrap();
            }
        }
        let archive = p.file(&format!("archive{round}"));
        std::fs::create_dir(&archive).unwrap();
        let mover = Proc::helper(&[
            "mover",
            data.to_str().unwrap(),
            archive.to_str().unwrap(),
            &FILES.to_string(),
        ]);
        assert_eq!(mover.line(10 * SECOND), "watching");
        // The first run comes with the runner's start; the others when asked.
        match &mut runner {
            None => runner = Some(Runner::start(&p)),
            Some(_) => {
                ctl_ok(&p, &["start", "purge"]);
            }
        }
        let r = runner.as_mut().unwrap();
        r.wait_for(&["run finished with status 0", "task=purge"], 120 * SECOND);
        let mut moved = Vec::new();
        loop {
            let line = mover.line(60 * SECOND);
            if line == "done" {
                break;
            }
            let mut words = line.split_whitespace().skip(1);
            let (name, at_move) = (words.next().unwrap().to_owned(), words.next().unwrap());
            moved.push((name, at_move.parse::<usize>().unwrap()));
        }
        for (name, at_move) in &moved {
            let now = count(&archive.join(name));
            assert!(
                now >= *at_move,
                "round {round}: {name} held {at_move} files when it was moved out of data, \
                 {now} after the purge; the purge's log:\n{}",
                p.log("purge")
            );
        }
        caught += moved.len();
        // Nothing of this round stays in data (each day there is empty now), nor the purge's
        // own quarantine.
        for entry in std::fs::read_dir(&data).unwrap() {
            let entry = entry.unwrap();
            assert!(
                entry.file_name().to_string_lossy().starts_with("day"),
                "{:?} left in data",
                entry.file_name()
            );
            assert_eq!(count(&entry.path()), 0);
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
    // The mover moves a directory only once the purge is in it; had it never been quick
    // enough, this test would have proved nothing.
    eprintln!("{caught} directories were moved out while the purge was in them");
    assert!(
        caught > 0,
        "no directory was moved while the purge was in it"
    );
    let mut runner = runner.unwrap();
    assert!(runner.terminate(10 * SECOND).success());
}
