//! The raw C API of include/exmem/exmem.h, one to one. Prefer the safe types
//! of the crate root; these are for what they do not cover.
#![allow(non_camel_case_types, missing_docs)]

use std::ffi::c_void;
use std::os::raw::{c_char, c_int};

pub const EXMEM_VERSION_MAJOR: u32 = 0;
pub const EXMEM_VERSION_MINOR: u32 = 1;
pub const EXMEM_VERSION_PATCH: u32 = 0;

// enum exmem_policy
pub const EXMEM_PREFER_SECRET: c_int = 0;
pub const EXMEM_REQUIRE_SECRET: c_int = 1;
pub const EXMEM_LOCKED_ONLY: c_int = 2;

// enum exmem_protection_level
pub const EXMEM_PROT_NONE: c_int = 0;
pub const EXMEM_PROT_SECRET: c_int = 1;
pub const EXMEM_PROT_LOCKED: c_int = 2;

// enum exmem_fork_mode
pub const EXMEM_FORK_PRIVATE: c_int = 0;
pub const EXMEM_FORK_SHARE: c_int = 1;

// enum exmem_error
pub const EXMEM_OK: c_int = 0;
pub const EXMEM_E_INVALID: c_int = 1;
pub const EXMEM_E_NO_SECRET: c_int = 2;
pub const EXMEM_E_MEMLOCK: c_int = 3;
pub const EXMEM_E_MAXIMUM: c_int = 4;
pub const EXMEM_E_NO_MEMORY: c_int = 5;
pub const EXMEM_E_SYSTEM: c_int = 6;
pub const EXMEM_E_ALREADY: c_int = 7;
pub const EXMEM_E_PROTOCOL: c_int = 8;

// enum exmem_vault_access
pub const EXMEM_VAULT_READ: c_int = 1;
pub const EXMEM_VAULT_READ_WRITE: c_int = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct exmem_config {
    pub reserve: usize,
    pub growth: usize,
    pub maximum: usize,
    pub policy: c_int,
    pub fork_mode: c_int,
    pub canaries: c_int,
    pub quiet: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct exmem_stats {
    pub live_objects: usize,
    pub live_bytes: usize,
    pub reserved_bytes: usize,
    pub exclusive_pages: usize,
    pub memlock_bytes: usize,
    pub mappings: usize,
    pub regions: usize,
    pub protection: c_int,
    pub fallback_bytes: usize,
    pub vaults: usize,
}

#[repr(C)]
#[derive(Debug)]
pub struct exmem_shared {
    pub addr: *mut c_void,
    pub size: usize,
    pub fd: c_int,
    pub protection: c_int,
}

/// Opaque: only ever behind a pointer.
#[repr(C)]
pub struct exmem_vault {
    _private: [u8; 0],
}

extern "C" {
    pub fn exmem_init(cfg: *const exmem_config) -> c_int;

    pub fn exmem_alloc(size: usize) -> *mut c_void;
    pub fn exmem_calloc(n: usize, size: usize) -> *mut c_void;
    pub fn exmem_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    pub fn exmem_free(p: *mut c_void);
    pub fn exmem_usable_size(p: *const c_void) -> usize;

    pub fn exmem_protection() -> c_int;
    pub fn exmem_strerror(error: c_int) -> *const c_char;
    pub fn exmem_last_error() -> c_int;
    pub fn exmem_last_error_message() -> *const c_char;
    pub fn exmem_stats(out: *mut exmem_stats) -> c_int;

    pub fn exmem_share_create(size: usize, out: *mut exmem_shared) -> c_int;
    pub fn exmem_share_send(sock: c_int, s: *const exmem_shared) -> c_int;
    pub fn exmem_share_recv(sock: c_int, out: *mut exmem_shared) -> c_int;
    pub fn exmem_share_release(s: *mut exmem_shared) -> c_int;

    pub fn exmem_vault_create(size: usize) -> *mut exmem_vault;
    pub fn exmem_vault_open(v: *mut exmem_vault, access: c_int) -> *mut c_void;
    pub fn exmem_vault_close(v: *mut exmem_vault, access: c_int) -> c_int;
    pub fn exmem_vault_size(v: *const exmem_vault) -> usize;
    pub fn exmem_vault_destroy(v: *mut exmem_vault) -> c_int;

    pub fn exmem_read(fd: c_int, dst: *mut c_void, size: usize) -> isize;
    pub fn exmem_read_password(tty_fd: c_int, prompt: *const c_char, dst: *mut c_void, size: usize) -> isize;
    pub fn exmem_random(dst: *mut c_void, size: usize) -> c_int;
    pub fn exmem_adopt(src: *mut c_void, size: usize) -> *mut c_void;
    pub fn exmem_equal(a: *const c_void, b: *const c_void, size: usize) -> c_int;
    pub fn exmem_is_exclusive(p: *const c_void) -> c_int;
}
