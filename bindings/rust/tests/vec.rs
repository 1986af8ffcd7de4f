//! SecretVec: growth, wiping on truncate/move/drop, placement, errors, Debug.
mod common;

use exmem::{ErrorKind, Protection, SecretVec};

#[test]
fn grows_like_a_vec() {
    let mut v = SecretVec::new();
    assert_eq!(v.capacity(), 0);
    assert_eq!(v.protection(), Protection::None);
    for i in 0..1000u32 {
        v.push(i as u8).unwrap();
    }
    assert_eq!(v.len(), 1000);
    assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
    v.extend_from_slice(b"tail").unwrap();
    assert_eq!(&v[1000..], b"tail");
    assert_eq!(v.pop(), Some(b'l'));
    v.resize(2000, 0x11).unwrap();
    assert_eq!(v[1999], 0x11);
    let c = v.try_clone().unwrap();
    assert_eq!(c, v);
    assert!(c.capacity() >= c.len());
}

#[test]
fn lives_in_a_secretmem_mapping_small_and_large() {
    for n in [16usize, 4000, 100_000] {
        let v = SecretVec::zeroed(n).unwrap();
        common::assert_exclusive_mapping(v.as_ptr() as usize);
        common::assert_exclusive_mapping(v.as_ptr() as usize + n - 1);
        assert_eq!(v.protection(), exmem::protection());
    }
}

#[test]
fn moving_the_buffer_wipes_the_old_one() {
    let pattern = [0x5Au8; 32];
    let mut v = SecretVec::from_slice(&pattern).unwrap();
    let old = v.as_ptr();
    let old_cap = v.capacity();
    // Grow well past the capacity: the buffer must move.
    v.extend_from_slice(&[0u8; 200]).unwrap();
    assert_ne!(v.as_ptr(), old, "grew from {} bytes in place", old_cap);
    assert_eq!(&v[..32], &pattern);
    assert!(!common::contains(&common::peek(old, 32), &pattern[..16]), "the old buffer kept the secret");
}

#[test]
fn truncate_clear_and_drop_wipe() {
    let mut v = SecretVec::from_slice(&[0xC3u8; 64]).unwrap();
    let p = v.as_ptr();
    v.truncate(16);
    assert_eq!(common::peek(unsafe { p.add(16) }, 48), vec![0u8; 48]);
    assert_eq!(common::peek(p, 16), vec![0xC3u8; 16]);
    v.clear();
    assert!(v.is_empty());
    assert_eq!(common::peek(p, 64), vec![0u8; 64]);
    v.extend_from_slice(&[0x3Cu8; 64]).unwrap();
    let p = v.as_ptr();
    drop(v);
    assert!(!common::contains(&common::peek(p, 64), &[0x3Cu8; 16]), "drop left the secret");
}

#[test]
fn drop_returns_the_memory_to_the_heap() {
    // Counted in this thread only roughly (other tests run in parallel), so
    // hold many objects and check the count moved by at least that many.
    let before = exmem::stats().unwrap();
    let held: Vec<SecretVec> = (0..64).map(|_| SecretVec::zeroed(48).unwrap()).collect();
    let during = exmem::stats().unwrap();
    assert!(during.live_objects >= before.live_objects + 64 - 8, "{:?} -> {:?}", before, during);
    assert!(during.reserved_bytes > 0);
    assert_eq!(during.protection, exmem::protection());
    drop(held);
    let after = exmem::stats().unwrap();
    assert!(after.live_objects + 64 - 8 <= during.live_objects, "{:?} -> {:?}", during, after);
}

#[test]
fn impossible_sizes_fail_with_the_librarys_message() {
    let e = SecretVec::with_capacity(usize::MAX / 2).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::NoMemory | ErrorKind::Invalid | ErrorKind::Maximum), "{:?}", e);
    assert!(!e.message().is_empty(), "{:?}", e);
    assert_eq!(e.to_string(), e.message());
    let mut v = SecretVec::from_slice(b"x").unwrap();
    let e = v.reserve(usize::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(&v[..], b"x", "a failed reserve changed the vector");
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn equality_and_debug_redaction() {
    let a = SecretVec::from_slice(b"correct horse").unwrap();
    let b = SecretVec::from_slice(b"correct horse").unwrap();
    let c = SecretVec::from_slice(b"correct hoRse").unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, SecretVec::from_slice(b"correct").unwrap());
    let d = format!("{:?} {:#?}", a, a);
    assert!(!d.contains("horse") && !d.contains("99"), "{}", d);
    assert!(d.contains("len: 13"), "{}", d);
}

#[test]
fn spare_capacity_and_write() {
    use std::io::Write;
    let mut v = SecretVec::with_capacity(8).unwrap();
    assert!(v.spare_capacity_mut().iter().all(|&b| b == 0));
    v.spare_capacity_mut()[..3].copy_from_slice(b"abc");
    v.set_len(3);
    write!(v, "-{}", 42).unwrap();
    assert_eq!(&v[..], b"abc-42");
}

#[test]
fn send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SecretVec>();
    let v = SecretVec::from_slice(b"moved").unwrap();
    let v = std::thread::spawn(move || v).join().unwrap();
    assert_eq!(&v[..], b"moved");
}
