//! SecretString: UTF-8 text in exclusive memory.
use std::ffi::{c_void, CString};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::unix::io::AsRawFd;

use crate::{sys, Error, Protection, Result, SecretVec};

/// UTF-8 text in exclusive memory: a [`SecretVec`] whose bytes are checked to
/// be UTF-8. Wiped like it (on drop, truncation and moves). `Debug` prints the
/// length only; `==` compares in constant time for a given length.
#[derive(Default, PartialEq, Eq)]
pub struct SecretString {
    bytes: SecretVec,
}

impl SecretString {
    /// An empty string (allocates nothing).
    pub const fn new() -> SecretString {
        SecretString { bytes: SecretVec::new() }
    }

    /// An empty string with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Result<SecretString> {
        Ok(SecretString { bytes: SecretVec::with_capacity(cap)? })
    }

    /// A copy of `s` (which stays as it is).
    pub fn from_str(s: &str) -> Result<SecretString> {
        Ok(SecretString { bytes: SecretVec::from_slice(s.as_bytes())? })
    }

    /// Takes the bytes if they are UTF-8; otherwise they are wiped and the
    /// error ([`crate::ErrorKind::Invalid`]) says where the text went wrong.
    pub fn from_utf8(bytes: SecretVec) -> Result<SecretString> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(SecretString { bytes }),
            Err(e) => Err(Error::invalid(format!(
                "SecretString: the {} bytes are not UTF-8 (valid up to byte {})",
                bytes.len(),
                e.valid_up_to()
            ))),
        }
    }

    /// Prompts on the controlling terminal (/dev/tty) with echo off and reads
    /// one line of at most `max` bytes, without its newline, straight into
    /// exclusive memory (exmem_read_password). Fails with errno ENOTTY when
    /// there is no terminal, ENOBUFS when the line is longer than `max`.
    pub fn read_password(prompt: &str, max: usize) -> Result<SecretString> {
        Self::read_password_raw(-1, prompt, max)
    }

    /// As [`SecretString::read_password`], on the terminal `tty`.
    pub fn read_password_from<F: AsRawFd + ?Sized>(tty: &F, prompt: &str, max: usize) -> Result<SecretString> {
        Self::read_password_raw(tty.as_raw_fd(), prompt, max)
    }

    fn read_password_raw(fd: i32, prompt: &str, max: usize) -> Result<SecretString> {
        let prompt = CString::new(prompt).map_err(|_| Error::invalid("read_password: the prompt holds a NUL byte".to_string()))?;
        let size = max.checked_add(1).ok_or_else(|| Error::invalid("read_password: max overflows".to_string()))?;
        let mut v = SecretVec::with_capacity(size)?;
        let dst = v.spare_capacity_mut().as_mut_ptr() as *mut c_void;
        // SAFETY: dst has room for size bytes of exmem memory; prompt is NUL-terminated.
        let n = unsafe { sys::exmem_read_password(fd, prompt.as_ptr(), dst, size) };
        if n < 0 {
            return Err(Error::from_errno(crate::last_os_error()));
        }
        v.set_len(n as usize);
        // The NUL terminator past the line is zero, as the spare bytes are.
        SecretString::from_utf8(v)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: the bytes were checked (or built from &str and char).
        unsafe { std::str::from_utf8_unchecked(&self.bytes) }
    }

    /// The text, mutably.
    pub fn as_mut_str(&mut self) -> &mut str {
        // SAFETY: as above; &mut str can only be changed into valid UTF-8.
        unsafe { std::str::from_utf8_unchecked_mut(&mut self.bytes) }
    }

    /// Appends `s`.
    pub fn push_str(&mut self, s: &str) -> Result<()> {
        self.bytes.extend_from_slice(s.as_bytes())
    }

    /// Appends `c`.
    pub fn push(&mut self, c: char) -> Result<()> {
        let mut buf = [0u8; 4];
        let r = self.push_str(c.encode_utf8(&mut buf));
        crate::wipe(&mut buf);
        r
    }

    /// Removes the last character (its bytes are wiped).
    pub fn pop(&mut self) -> Option<char> {
        let c = self.as_str().chars().next_back()?;
        let len = self.bytes.len() - c.len_utf8();
        self.bytes.truncate(len);
        Some(c)
    }

    /// Shortens to `len` bytes, wiping the rest.
    ///
    /// # Panics
    /// If `len` is not on a character boundary.
    pub fn truncate(&mut self, len: usize) {
        if len < self.bytes.len() {
            assert!(self.as_str().is_char_boundary(len), "SecretString::truncate({}) not on a char boundary", len);
            self.bytes.truncate(len);
        }
    }

    /// Wipes the text.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The underlying vector.
    pub fn into_bytes(self) -> SecretVec {
        self.bytes
    }

    /// A copy in new exclusive memory.
    pub fn try_clone(&self) -> Result<SecretString> {
        Ok(SecretString { bytes: self.bytes.try_clone()? })
    }

    /// The protection of the memory holding the text.
    pub fn protection(&self) -> Protection {
        self.bytes.protection()
    }
}

impl Deref for SecretString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl DerefMut for SecretString {
    fn deref_mut(&mut self) -> &mut str {
        self.as_mut_str()
    }
}

impl AsRef<str> for SecretString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for SecretString {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretString").field("len", &self.bytes.len()).finish_non_exhaustive()
    }
}
