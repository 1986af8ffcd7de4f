//! Secrets in exclusive memory, over libexmem's C API.
//!
//! Memory from this crate lives in memfd_secret(2) regions: pages the kernel
//! removed from its direct map, so that other processes (even root, through
//! /proc/PID/mem, process_vm_readv or ptrace), core dumps and swap cannot reach
//! them. When memfd_secret is unavailable, the policy decides: locked memory
//! (mlock, MADV_DONTDUMP, MADV_WIPEONFORK, guard pages), or failure. Every
//! object is wiped when it is freed.
//!
//! * [`Secret<T>`]: one `T: Copy` value, wiped on drop.
//! * [`SecretVec`]: growable bytes, wiped on drop, on truncation and whenever
//!   the buffer moves.
//! * [`SecretString`]: the same, UTF-8 checked.
//! * [`Vault`]: memory that is inaccessible (PROT_NONE) except while a
//!   [`VaultRead`] or [`VaultWrite`] guard is alive.
//! * [`SharedRegion`]: exclusive memory passed to another process over a Unix
//!   socket.
//! * Input without plaintext copies: [`read`], [`read_password`], [`random`],
//!   [`adopt`]; constant-time comparison: [`equal`].
//!
//! Every function is thread-safe (libexmem's own promise); the types are
//! `Send` and `Sync` where their contents are.
//!
//! ```no_run
//! let mut key = exmem::SecretVec::random(32)?;          // in exclusive memory
//! assert_eq!(exmem::is_exclusive(&key[..]), exmem::protection());
//! key[0] ^= 1;
//! println!("{:?}", key);                                 // SecretVec { len: 32, .. }
//! # Ok::<(), exmem::Error>(())
//! ```
#![warn(missing_docs)]

use std::ffi::c_void;
use std::io;
use std::os::unix::io::AsRawFd;

mod error;
mod secret;
mod share;
mod string;
mod vault;
mod vec;

pub mod sys;

pub use error::{strerror, Error, ErrorKind, Result};
pub use secret::Secret;
pub use share::SharedRegion;
pub use string::SecretString;
pub use vault::{Vault, VaultRead, VaultWrite};
pub use vec::SecretVec;

/// What protects exclusive memory (enum exmem_protection_level).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protection {
    /// No backend chosen yet or none could be had; for [`is_exclusive`]: not
    /// exmem memory.
    None,
    /// memfd_secret: removed from the kernel direct map.
    Secret,
    /// mlock + MADV_DONTDUMP + MADV_WIPEONFORK + guard pages.
    Locked,
}

impl Protection {
    /// From the C enum's value (unknown values read as `None`).
    pub fn from_raw(level: i32) -> Protection {
        match level {
            sys::EXMEM_PROT_SECRET => Protection::Secret,
            sys::EXMEM_PROT_LOCKED => Protection::Locked,
            _ => Protection::None,
        }
    }
}

/// Where exclusive memory may come from (enum exmem_policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// memfd_secret, else locked memory (said once on stderr). The default.
    PreferSecret,
    /// memfd_secret or nothing.
    RequireSecret,
    /// Never memfd_secret: locked anonymous memory only.
    LockedOnly,
}

/// What a child created by fork() gets (enum exmem_fork_mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForkMode {
    /// The child cannot reach the parent's secrets. The default.
    Private,
    /// The child keeps the parent's regions mapped and shared.
    Share,
}

/// The heap's set-up (struct exmem_config), for [`init`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes to reserve and pre-fault now (0: none until first use).
    pub reserve: usize,
    /// Bytes per new region (0: 1 MiB; regions grow up to 16x this).
    pub growth: usize,
    /// Cap on exclusive bytes held (0: no cap but the address-space reserve).
    pub maximum: usize,
    /// Where memory may come from.
    pub policy: Policy,
    /// What fork() children get.
    pub fork_mode: ForkMode,
    /// A canary after every small object, checked at free.
    pub canaries: bool,
    /// Do not announce a fallback to locked memory on stderr.
    pub quiet: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            reserve: 0,
            growth: 0,
            maximum: 0,
            policy: Policy::PreferSecret,
            fork_mode: ForkMode::Private,
            canaries: false,
            quiet: false,
        }
    }
}

impl Config {
    /// The C struct.
    pub fn to_raw(&self) -> sys::exmem_config {
        sys::exmem_config {
            reserve: self.reserve,
            growth: self.growth,
            maximum: self.maximum,
            policy: match self.policy {
                Policy::PreferSecret => sys::EXMEM_PREFER_SECRET,
                Policy::RequireSecret => sys::EXMEM_REQUIRE_SECRET,
                Policy::LockedOnly => sys::EXMEM_LOCKED_ONLY,
            },
            fork_mode: match self.fork_mode {
                ForkMode::Private => sys::EXMEM_FORK_PRIVATE,
                ForkMode::Share => sys::EXMEM_FORK_SHARE,
            },
            canaries: self.canaries as i32,
            quiet: self.quiet as i32,
        }
    }
}

/// Sets up the heap explicitly (exmem_init); the first allocation otherwise
/// sets up the defaults (which EXMEM_POLICY and EXMEM_FORK may change). A second
/// call with an identical config succeeds; with another it fails with
/// [`ErrorKind::Already`].
pub fn init(config: &Config) -> Result<()> {
    let raw = config.to_raw();
    // SAFETY: raw is a valid exmem_config for the call's duration.
    let rc = unsafe { sys::exmem_init(&raw) };
    if rc == sys::EXMEM_OK {
        Ok(())
    } else {
        Err(Error::from_code(rc))
    }
}

/// The protection of the backend in use (sets up the heap if needed).
pub fn protection() -> Protection {
    // SAFETY: no arguments.
    Protection::from_raw(unsafe { sys::exmem_protection() })
}

/// The protection of the exmem memory holding `value` (a live heap object, an
/// open vault or a shared region of this process); [`Protection::None`] for
/// any other memory.
pub fn is_exclusive<T: ?Sized>(value: &T) -> Protection {
    // SAFETY: exmem_is_exclusive only looks the address up.
    Protection::from_raw(unsafe { sys::exmem_is_exclusive(value as *const T as *const c_void) })
}

/// The heap's statistics (struct exmem_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Objects allocated and not yet freed.
    pub live_objects: usize,
    /// Their usable bytes (size-class rounded).
    pub live_bytes: usize,
    /// Bytes of exclusive memory mapped and pre-faulted.
    pub reserved_bytes: usize,
    /// Pages removed from the direct map (0 for locked memory).
    pub exclusive_pages: usize,
    /// Bytes charged to RLIMIT_MEMLOCK.
    pub memlock_bytes: usize,
    /// VMAs the heap uses (regions, large objects, guards).
    pub mappings: usize,
    /// memfd_secret files (or locked mappings) in use.
    pub regions: usize,
    /// The backend's protection.
    pub protection: Protection,
    /// Bytes held in locked memory because memfd_secret was unavailable and
    /// [`Policy::PreferSecret`] fell back.
    pub fallback_bytes: usize,
    /// Vaults in existence.
    pub vaults: usize,
}

impl Default for Protection {
    fn default() -> Protection {
        Protection::None
    }
}

/// The heap's statistics now.
pub fn stats() -> Result<Stats> {
    let mut s = sys::exmem_stats::default();
    // SAFETY: s is a valid out-parameter.
    let rc = unsafe { sys::exmem_stats(&mut s) };
    if rc != sys::EXMEM_OK {
        return Err(Error::from_code(rc));
    }
    Ok(Stats {
        live_objects: s.live_objects,
        live_bytes: s.live_bytes,
        reserved_bytes: s.reserved_bytes,
        exclusive_pages: s.exclusive_pages,
        memlock_bytes: s.memlock_bytes,
        mappings: s.mappings,
        regions: s.regions,
        protection: Protection::from_raw(s.protection),
        fallback_bytes: s.fallback_bytes,
        vaults: s.vaults,
    })
}

/// Whether `a` and `b` hold the same bytes, in time that depends on the
/// length only (exmem_equal). Slices of different lengths are unequal (the
/// lengths are not secret).
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.is_empty() {
        return true;
    }
    // SAFETY: both slices hold a.len() readable bytes.
    unsafe { sys::exmem_equal(a.as_ptr() as *const c_void, b.as_ptr() as *const c_void, a.len()) == 1 }
}

/// Fills `dst` with random bytes from the kernel (exmem_random). `dst` must be
/// exmem memory (a [`SecretVec`]'s bytes, an open vault, a shared region):
/// anything else is refused with [`ErrorKind::Invalid`].
pub fn fill_random(dst: &mut [u8]) -> Result<()> {
    if dst.is_empty() {
        return Ok(());
    }
    // SAFETY: dst holds dst.len() writable bytes.
    let rc = unsafe { sys::exmem_random(dst.as_mut_ptr() as *mut c_void, dst.len()) };
    if rc == sys::EXMEM_OK {
        Ok(())
    } else {
        Err(Error::from_code(rc))
    }
}

/// `len` random bytes in a new [`SecretVec`].
pub fn random(len: usize) -> Result<SecretVec> {
    SecretVec::random(len)
}

/// Moves the bytes of `src` into a new [`SecretVec`] and wipes `src` (which the
/// compiler cannot elide). On failure `src` is untouched.
pub fn adopt(src: &mut [u8]) -> Result<SecretVec> {
    SecretVec::adopt(src)
}

/// Reads from `fd` into a new [`SecretVec`] until `max` bytes or end of file
/// (exmem_read: no buffer but exmem memory holds the bytes).
pub fn read<F: AsRawFd + ?Sized>(fd: &F, max: usize) -> Result<SecretVec> {
    SecretVec::read_from(fd, max)
}

/// Prompts on the controlling terminal (/dev/tty) with echo off and reads one
/// line of at most `max` bytes, without its newline (exmem_read_password).
pub fn read_password(prompt: &str, max: usize) -> Result<SecretString> {
    SecretString::read_password(prompt, max)
}

/// Zeroes `bytes` with stores the compiler cannot drop.
pub fn wipe(bytes: &mut [u8]) {
    wipe_raw(bytes.as_mut_ptr(), bytes.len());
}

pub(crate) fn wipe_raw(p: *mut u8, n: usize) {
    for i in 0..n {
        // SAFETY: the caller passes n writable bytes at p.
        unsafe { std::ptr::write_volatile(p.add(i), 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

pub(crate) fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}
