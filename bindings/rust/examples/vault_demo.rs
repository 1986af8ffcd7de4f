//! vault_demo: a key generated straight into exclusive memory, kept in a vault
//! that is inaccessible between uses, and compared in constant time.
//!
//!     EXMEM_LIB_DIR=<build>/src/lib cargo run --offline --example vault_demo
use exmem::{Protection, SecretVec, Vault};

fn main() -> Result<(), exmem::Error> {
    let what = match exmem::protection() {
        Protection::Secret => "memfd_secret: removed from the kernel direct map",
        Protection::Locked => "locked memory: memfd_secret is unavailable here",
        Protection::None => "no protection",
    };
    println!("protection: {}", what);

    // 32 random bytes, written by the kernel into exclusive memory.
    let key = SecretVec::random(32)?;
    println!("key: {:?} (Debug never shows the bytes)", key);

    // A vault holds it between uses: PROT_NONE unless a guard is alive.
    let mut vault = Vault::create(key.len())?;
    vault.open_read_write()?[..32].copy_from_slice(&key);
    println!("vault: {:?}", vault);

    let same = {
        let view = vault.open_read()?;
        exmem::equal(&view[..32], &key)
    };
    println!("the vault holds the key: {}", same);

    let s = exmem::stats()?;
    println!("live objects {}, reserved bytes {}, vaults {}", s.live_objects, s.reserved_bytes, s.vaults);
    if same {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
