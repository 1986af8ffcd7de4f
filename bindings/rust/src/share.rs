//! SharedRegion: exclusive memory passed to another process.
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::unix::io::AsRawFd;

use crate::{sys, Error, Protection, Result};

/// A shared exclusive region (exmem_share_*): created zeroed here, passed to
/// another process over a connected AF_UNIX socket with [`SharedRegion::send`]
/// (its memfd travels by SCM_RIGHTS) and mapped there by
/// [`SharedRegion::recv`]. Dropping it unmaps it and closes its descriptor; the
/// last holder's release frees it.
///
/// The bytes deref to `[u8]`: another process holding the region may write
/// them at any time, so agree on who writes when (as with any shared mapping).
pub struct SharedRegion {
    raw: sys::exmem_shared,
}

// SAFETY: the mapping and descriptor are owned by the value; the C functions are thread-safe.
unsafe impl Send for SharedRegion {}
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// A new region of at least `size` bytes (whole pages), zeroed.
    pub fn create(size: usize) -> Result<SharedRegion> {
        let mut raw = empty();
        // SAFETY: raw is a valid out-parameter.
        let rc = unsafe { sys::exmem_share_create(size, &mut raw) };
        if rc != sys::EXMEM_OK {
            return Err(Error::from_code(rc));
        }
        Ok(SharedRegion { raw })
    }

    /// Sends the region's descriptor and size over the connected AF_UNIX socket `sock`.
    pub fn send<S: AsRawFd + ?Sized>(&self, sock: &S) -> Result<()> {
        // SAFETY: raw describes our live region.
        let rc = unsafe { sys::exmem_share_send(sock.as_raw_fd(), &self.raw) };
        if rc == sys::EXMEM_OK {
            Ok(())
        } else {
            Err(Error::from_code(rc))
        }
    }

    /// Receives a region sent with [`SharedRegion::send`] and maps it here.
    pub fn recv<S: AsRawFd + ?Sized>(sock: &S) -> Result<SharedRegion> {
        let mut raw = empty();
        // SAFETY: raw is a valid out-parameter.
        let rc = unsafe { sys::exmem_share_recv(sock.as_raw_fd(), &mut raw) };
        if rc != sys::EXMEM_OK {
            return Err(Error::from_code(rc));
        }
        Ok(SharedRegion { raw })
    }

    /// Bytes in the region (a whole number of pages).
    pub fn len(&self) -> usize {
        self.raw.size
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        self.raw.size == 0
    }

    /// The memfd behind the region (owned by the region).
    pub fn fd(&self) -> i32 {
        self.raw.fd
    }

    /// What protects the region.
    pub fn protection(&self) -> Protection {
        Protection::from_raw(self.raw.protection)
    }
}

fn empty() -> sys::exmem_shared {
    sys::exmem_shared { addr: std::ptr::null_mut(), size: 0, fd: -1, protection: 0 }
}

impl AsRawFd for SharedRegion {
    fn as_raw_fd(&self) -> i32 {
        self.raw.fd
    }
}

impl Deref for SharedRegion {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: addr maps size bytes while the region is alive.
        unsafe { std::slice::from_raw_parts(self.raw.addr as *const u8, self.raw.size) }
    }
}

impl DerefMut for SharedRegion {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, writable.
        unsafe { std::slice::from_raw_parts_mut(self.raw.addr as *mut u8, self.raw.size) }
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: raw describes our live region.
        unsafe { sys::exmem_share_release(&mut self.raw) };
    }
}

impl fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRegion")
            .field("len", &self.raw.size)
            .field("protection", &self.protection())
            .finish_non_exhaustive()
    }
}
