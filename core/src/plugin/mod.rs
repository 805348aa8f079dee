//! Writing a plugin: implement [`Task`] and export it with [`export_plugin!`](crate::export_plugin).
//!
//! ```
//! use nonstop_core::plugin::{Context, Task};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Args {
//!     #[serde(default = "three")]
//!     times: u32,
//! }
//! fn three() -> u32 { 3 }
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Task for Hello {
//!     type Args = Args;
//!     fn validate(args: &Args) -> Result<(), String> {
//!         if args.times == 0 { return Err("times: must be at least 1".into()); }
//!         Ok(())
//!     }
//!     fn run(ctx: &mut Context<'_>, args: Args) -> Result<(), String> {
//!         for i in 0..args.times {
//!             if ctx.stop_requested() { break; }
//!             ctx.log(&format!("hello {i}"));
//!             ctx.beat();
//!         }
//!         Ok(())
//!     }
//! }
//!
//! nonstop_core::export_plugin!(Hello, name = "hello", description = "says hello");
//! ```
//!
//! The arguments arrive as JSON text (the runner converts the task's `args:` from YAML) and are
//! deserialized into `Args`; with `#[serde(deny_unknown_fields)]` a misspelt field is an error
//! that names it. A `validate` error may start with the argument's path and a colon
//! (`times: must be...`): `nonstop check` then points at that argument in the pipeline file.
//! A panic in `validate` or `run` is caught at the boundary and becomes the task's failure,
//! with the panic's message.

pub mod abi;
#[doc(hidden)]
pub mod sdk;

pub use sdk::Context;

/// A plugin task.
pub trait Task {
    /// Its arguments (the task's `args:`), deserialized from JSON.
    type Args: serde::de::DeserializeOwned;

    /// Checks `args` beyond what deserializing them checks. Makes no changes anywhere: `nonstop
    /// check` calls it. The default accepts everything.
    fn validate(args: &Self::Args) -> Result<(), String> {
        let _ = args;
        Ok(())
    }

    /// Does the task. `Err` is a failure, with its reason.
    fn run(ctx: &mut Context<'_>, args: Self::Args) -> Result<(), String>;
}

/// Exports `$task` (a type that implements [`Task`]) as this library's plugin:
///
/// ```ignore
/// nonstop_core::export_plugin!(Gzip, name = "gzip", description = "compress old files");
/// ```
///
/// The version is the crate's (`CARGO_PKG_VERSION`). The library must be a `cdylib`. No
/// `unsafe` is needed in the plugin's own code: the macro carries it.
#[macro_export]
macro_rules! export_plugin {
    ($task:ty, name = $name:expr, description = $description:expr $(,)?) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub static NONSTOP_PLUGIN: $crate::plugin::abi::Declaration =
            $crate::plugin::abi::Declaration {
                magic: $crate::plugin::abi::MAGIC,
                abi_version: $crate::plugin::abi::ABI_VERSION,
                size: $crate::plugin::abi::DECLARATION_SIZE,
                name: $crate::plugin::abi::Str::new($name),
                version: $crate::plugin::abi::Str::new(env!("CARGO_PKG_VERSION")),
                description: $crate::plugin::abi::Str::new($description),
                sdk_version: $crate::plugin::abi::Str::new($crate::plugin::sdk::SDK_VERSION),
                validate: {
                    #[allow(unsafe_code)]
                    unsafe extern "C" fn validate(
                        args: $crate::plugin::abi::Str,
                        host: *const $crate::plugin::abi::Host,
                    ) -> i32 {
                        // SAFETY: the host's contract (see `abi`): `args` and `host` are valid
                        // for this call.
                        unsafe { $crate::plugin::sdk::validate::<$task>(args, host) }
                    }
                    validate
                },
                run: {
                    #[allow(unsafe_code)]
                    unsafe extern "C" fn run(
                        args: $crate::plugin::abi::Str,
                        host: *const $crate::plugin::abi::Host,
                    ) -> i32 {
                        // SAFETY: as above.
                        unsafe { $crate::plugin::sdk::run::<$task>(args, host) }
                    }
                    run
                },
            };
    };
}
