//! The input helpers: read, read_password, random, adopt, equal, is_exclusive.
mod common;

use std::io::Write;
use std::os::raw::{c_char, c_int};
use std::os::unix::io::FromRawFd;
use std::os::unix::net::UnixStream;

use exmem::{ErrorKind, Protection, SecretString, SecretVec};

#[test]
fn read_takes_a_stream_into_exclusive_memory() {
    let (mut w, r) = UnixStream::pair().unwrap();
    w.write_all(b"the secret from a pipe").unwrap();
    drop(w);
    let v = exmem::read(&r, 100).unwrap();
    assert_eq!(&v[..], b"the secret from a pipe");
    common::assert_exclusive_mapping(v.as_ptr() as usize);

    let (mut w, r) = UnixStream::pair().unwrap();
    w.write_all(b"0123456789").unwrap();
    let v = exmem::read(&r, 4).unwrap();
    assert_eq!(&v[..], b"0123");
}

#[test]
fn read_from_a_bad_descriptor_fails_with_errno() {
    struct Bad;
    impl std::os::unix::io::AsRawFd for Bad {
        fn as_raw_fd(&self) -> c_int {
            -1
        }
    }
    let e = exmem::read(&Bad, 8).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(9), "{:?}", e); // EBADF
}

#[test]
fn read_password_needs_a_terminal() {
    let (_w, r) = UnixStream::pair().unwrap();
    let e = SecretString::read_password_from(&r, "Password: ", 64).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(25), "{:?}", e); // ENOTTY
    assert!(e.message().contains("not a usable terminal"), "{:?}", e);
}

extern "C" {
    fn posix_openpt(flags: c_int) -> c_int;
    fn grantpt(fd: c_int) -> c_int;
    fn unlockpt(fd: c_int) -> c_int;
    fn ptsname(fd: c_int) -> *const c_char;
}

fn pty() -> (std::fs::File, std::fs::File) {
    const O_RDWR: c_int = 2;
    const O_NOCTTY: c_int = 0o400;
    unsafe {
        let m = posix_openpt(O_RDWR | O_NOCTTY);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(grantpt(m), 0);
        assert_eq!(unlockpt(m), 0);
        let name = std::ffi::CStr::from_ptr(ptsname(m)).to_str().unwrap().to_string();
        let slave = std::fs::OpenOptions::new().read(true).write(true).open(name).unwrap();
        (std::fs::File::from_raw_fd(m), slave)
    }
}

/// Plays the user at the terminal's master side: waits for the prompt (written
/// after echo is off and pending input flushed), then types `line`.
fn type_after_prompt(mut master: std::fs::File, prompt: &'static str, line: &'static [u8]) -> std::thread::JoinHandle<std::fs::File> {
    use std::io::Read;
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains(prompt) {
            let n = master.read(&mut buf).expect("read the terminal's master");
            assert!(n > 0, "the terminal closed before the prompt");
            seen.extend_from_slice(&buf[..n]);
        }
        master.write_all(line).unwrap();
        master
    })
}

#[test]
fn read_password_reads_a_line_from_a_terminal() {
    let (master, slave) = pty();
    let user = type_after_prompt(master, "Password: ", "pässword\n".as_bytes());
    let p = SecretString::read_password_from(&slave, "Password: ", 64).unwrap();
    let master = user.join().unwrap();
    assert_eq!(p.as_str(), "pässword");
    common::assert_exclusive_mapping(p.as_ptr() as usize);

    let user = type_after_prompt(master, "Again: ", b"far too long a line\n");
    let e = SecretString::read_password_from(&slave, "Again: ", 4).unwrap_err();
    user.join().unwrap();
    assert_eq!(e.raw_os_error(), Some(105), "{:?}", e); // ENOBUFS
    assert!(e.message().contains("does not fit"), "{:?}", e);
}

#[test]
fn random_fills_exclusive_memory_only() {
    let a = exmem::random(32).unwrap();
    let b = SecretVec::random(32).unwrap();
    assert_ne!(a, b);
    assert!(a.iter().any(|&x| x != 0));
    let mut plain = [0u8; 16];
    let e = exmem::fill_random(&mut plain).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{:?}", e);
    assert_eq!(plain, [0u8; 16]);
}

#[test]
fn adopt_moves_and_wipes_the_source() {
    let mut src = *b"a key typed somewhere";
    let v = exmem::adopt(&mut src).unwrap();
    assert_eq!(&v[..], b"a key typed somewhere");
    assert_eq!(src, [0u8; 21]);
    common::assert_exclusive_mapping(v.as_ptr() as usize);
}

#[test]
fn equal_compares_bytes() {
    assert!(exmem::equal(b"abc", b"abc"));
    assert!(!exmem::equal(b"abc", b"abd"));
    assert!(!exmem::equal(b"abc", b"ab"));
    assert!(exmem::equal(b"", b""));
}

#[test]
fn is_exclusive_tells_exmem_memory_apart() {
    let on_stack = [1u8; 16];
    assert_eq!(exmem::is_exclusive(&on_stack), Protection::None);
    let boxed = Box::new([1u8; 16]);
    assert_eq!(exmem::is_exclusive(&*boxed), Protection::None);
    let v = SecretVec::zeroed(16).unwrap();
    assert_eq!(exmem::is_exclusive(&v[..]), exmem::protection());
    assert_eq!(v.protection(), exmem::protection());
    let s = exmem::stats().unwrap();
    if s.protection == Protection::Secret {
        assert_eq!(s.fallback_bytes, 0);
    }
}
