//! `cargo xtask ci`: what CI runs, in the order that fails fastest, ending with one summary
//! line `tests: N passed, N failed` over every test binary of the workspace.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::{cargo, describe, exec, leftovers};

pub fn run() -> Result<()> {
    exec(cargo().args(["fmt", "--all", "--check"]))?;
    exec(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let totals = test()?;
    leftovers::check()?;
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    if totals.passed == 0 {
        bail!("the test suite ran no test");
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
}

/// `cargo test --workspace`, its output passed through and its `test result:` lines summed.
fn test() -> Result<Totals> {
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]).stdout(Stdio::piped());
    eprintln!("$ {}", describe(&cmd));
    let mut child = cmd.spawn().context("cannot start cargo test")?;
    let mut totals = Totals::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading cargo test output")?;
            println!("{line}");
            add_result_line(&mut totals, &line);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!(
            "cargo test failed ({status}): {} passed, {} failed",
            totals.passed,
            totals.failed
        );
    }
    Ok(totals)
}

/// Adds `test result: ok. 13 passed; 0 failed; ...` to the totals; ignores other lines.
fn add_result_line(totals: &mut Totals, line: &str) {
    let Some(rest) = line.strip_prefix("test result: ") else {
        return;
    };
    for part in rest.split([';', '.']) {
        let mut words = part.split_whitespace();
        if let (Some(n), Some(what)) = (words.next(), words.next()) {
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => totals.passed += n,
                "failed" => totals.failed += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_result_lines() {
        let mut totals = Totals::default();
        for line in [
            "test result: ok. 13 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.96s",
            "test foo ... ok",
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        ] {
            add_result_line(&mut totals, line);
        }
        assert_eq!(
            totals,
            Totals {
                passed: 15,
                failed: 1
            }
        );
    }
}
