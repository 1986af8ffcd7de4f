//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;

/// The /proc/self/maps line of the mapping holding `addr`.
pub fn mapping_of(addr: usize) -> Option<String> {
    let maps = fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    for line in maps.lines() {
        let range = line.split_whitespace().next()?;
        let mut it = range.split('-');
        let lo = usize::from_str_radix(it.next()?, 16).ok()?;
        let hi = usize::from_str_radix(it.next()?, 16).ok()?;
        if lo <= addr && addr < hi {
            return Some(line.to_string());
        }
    }
    None
}

/// Asserts that `addr` lies in exclusive memory: a "/secretmem" mapping under
/// memfd_secret; under the locked fallback (no memfd_secret here), a mapping
/// that is not the process heap or a file.
pub fn assert_exclusive_mapping(addr: usize) {
    let line = mapping_of(addr).unwrap_or_else(|| panic!("{:#x} is in no mapping", addr));
    match exmem::protection() {
        exmem::Protection::Secret => {
            assert!(line.contains("/secretmem"), "{:#x} is not in a memfd_secret mapping: {}", addr, line)
        }
        exmem::Protection::Locked => {
            eprintln!("memfd_secret is unavailable here: checking the locked fallback's mapping only");
            assert!(!line.contains("[heap]") && !line.contains("[stack]"), "{:#x} is in {}", addr, line)
        }
        exmem::Protection::None => panic!("no exclusive memory backend"),
    }
}

/// Reads `n` bytes at `p` with volatile loads (memory the test freed but that
/// stays mapped: a slab of the small-object heap).
pub fn peek(p: *const u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| unsafe { std::ptr::read_volatile(p.add(i)) }).collect()
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
