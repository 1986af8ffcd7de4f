//! Built against the installed crate source and libexmem.so: allocates a
//! secret, keeps it in a vault and checks what protects them.
fn main() {
    let secret = exmem::SecretVec::from_slice(b"an installed secret").expect("SecretVec");
    let p = exmem::protection();
    let mut vault = exmem::Vault::create(64).expect("Vault");
    vault.open_read_write().expect("open_read_write")[..secret.len()].copy_from_slice(&secret);
    let kept = exmem::equal(&vault.open_read().expect("open_read")[..secret.len()], &secret);
    println!("rust consumer: protection {:?}, {:?} in {:?}, kept {}", p, secret, vault, kept);
    if p == exmem::Protection::None || exmem::is_exclusive(&secret[..]) != p || !kept {
        std::process::exit(1);
    }
}
