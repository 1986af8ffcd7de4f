//! Errors: exmem's code (enum exmem_error) with the library's full message.
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::raw::c_int;

use crate::sys;

/// What went wrong, as enum exmem_error names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument is out of range (EXMEM_E_INVALID).
    Invalid,
    /// memfd_secret is unavailable and the policy requires it (EXMEM_E_NO_SECRET).
    NoSecret,
    /// RLIMIT_MEMLOCK refused the region (EXMEM_E_MEMLOCK).
    Memlock,
    /// The configured maximum would be exceeded (EXMEM_E_MAXIMUM).
    Maximum,
    /// The kernel has no memory or address space for it (EXMEM_E_NO_MEMORY).
    NoMemory,
    /// A system call failed for another reason (EXMEM_E_SYSTEM); see
    /// [`Error::raw_os_error`].
    System,
    /// exmem_init after the heap was set up with another config (EXMEM_E_ALREADY).
    Already,
    /// A share message was malformed or carried no descriptor (EXMEM_E_PROTOCOL).
    Protocol,
    /// A code this crate does not know (a newer libexmem).
    Other(i32),
}

impl ErrorKind {
    /// The kind of an enum exmem_error code (not EXMEM_OK).
    pub fn from_code(code: i32) -> ErrorKind {
        match code {
            sys::EXMEM_E_INVALID => ErrorKind::Invalid,
            sys::EXMEM_E_NO_SECRET => ErrorKind::NoSecret,
            sys::EXMEM_E_MEMLOCK => ErrorKind::Memlock,
            sys::EXMEM_E_MAXIMUM => ErrorKind::Maximum,
            sys::EXMEM_E_NO_MEMORY => ErrorKind::NoMemory,
            sys::EXMEM_E_SYSTEM => ErrorKind::System,
            sys::EXMEM_E_ALREADY => ErrorKind::Already,
            sys::EXMEM_E_PROTOCOL => ErrorKind::Protocol,
            other => ErrorKind::Other(other),
        }
    }
}

/// An error of libexmem: its code, the message exmem_last_error_message()
/// gave (naming the limit, the amount asked and the remedy), and errno when a
/// system call's failure is the cause.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    code: i32,
    message: String,
    errno: Option<i32>,
}

/// `Result<T, exmem::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

fn c_string(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libexmem returns NUL-terminated strings that live at least until
    // the thread's next exmem call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Error {
    /// The calling thread's last error (exmem_last_error() and its message).
    pub fn last() -> Error {
        // SAFETY: plain queries of thread-local state.
        let code = unsafe { sys::exmem_last_error() };
        let message = c_string(unsafe { sys::exmem_last_error_message() });
        Error { code, message, errno: None }
    }

    /// The last error, with errno recorded (for calls that set both).
    pub(crate) fn last_with_errno(errno: i32) -> Error {
        let mut e = Error::last();
        e.errno = Some(errno);
        e
    }

    /// The error an exmem call returned as its value.
    pub(crate) fn from_code(code: c_int) -> Error {
        let last = Error::last();
        if last.code == code {
            return last;
        }
        Error { code, message: strerror(code), errno: None }
    }

    /// An error of a call that returns -1 with errno (the input helpers):
    /// they set the last error on every failure path, so its message is
    /// this failure's; errno is kept beside it.
    pub(crate) fn from_errno(err: io::Error) -> Error {
        Error::last_with_errno(err.raw_os_error().unwrap_or(0))
    }

    /// An error made on the Rust side (an argument the crate refuses itself).
    pub(crate) fn invalid(message: String) -> Error {
        Error { code: sys::EXMEM_E_INVALID, message, errno: None }
    }

    /// The enum exmem_error code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The code as a Rust enum.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_code(self.code)
    }

    /// The full message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// errno, when the call reported one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.errno
    }
}

/// exmem_strerror(code): the short description of an error code.
pub fn strerror(code: i32) -> String {
    // SAFETY: exmem_strerror returns a static string for any int.
    c_string(unsafe { sys::exmem_strerror(code) })
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&strerror(self.code))
        } else {
            f.write_str(&self.message)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind()).field("message", &self.message);
        if let Some(errno) = self.errno {
            d.field("errno", &errno);
        }
        d.finish()
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.kind() {
            ErrorKind::Invalid => io::ErrorKind::InvalidInput,
            ErrorKind::NoMemory | ErrorKind::Memlock | ErrorKind::Maximum => io::ErrorKind::OutOfMemory,
            ErrorKind::Protocol => io::ErrorKind::InvalidData,
            ErrorKind::NoSecret => io::ErrorKind::Unsupported,
            _ => match e.errno {
                Some(n) => io::Error::from_raw_os_error(n).kind(),
                None => io::ErrorKind::Other,
            },
        };
        io::Error::new(kind, e)
    }
}
