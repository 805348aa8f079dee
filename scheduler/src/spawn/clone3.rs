//! `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)`: the child starts inside its task's
//! cgroup, so there is no moment in which it, or anything it starts, is outside (Linux 5.7).
//!
//! glibc exports no `clone3` wrapper, and with `CLONE_VM` the child cannot return into Rust
//! code on a new stack: the child's side is a few instructions of assembly, as in glibc's own
//! internal `__clone3`. They call the child's function on its stack and end the child with
//! `exit` if it ever returns. x86-64 and aarch64 only (the architectures whose other raw calls
//! `spawn` uses, see the `compile_error!` there).

use std::os::fd::RawFd;

use nix::libc::{c_int, c_long, c_void};

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const _: () = assert!(std::mem::size_of::<CloneArgs>() == 88);

/// `CLONE_INTO_CGROUP` (not in every libc crate version).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Starts `child(arg)` on the stack `[stack, stack + stack_size)` as a vfork child in the cgroup
/// open at `cgroup` (with `extra_flags`, such as `CLONE_FILES`, added); returns the child's pid once it has called `execve` or exited, or
/// `-errno`.
///
/// # Safety
///
/// As for `clone(CLONE_VM | CLONE_VFORK)`: `child` may only make async-signal-safe system
/// calls and must end with `execve` or `_exit`; `arg` and the stack must stay valid until this
/// returns (the caller is suspended until then); every signal must be blocked.
pub(super) unsafe fn vfork_into(
    cgroup: RawFd,
    extra_flags: u64,
    stack: *mut c_void,
    stack_size: usize,
    child: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
) -> c_long {
    let args = CloneArgs {
        flags: (nix::libc::CLONE_VM | nix::libc::CLONE_VFORK) as u64
            | CLONE_INTO_CGROUP
            | extra_flags,
        exit_signal: nix::libc::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: stack_size as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    // SAFETY: the caller's contract above; `args` lives on this frame, which the parent keeps
    // until the system call returns in it.
    unsafe {
        raw_clone3(
            &args,
            std::mem::size_of::<CloneArgs>(),
            child as *const c_void,
            arg,
        )
    }
}

/// The system call. In the child (return value 0, now on the new stack) it calls
/// `child(arg)` and exits with its result; the parent gets the child's pid or `-errno`.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(
    args: *const CloneArgs,
    size: usize,
    child: *const c_void,
    arg: *mut c_void,
) -> c_long {
    let ret: c_long;
    // SAFETY: see `vfork_into`. The kernel preserves every register but rax, rcx and r11
    // across `syscall`, so the child finds `child` in r13 and `arg` in r12; its stack pointer
    // is the top of the new stack (16-byte aligned), so after `call` pushes the return
    // address the callee sees the alignment the ABI promises. The child never comes back
    // here: it ends in `exit`.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const nix::libc::SYS_exit,
            inlateout("rax") nix::libc::SYS_clone3 => ret,
            in("rdi") args,
            in("rsi") size,
            in("r12") arg,
            in("r13") child,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn raw_clone3(
    args: *const CloneArgs,
    size: usize,
    child: *const c_void,
    arg: *mut c_void,
) -> c_long {
    let ret: c_long;
    // SAFETY: see `vfork_into`. The kernel preserves every register but x0 across `svc`, so
    // the child finds `child` in x9 and `arg` in x10; its stack pointer is the top of the new
    // stack (16-byte aligned). The child never comes back here: it ends in `exit`.
    unsafe {
        std::arch::asm!(
            "svc #0",
            "cbnz x0, 2f",
            "mov x29, xzr",
            "mov x30, xzr",
            "mov x0, x10",
            "blr x9",
            "mov x8, #{exit}",
            "svc #0",
            "brk #0",
            "2:",
            exit = const nix::libc::SYS_exit,
            inlateout("x0") args => ret,
            in("x1") size,
            in("x8") nix::libc::SYS_clone3,
            in("x9") child,
            in("x10") arg,
            lateout("x30") _,
        );
    }
    ret
}
