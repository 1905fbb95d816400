//! The run-time settings of the process allocator. The binary and the benches use mimalloc
//! (README, Performance: glibc malloc was about a third of the engine's time); this module only
//! tunes it, it does not install it (`#[global_allocator]` is in `main.rs` and in each bench).
//! Options read before `main` runs are set at build time instead (`.cargo/config.toml`).

use std::os::raw::{c_int, c_long};

extern "C" {
    // mimalloc's option API (mimalloc.h), compiled and linked by the `mimalloc` crate.
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v3, the version the crate builds).
const PURGE_DELAY: c_int = 15;

/// How long freed memory stays committed before it is returned to the OS, in milliseconds
/// (mimalloc's default is 10, times 10 for arenas).
const PURGE_DELAY_MS: c_long = 1_000;

/// Tunes the allocator for the daemon; call it first thing in `main`.
///
/// With arenas committed on demand (so that freed memory does not stay resident), mimalloc
/// returned freed pages to the OS 100 ms after a pass and faulted them in again on the next:
/// the engine ran at 425 000 contacts/s instead of 506 000. A longer purge delay lets memory
/// freed by one pass be reused by the next, and is still returned between idle poll cycles.
pub fn tune() {
    // SAFETY: `mi_option_set` only stores an integer option; any option and value are valid,
    // and it may be called at any time from any thread.
    unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}
