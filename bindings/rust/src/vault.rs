//! Vault: exclusive memory that is inaccessible (PROT_NONE) while unused.
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::{sys, Error, Protection, Result};

/// A page-granular exclusive mapping of its own, flanked by guard pages, that
/// is inaccessible (PROT_NONE) except while a guard is alive: [`Vault::open_read`]
/// gives a read-only view, [`Vault::open_read_write`] a writable one, and the
/// memory returns to PROT_NONE when the last guard drops. Zeroed at creation,
/// wiped and unmapped on drop. Counts towards the configured maximum.
///
/// Borrowing enforces what the C side counts: any number of read guards
/// (from any thread: `Vault` is `Sync`), or one read-write guard.
pub struct Vault {
    raw: NonNull<sys::exmem_vault>,
}

// SAFETY: every exmem_vault_* function is thread-safe, and the C side counts
// concurrent opens; Rust's borrows keep writers exclusive.
unsafe impl Send for Vault {}
unsafe impl Sync for Vault {}

impl Vault {
    /// A new, closed vault of at least `size` bytes (rounded up to whole pages).
    /// Size 0 fails with [`crate::ErrorKind::Invalid`].
    pub fn create(size: usize) -> Result<Vault> {
        // SAFETY: plain creation.
        let raw = unsafe { sys::exmem_vault_create(size) };
        NonNull::new(raw).map(|raw| Vault { raw }).ok_or_else(Error::last)
    }

    /// Usable bytes (a whole number of pages).
    pub fn size(&self) -> usize {
        // SAFETY: raw is a live vault.
        unsafe { sys::exmem_vault_size(self.raw.as_ptr()) }
    }

    /// Opens the vault read-only until the guard drops.
    pub fn open_read(&self) -> Result<VaultRead<'_>> {
        let p = self.open(sys::EXMEM_VAULT_READ)?;
        Ok(VaultRead { vault: self, ptr: p, len: self.size() })
    }

    /// Opens the vault readable and writable until the guard drops.
    pub fn open_read_write(&mut self) -> Result<VaultWrite<'_>> {
        let p = self.open(sys::EXMEM_VAULT_READ_WRITE)?;
        let len = self.size();
        Ok(VaultWrite { vault: self, ptr: p, len })
    }

    fn open(&self, access: i32) -> Result<NonNull<u8>> {
        // SAFETY: raw is a live vault.
        let p = unsafe { sys::exmem_vault_open(self.raw.as_ptr(), access) } as *mut u8;
        NonNull::new(p).ok_or_else(Error::last)
    }

    fn close(&self, access: i32) {
        // SAFETY: matches the open the guard made.
        let rc = unsafe { sys::exmem_vault_close(self.raw.as_ptr(), access) };
        debug_assert_eq!(rc, sys::EXMEM_OK, "exmem_vault_close");
    }

    /// The raw handle (for the C API).
    pub fn as_raw(&self) -> *mut sys::exmem_vault {
        self.raw.as_ptr()
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        // No guard is alive (they borrow the vault), so destroy succeeds.
        // SAFETY: raw is ours and closed.
        let rc = unsafe { sys::exmem_vault_destroy(self.raw.as_ptr()) };
        debug_assert_eq!(rc, sys::EXMEM_OK, "exmem_vault_destroy");
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").field("size", &self.size()).finish_non_exhaustive()
    }
}

/// A read-only view of an open vault; closes it on drop.
pub struct VaultRead<'a> {
    vault: &'a Vault,
    ptr: NonNull<u8>,
    len: usize,
}

/// A writable view of an open vault; closes it on drop.
pub struct VaultWrite<'a> {
    vault: &'a Vault,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a read guard is a shared borrow of readable memory.
unsafe impl Send for VaultRead<'_> {}
unsafe impl Sync for VaultRead<'_> {}
// SAFETY: a write guard is the only borrow of its memory.
unsafe impl Send for VaultWrite<'_> {}
unsafe impl Sync for VaultWrite<'_> {}

impl Deref for VaultRead<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the vault is mapped readable while this guard is alive.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Deref for VaultWrite<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the vault is mapped read-write while this guard is alive.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for VaultWrite<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; the guard holds the vault's only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl VaultRead<'_> {
    /// The protection of the vault's memory.
    pub fn protection(&self) -> Protection {
        crate::is_exclusive(&**self)
    }
}

impl VaultWrite<'_> {
    /// The protection of the vault's memory.
    pub fn protection(&self) -> Protection {
        crate::is_exclusive(&**self)
    }
}

impl Drop for VaultRead<'_> {
    fn drop(&mut self) {
        self.vault.close(sys::EXMEM_VAULT_READ);
    }
}

impl Drop for VaultWrite<'_> {
    fn drop(&mut self) {
        self.vault.close(sys::EXMEM_VAULT_READ_WRITE);
    }
}

impl fmt::Debug for VaultRead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultRead").field("len", &self.len).finish_non_exhaustive()
    }
}

impl fmt::Debug for VaultWrite<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultWrite").field("len", &self.len).finish_non_exhaustive()
    }
}
