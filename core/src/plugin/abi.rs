//! The plugin ABI, version 1: the only things that cross between the task host (`nonstop`)
//! and a plugin library. C types only (pointers with lengths, integers, function pointers),
//! so a plugin built by another rustc, or written in C, works; no trait object, `String` or
//! `Vec` ever crosses.
//!
//! A plugin exports one symbol, [`SYMBOL`]: a [`Declaration`] that starts with [`MAGIC`], the
//! ABI version and its own size, which the host checks before it reads anything else or calls
//! anything. Then the plugin's name, version, description, the SDK version it was built with,
//! and its two entry points. Every entry point gets the arguments as UTF-8 JSON text and a
//! [`Host`]: function pointers through which the plugin beats, logs, learns that it was asked
//! to stop, and reports an error.
//!
//! In C:
//!
//! ```c
//! struct nonstop_str { const char *ptr; size_t len; };
//! struct nonstop_host {
//!     void *ctx;
//!     void (*beat)(void *ctx);
//!     bool (*stop_requested)(void *ctx);
//!     void (*log)(void *ctx, struct nonstop_str line);
//!     void (*fail)(void *ctx, struct nonstop_str path, struct nonstop_str message);
//! };
//! struct nonstop_plugin {
//!     uint64_t magic;            /* "nsplugin" read as a little-endian u64 */
//!     uint32_t abi_version;      /* 1 */
//!     uint32_t size;             /* sizeof(struct nonstop_plugin) */
//!     struct nonstop_str name, version, description, sdk_version;
//!     int32_t (*validate)(struct nonstop_str args, const struct nonstop_host *host);
//!     int32_t (*run)(struct nonstop_str args, const struct nonstop_host *host);
//! };
//! const struct nonstop_plugin NONSTOP_PLUGIN = { ... };
//! ```
//!
//! An entry point returns 0 for success; anything else is a failure, whose reason the plugin
//! gave through `fail` (an empty `path` for the task as a whole; for `validate`, the dotted
//! path of the argument at fault, such as `older_than` or `match[2]`).

use std::ffi::c_void;

/// The exported symbol's name (NUL-terminated, as `dlsym` takes it).
pub const SYMBOL: &[u8] = b"NONSTOP_PLUGIN\0";
/// `"nsplugin"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"nsplugin");
/// The ABI version this SDK and this runner speak.
pub const ABI_VERSION: u32 = 1;

/// A borrowed UTF-8 string: a pointer and a length, valid for the call it is passed to (or,
/// in a [`Declaration`], for the life of the library).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Str {
    /// The first byte.
    pub ptr: *const u8,
    /// The number of bytes.
    pub len: usize,
}

impl Str {
    /// `s`, borrowed.
    pub const fn new(s: &str) -> Str {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The text, lossily decoded; empty for a null pointer.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid and unchanged for `'a`.
    #[allow(unsafe_code)]
    pub unsafe fn to_str<'a>(self) -> std::borrow::Cow<'a, str> {
        if self.ptr.is_null() || self.len == 0 {
            return std::borrow::Cow::Borrowed("");
        }
        // SAFETY: the caller's contract.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        String::from_utf8_lossy(bytes)
    }
}

/// What the host lends a plugin for one call.
#[repr(C)]
#[derive(Debug)]
pub struct Host {
    /// The host's own state, passed back to every function below.
    pub ctx: *mut c_void,
    /// One heartbeat for the task (a no-op when the task has none).
    pub beat: extern "C" fn(ctx: *mut c_void),
    /// Whether the task was asked to stop (SIGTERM): finish soon, and return.
    pub stop_requested: extern "C" fn(ctx: *mut c_void) -> bool,
    /// One line for the task's log.
    pub log: extern "C" fn(ctx: *mut c_void, line: Str),
    /// The reason of a failure: the argument at fault (dotted path; empty for the task as a
    /// whole) and the message.
    pub fail: extern "C" fn(ctx: *mut c_void, path: Str, message: Str),
}

/// An entry point: the arguments as JSON text, and the host. 0 is success.
pub type EntryFn = unsafe extern "C" fn(args: Str, host: *const Host) -> i32;

/// The exported declaration.
#[repr(C)]
#[derive(Debug)]
pub struct Declaration {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`ABI_VERSION`] when the plugin was built.
    pub abi_version: u32,
    /// `size_of::<Declaration>()` when the plugin was built.
    pub size: u32,
    /// The plugin's name (`gzip`).
    pub name: Str,
    /// Its version (`1.2.0`).
    pub version: Str,
    /// One line that says what it does.
    pub description: Str,
    /// The version of `nonstop-core` it was built with.
    pub sdk_version: Str,
    /// Checks the arguments without doing anything.
    pub validate: EntryFn,
    /// Does the task.
    pub run: EntryFn,
}

// SAFETY: a declaration is immutable, and its pointers are to `'static` strings and to
// functions; a plugin's entry points may be called from any thread (the host calls them from
// one).
#[allow(unsafe_code)]
unsafe impl Sync for Declaration {}

/// The size of a [`Declaration`] in this ABI version, as the host checks it.
pub const DECLARATION_SIZE: u32 = std::mem::size_of::<Declaration>() as u32;

const _: () = {
    // 8 + 4 + 4 + 4 strings of 16 bytes + 2 function pointers on 64-bit targets.
    assert!(std::mem::size_of::<Str>() == 2 * std::mem::size_of::<usize>());
    assert!(std::mem::offset_of!(Declaration, magic) == 0);
    assert!(std::mem::offset_of!(Declaration, abi_version) == 8);
    assert!(std::mem::offset_of!(Declaration, size) == 12);
};
