//! SharedRegion: two mappings of one region over a Unix socket.
mod common;

use std::os::unix::net::UnixStream;

use exmem::SharedRegion;

#[test]
fn a_sent_region_is_the_same_memory() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut mine = SharedRegion::create(100).unwrap();
    assert!(mine.len() >= 4096 && mine.len() % 4096 == 0);
    assert!(mine.iter().all(|&x| x == 0));
    common::assert_exclusive_mapping(mine.as_ptr() as usize);
    assert_eq!(mine.protection(), exmem::protection());
    mine[..5].copy_from_slice(b"hello");
    mine.send(&a).unwrap();
    let mut theirs = SharedRegion::recv(&b).unwrap();
    assert_eq!(theirs.len(), mine.len());
    assert_ne!(theirs.as_ptr(), mine.as_ptr());
    assert_eq!(&theirs[..5], b"hello");
    theirs[..5].copy_from_slice(b"world");
    assert_eq!(&mine[..5], b"world");
    let d = format!("{:?}", theirs);
    assert!(!d.contains("world") && !d.contains("119"), "{}", d);
}

#[test]
fn receiving_garbage_is_a_protocol_error() {
    use std::io::Write;
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"not a region message").unwrap();
    let e = SharedRegion::recv(&b).unwrap_err();
    assert!(!e.message().is_empty(), "{:?}", e);
}
