//! Vault: guards, access, placement, counting, errors, Debug.
mod common;

use std::process::Command;
use std::sync::Mutex;

use exmem::{ErrorKind, Protection, Vault};

// The tests count vaults in exmem_stats: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn write_then_read_through_guards() {
    let _s = serial();
    let mut v = Vault::create(100).unwrap();
    assert_eq!(v.size(), 4096);
    {
        let mut w = v.open_read_write().unwrap();
        assert_eq!(w.len(), 4096);
        assert!(w.iter().all(|&b| b == 0), "a new vault is not zeroed");
        w[..6].copy_from_slice(b"secret");
        common::assert_exclusive_mapping(w.as_ptr() as usize);
        assert_eq!(w.protection(), exmem::protection());
    }
    let r1 = v.open_read().unwrap();
    let r2 = v.open_read().unwrap();
    assert_eq!(&r1[..6], b"secret");
    assert_eq!(&r2[..6], b"secret");
    assert_eq!(exmem::is_exclusive(&r1[..]), exmem::protection());
}

#[test]
fn readers_in_many_threads() {
    let _s = serial();
    let mut v = Vault::create(8192).unwrap();
    v.open_read_write().unwrap()[8000] = 42;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..100 {
                    assert_eq!(v.open_read().unwrap()[8000], 42);
                }
            });
        }
    });
}

#[test]
fn counted_in_stats() {
    let _s = serial();
    let before = exmem::stats().unwrap().vaults;
    let a = Vault::create(1).unwrap();
    let b = Vault::create(5000).unwrap();
    assert_eq!(b.size(), 8192);
    assert_eq!(exmem::stats().unwrap().vaults, before + 2);
    drop(a);
    drop(b);
    assert_eq!(exmem::stats().unwrap().vaults, before);
}

#[test]
fn bad_sizes_fail() {
    let e = Vault::create(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{:?}", e);
    assert!(!e.message().is_empty());
    let e = Vault::create(usize::MAX - 4095).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::NoMemory | ErrorKind::Invalid | ErrorKind::Maximum), "{:?}", e);
}

#[test]
fn debug_never_prints_the_contents() {
    let _s = serial();
    let mut v = Vault::create(16).unwrap();
    v.open_read_write().unwrap()[..7].copy_from_slice(b"hunter2");
    let r = v.open_read().unwrap();
    let d = format!("{:?} {:?}", v, r);
    assert!(!d.contains("hunter2") && !d.contains("104"), "{}", d);
    assert!(d.contains("4096"), "{}", d);
}

/// The child half of closed_vault_is_inaccessible: touch a closed vault.
#[test]
fn child_touches_a_closed_vault() {
    if std::env::var_os("EXMEM_RUST_VAULT_CHILD").is_none() {
        return; // only as the child process
    }
    let mut v = Vault::create(16).unwrap();
    let p = {
        let mut w = v.open_read_write().unwrap();
        w[0] = 1;
        w.as_ptr()
    };
    // PROT_NONE now: this load must fault.
    let b = unsafe { std::ptr::read_volatile(p) };
    println!("read {} from a closed vault", b);
}

#[test]
fn closed_vault_is_inaccessible() {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_touches_a_closed_vault", "--nocapture", "--test-threads=1"])
        .env("EXMEM_RUST_VAULT_CHILD", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(11), "the child was not killed by SIGSEGV: {:?} {}", out.status,
               String::from_utf8_lossy(&out.stdout));
    assert_ne!(exmem::protection(), Protection::None);
}
