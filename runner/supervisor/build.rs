//! Computes the build fingerprint that the hand-off from `nonstop` to `nonstop-supervisor`
//! carries (`handoff::MAGIC`): a hash of what decides the hand-off's format and meaning (the
//! sources of this crate and of the crates whose types cross it, `Cargo.lock`, the compiler,
//! the target and the profile). Both binaries link this crate, so one build gives both the
//! same fingerprint, and a `nonstop` and a `nonstop-supervisor` from different builds refuse
//! each other even when their package versions agree.

use std::path::{Path, PathBuf};

/// Sources whose change can change the hand-off, relative to this crate.
const INPUTS: [&str; 5] = [
    "src",
    "../../scheduler/src",
    "../../core/src",
    "../../ipc/src",
    "../../Cargo.lock",
];

fn main() {
    // Relative relocations packed (DT_RELR, glibc 2.36, binutils 2.38): the loader reads a
    // few KiB instead of 60 KiB of `.rela.dyn`, which otherwise stay mapped for the life of
    // the long-lived process (see BENCHMARKS.md, runner memory). Linux with glibc only; a
    // linker that does not know the option warns and ignores it.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut hash = Fnv::default();
    for input in INPUTS {
        println!("cargo::rerun-if-changed={input}");
        let mut files = Vec::new();
        collect(&here.join(input), &mut files);
        files.sort();
        for file in files {
            hash.write(
                file.strip_prefix(&here)
                    .unwrap_or(&file)
                    .as_os_str()
                    .as_encoded_bytes(),
            );
            hash.write(&std::fs::read(&file).unwrap_or_default());
        }
    }
    for var in ["CARGO_PKG_VERSION", "TARGET", "PROFILE", "RUSTC"] {
        hash.write(std::env::var(var).unwrap_or_default().as_bytes());
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    if let Ok(out) = std::process::Command::new(rustc).arg("-vV").output() {
        hash.write(&out.stdout);
    }
    println!("cargo::rustc-env=NONSTOP_BUILD={:016x}", hash.0);
}

/// Every file under `path` (or `path` itself if it is a file).
fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                collect(&entry.path(), files);
            }
        }
        Err(_) if path.is_file() => files.push(path.to_path_buf()),
        Err(_) => {}
    }
}

/// FNV-1a, 64 bits: stable across compilers, enough to tell builds apart.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
}
