//! Links libexmem.
//!
//! By default the crate links the system's libexmem.so (what the libexmem-dev
//! package installs), found on the linker's default search path. To link a
//! build tree's library instead, set EXMEM_LIB_DIR to the folder holding
//! libexmem.so: it is added to the search path, and this crate's own tests and
//! examples get an rpath to it so they run without LD_LIBRARY_PATH.
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=EXMEM_LIB_DIR");
    if let Some(dir) = env::var_os("EXMEM_LIB_DIR") {
        let dir = dir.to_string_lossy().into_owned();
        if !dir.is_empty() {
            println!("cargo:rustc-link-search=native={}", dir);
            println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{}", dir);
            println!("cargo:rustc-link-arg-examples=-Wl,-rpath,{}", dir);
            println!("cargo:rerun-if-changed={}/libexmem.so", dir);
            println!("cargo:lib_dir={}", dir);
        }
    }
    println!("cargo:rustc-link-lib=dylib=exmem");
}
