//! SecretString: UTF-8 checking, editing, wiping, Debug.
mod common;

use exmem::{ErrorKind, SecretString, SecretVec};

#[test]
fn holds_text() {
    let mut s = SecretString::from_str("pässwörd").unwrap();
    assert_eq!(&*s, "pässwörd");
    s.push('!').unwrap();
    s.push_str(" ok").unwrap();
    assert_eq!(s.as_str(), "pässwörd! ok");
    assert_eq!(s.pop(), Some('k'));
    s.truncate(1);
    assert_eq!(s.as_str(), "p");
    assert_eq!(s.len(), 1);
    s.make_ascii_uppercase();
    assert_eq!(s.as_str(), "P");
    common::assert_exclusive_mapping(s.as_ptr() as usize);
    assert_eq!(s.try_clone().unwrap(), s);
}

#[test]
#[should_panic(expected = "char boundary")]
fn truncate_inside_a_character_panics() {
    let mut s = SecretString::from_str("ä").unwrap();
    s.truncate(1);
}

#[test]
fn from_utf8_checks() {
    let ok = SecretString::from_utf8(SecretVec::from_slice(b"fine").unwrap()).unwrap();
    assert_eq!(ok.as_str(), "fine");
    let e = SecretString::from_utf8(SecretVec::from_slice(b"ab\xff").unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message().contains("valid up to byte 2"), "{}", e);
}

#[test]
fn clear_wipes() {
    let mut s = SecretString::from_str("hunter2hunter2hunter2").unwrap();
    let p = s.as_ptr();
    s.clear();
    assert_eq!(common::peek(p, 21), vec![0u8; 21]);
}

#[test]
fn debug_never_prints_the_text() {
    let s = SecretString::from_str("hunter2").unwrap();
    let d = format!("{:?}|{:#?}", s, s);
    assert!(!d.contains("hunter2"), "{}", d);
    assert!(d.contains("len: 7"), "{}", d);
}
