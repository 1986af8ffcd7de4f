//! Built against the installed crate source and libexmem.so: allocates a
//! secret and checks what protects it.
fn main() {
    let secret = exmem::SecretVec::from_slice(b"an installed secret").expect("SecretVec");
    let p = exmem::protection();
    println!("rust consumer: protection {:?}, {:?}", p, secret);
    if p == exmem::Protection::None || &secret[..] != b"an installed secret" {
        std::process::exit(1);
    }
}
