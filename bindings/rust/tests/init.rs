//! init(): its own test program (the heap's set-up is per process).
use exmem::{Config, ErrorKind, Policy};

#[test]
fn init_then_the_same_again_then_another() {
    let cfg = Config { quiet: true, growth: 1 << 20, ..Config::default() };
    exmem::init(&cfg).unwrap();
    exmem::init(&cfg).unwrap();
    let other = Config { policy: Policy::LockedOnly, ..cfg };
    let e = exmem::init(&other).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Already, "{:?}", e);
    assert!(!e.message().is_empty());
    assert_eq!(e.code(), exmem::sys::EXMEM_E_ALREADY);
    assert!(!exmem::strerror(e.code()).is_empty());
    assert_ne!(exmem::protection(), exmem::Protection::None);
    let s = exmem::stats().unwrap();
    assert_eq!(s.protection, exmem::protection());
}
