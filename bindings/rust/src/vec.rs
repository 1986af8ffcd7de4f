//! SecretVec: growable bytes in exclusive memory.
use std::ffi::c_void;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;

use crate::{sys, wipe_raw, Error, Protection, Result};

/// Bytes in exclusive memory, growable like a `Vec<u8>`.
///
/// The bytes are wiped when the vector is dropped, when [`truncate`] or
/// [`clear`] shortens it, and whenever growing moves the buffer (the old
/// buffer is wiped before it is released). Growing allocates and can fail, so
/// the growing methods return [`Result`].
///
/// `Debug` prints the length only. `==` compares in constant time for a given
/// length ([`crate::equal`]).
///
/// [`truncate`]: SecretVec::truncate
/// [`clear`]: SecretVec::clear
pub struct SecretVec {
    ptr: NonNull<u8>, // dangling while cap == 0
    len: usize,
    cap: usize,
}

// SAFETY: SecretVec owns its buffer like a Vec<u8>; the heap is thread-safe.
unsafe impl Send for SecretVec {}
unsafe impl Sync for SecretVec {}

impl SecretVec {
    /// An empty vector; it allocates nothing until it grows.
    pub const fn new() -> SecretVec {
        SecretVec { ptr: NonNull::dangling(), len: 0, cap: 0 }
    }

    /// An empty vector with room for at least `cap` bytes.
    pub fn with_capacity(cap: usize) -> Result<SecretVec> {
        let mut v = SecretVec::new();
        v.reserve(cap)?;
        Ok(v)
    }

    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Result<SecretVec> {
        let mut v = SecretVec::with_capacity(len)?;
        v.resize(len, 0)?;
        Ok(v)
    }

    /// A copy of `bytes`. The source stays as it is: wipe it, or use
    /// [`SecretVec::adopt`], which does.
    pub fn from_slice(bytes: &[u8]) -> Result<SecretVec> {
        let mut v = SecretVec::with_capacity(bytes.len())?;
        v.extend_from_slice(bytes)?;
        Ok(v)
    }

    /// `len` random bytes from the kernel, written straight into exclusive
    /// memory (exmem_random).
    pub fn random(len: usize) -> Result<SecretVec> {
        let mut v = SecretVec::zeroed(len)?;
        crate::fill_random(&mut v)?;
        Ok(v)
    }

    /// Moves the bytes of `src` into a new vector and wipes `src`
    /// (exmem_adopt). On failure `src` is untouched.
    pub fn adopt(src: &mut [u8]) -> Result<SecretVec> {
        if src.is_empty() {
            return Ok(SecretVec::new());
        }
        // SAFETY: src holds src.len() writable bytes; exmem_adopt copies then wipes them.
        let p = unsafe { sys::exmem_adopt(src.as_mut_ptr() as *mut c_void, src.len()) } as *mut u8;
        let ptr = NonNull::new(p).ok_or_else(|| Error::last_with_errno(crate::last_os_error().raw_os_error().unwrap_or(0)))?;
        // SAFETY: p is a live object of ours.
        let cap = unsafe { sys::exmem_usable_size(p as *const c_void) }.max(src.len());
        Ok(SecretVec { ptr, len: src.len(), cap })
    }

    /// Reads from `fd` until `max` bytes or end of file, straight into
    /// exclusive memory (exmem_read retries short reads and EINTR). On error
    /// the bytes read so far are wiped.
    pub fn read_from<F: AsRawFd + ?Sized>(fd: &F, max: usize) -> Result<SecretVec> {
        let mut v = SecretVec::with_capacity(max)?;
        if max == 0 {
            return Ok(v);
        }
        // SAFETY: v has room for max bytes of exmem memory.
        let n = unsafe { sys::exmem_read(fd.as_raw_fd(), v.ptr.as_ptr() as *mut c_void, max) };
        if n < 0 {
            return Err(Error::from_errno(crate::last_os_error()));
        }
        v.len = n as usize;
        Ok(v)
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes it can hold without moving.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The buffer's address (exmem memory; dangling while the capacity is 0).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The buffer's mutable address.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The protection of the buffer ([`Protection::None`] before it is allocated).
    pub fn protection(&self) -> Protection {
        if self.cap == 0 {
            return Protection::None;
        }
        // SAFETY: lookup of a live object's address.
        Protection::from_raw(unsafe { sys::exmem_is_exclusive(self.ptr.as_ptr() as *const c_void) })
    }

    /// Makes room for `additional` more bytes. When the buffer must move, the
    /// new one is allocated, the bytes copied and the old one wiped and freed
    /// (exmem_realloc); on failure nothing changes.
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        let need = self
            .len
            .checked_add(additional)
            .ok_or_else(|| Error::invalid(format!("SecretVec::reserve({}): the size overflows usize", additional)))?;
        if need <= self.cap {
            return Ok(());
        }
        let want = need.max(self.cap.saturating_mul(2)).max(16);
        self.grow_to(want).or_else(|_| self.grow_to(need))
    }

    /// Makes room for exactly `additional` more bytes (the heap may round up).
    pub fn reserve_exact(&mut self, additional: usize) -> Result<()> {
        let need = self
            .len
            .checked_add(additional)
            .ok_or_else(|| Error::invalid(format!("SecretVec::reserve_exact({}): the size overflows usize", additional)))?;
        if need <= self.cap {
            return Ok(());
        }
        self.grow_to(need)
    }

    fn grow_to(&mut self, cap: usize) -> Result<()> {
        let old = if self.cap == 0 { std::ptr::null_mut() } else { self.ptr.as_ptr() as *mut c_void };
        // The bytes past len are zero already (fresh objects are zero and
        // truncation wipes), so exmem_realloc copies nothing that was given up.
        // SAFETY: old is null or our live object; on failure it is untouched.
        let p = unsafe { sys::exmem_realloc(old, cap) } as *mut u8;
        let ptr = NonNull::new(p).ok_or_else(Error::last)?;
        self.ptr = ptr;
        // SAFETY: p is a live object of ours.
        self.cap = unsafe { sys::exmem_usable_size(p as *const c_void) }.max(cap);
        Ok(())
    }

    /// Appends one byte.
    pub fn push(&mut self, byte: u8) -> Result<()> {
        self.reserve(1)?;
        // SAFETY: len < cap after reserve.
        unsafe { self.ptr.as_ptr().add(self.len).write(byte) };
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the last byte (its place is wiped).
    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: the byte at len is within the buffer.
        let b = unsafe { self.ptr.as_ptr().add(self.len).read() };
        wipe_raw(unsafe { self.ptr.as_ptr().add(self.len) }, 1);
        Some(b)
    }

    /// Appends `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<()> {
        self.reserve(bytes.len())?;
        // SAFETY: room for bytes.len() more after reserve; the source cannot
        // overlap our tail, which no one else can borrow.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(self.len), bytes.len()) };
        self.len += bytes.len();
        Ok(())
    }

    /// Sets the length to `len`, filling new bytes with `value` and wiping
    /// dropped ones.
    pub fn resize(&mut self, len: usize, value: u8) -> Result<()> {
        if len <= self.len {
            self.truncate(len);
            return Ok(());
        }
        self.reserve(len - self.len)?;
        // SAFETY: room for len bytes after reserve.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), value, len - self.len) };
        self.len = len;
        Ok(())
    }

    /// Shortens to `len` bytes, wiping the rest.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        // SAFETY: [len, self.len) lies within the buffer.
        wipe_raw(unsafe { self.ptr.as_ptr().add(len) }, self.len - len);
        self.len = len;
    }

    /// Wipes every byte; the capacity stays.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// A copy in new exclusive memory.
    pub fn try_clone(&self) -> Result<SecretVec> {
        SecretVec::from_slice(self)
    }

    /// The bytes past the length, writable, up to the capacity. With
    /// [`SecretVec::set_len`], lets a producer write into exclusive memory
    /// directly. They are zero unless written.
    pub fn spare_capacity_mut(&mut self) -> &mut [u8] {
        if self.cap == 0 {
            return &mut [];
        }
        // SAFETY: [len, cap) is allocated, initialised (zero or written) and ours.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len), self.cap - self.len) }
    }

    /// Sets the length.
    ///
    /// # Panics
    /// If `len` exceeds the capacity. The spare bytes are always initialised,
    /// so this is safe.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "SecretVec::set_len({}) beyond the capacity {}", len, self.cap);
        if len < self.len {
            self.truncate(len);
        }
        self.len = len;
    }
}

impl Default for SecretVec {
    fn default() -> SecretVec {
        SecretVec::new()
    }
}

impl Deref for SecretVec {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr holds len initialised bytes (or is dangling with len 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for SecretVec {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, borrowed mutably through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for SecretVec {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for SecretVec {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl Drop for SecretVec {
    fn drop(&mut self) {
        if self.cap != 0 {
            // SAFETY: our live object; exmem_free wipes it before release.
            unsafe { sys::exmem_free(self.ptr.as_ptr() as *mut c_void) };
        }
    }
}

impl PartialEq for SecretVec {
    fn eq(&self, other: &SecretVec) -> bool {
        crate::equal(self, other)
    }
}

impl Eq for SecretVec {}

impl fmt::Debug for SecretVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretVec").field("len", &self.len).finish_non_exhaustive()
    }
}

impl std::io::Write for SecretVec {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
