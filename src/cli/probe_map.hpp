// `exmem probe --map`: this machine's direct map as its page tables have it,
// read through /proc/kcore (host/kernel_map.hpp), each 2 MiB region a 1 GiB
// leaf, a 2 MiB leaf, split to 4 KiB or not mapped; its totals against
// /proc/meminfo's DirectMap4k/2M/1G; drawn as a model::RegionMap by the same
// renderer as `exmem sim`'s report (--out DIR: index.html, a maps-only page with
// the model's boot-time direct map for this machine's RAM layout above this
// machine's map, and map.json, the --json object). Where the kernel does not
// allow it, why and what would allow it.
//
// --json prints one object (keys in this order):
// {"kernel_map": {
//    "available": bool,
//    "refusal": "none"|"no_kcore"|"needs_root"|"lockdown"|"addresses_hidden"|..., (host::refusal_name)
//    "why": string|null, "would_allow": string|null,
//    -- the rest only when available --
//    "levels": 4|5, "page_offset_base": "0xffff...", "phys_end": bytes,
//    "ram": [[start, end], ...],              (physical RAM as /proc/kcore lists it)
//    "walk_kb": {"DirectMap4k": kB, "DirectMap2M": kB, "DirectMap1G": kB},   (the direct map alone)
//    "high_map_split_2m": n|null,             (the kernel image's split 2 MiB leaves at __START_KERNEL_map)
//    "expected_meminfo_kb": {...},            (walk_kb with those moved from 2M to 4k, as
//                                              __split_large_page() counts them)
//    "meminfo_kb": {"DirectMap4k": kB|null, "DirectMap2M": kB|null, "DirectMap1G": kB|null},
//    "agrees": {"DirectMap4k": bool|null, ...},  (expected_meminfo_kb == meminfo_kb; null when not shown)
//    "regions": {"1G": n, "2M": n, "4K": n, "not_mapped": n},   (2 MiB regions)
//    "split_regions": [region index, ...],  (regions split to 4 KiB; index = physical address / 2 MiB)
//    "cleared_pages": n,                      (PTEs not present but not empty: taken out of the map)
//    "not_mapped": [[start, end], ...],      (at most 256 ranges, then "not_mapped_truncated": true)
//    "tables_read": n,
//    "region_map": the region map's JSON (report::to_json: cells, coverage, content)}}
#pragma once

#include <string>

namespace exmem::cli::probe {

struct MapOptions {
  bool json_out = false;
  std::string out_dir;  // empty: no files
};

// Prints the map (or the refusal). The exit status is 0 with a map and 3 when
// the kernel refused (the reason printed); writing failures throw CLI::RuntimeError(1).
int run_map(const MapOptions& opt);

}  // namespace exmem::cli::probe
