//! Secret<T>: contents, placement, wiping, Debug.
mod common;

use exmem::{Protection, Secret};

#[test]
fn holds_and_mutates_the_value() {
    let mut s = Secret::new([7u64; 4]).unwrap();
    assert_eq!(*s, [7u64; 4]);
    s[2] = 9;
    assert_eq!(s[2], 9);
    let c = s.try_clone().unwrap();
    assert_eq!(*c, [7, 7, 9, 7]);
    assert_ne!(c.as_ptr(), s.as_ptr());
}

#[test]
fn lives_in_a_secretmem_mapping() {
    let s = Secret::new(0x1122_3344_5566_7788u64).unwrap();
    common::assert_exclusive_mapping(s.as_ptr() as usize);
    assert_eq!(s.protection(), exmem::protection());
    assert_ne!(s.protection(), Protection::None);
}

#[test]
fn drop_wipes_the_bytes() {
    let pattern = [0xA5u8; 48];
    let s = Secret::new(pattern).unwrap();
    let p = s.as_ptr() as *const u8;
    assert_eq!(common::peek(p, 48), pattern.to_vec());
    drop(s);
    // The slab stays mapped; the object's bytes must no longer hold the secret.
    assert!(!common::contains(&common::peek(p, 48), &pattern[..16]), "the secret survived its drop");
}

#[test]
fn zeroed_and_new_with_build_in_place() {
    // SAFETY: zero is a valid [u32; 8].
    let z = unsafe { Secret::<[u32; 8]>::zeroed() }.unwrap();
    assert_eq!(*z, [0; 8]);
    let k = Secret::new_with([0u8; 32], |k| {
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
    })
    .unwrap();
    assert_eq!(k[31], 31);
}

#[test]
fn zero_sized_values_are_fine() {
    let s = Secret::new(()).unwrap();
    assert_eq!(*s, ());
}

#[test]
fn debug_never_prints_the_value() {
    let s = Secret::new(0xDEAD_BEEFu32).unwrap();
    let d = format!("{:?}", s);
    assert!(!d.contains("3735928559") && !d.to_lowercase().contains("deadbeef"), "{}", d);
    assert!(d.contains("redacted"), "{}", d);
}

#[test]
fn is_send_and_sync_and_freed_by_another_thread() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Secret<[u8; 16]>>();
    let s = Secret::new([3u8; 16]).unwrap();
    std::thread::spawn(move || assert_eq!(s[0], 3)).join().unwrap();
}
