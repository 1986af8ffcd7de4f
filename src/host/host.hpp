// host: what the real kernel says about exclusive memory, read in one place.
//
// Owns:
//   - the memfd_secret system call number and a thin call (secret.hpp);
//   - why memfd_secret is unavailable: the facts (errno, kernel release,
//     secretmem.enable on the command line and in /sys/module, seccomp mode)
//     and the one sentence that words them (secret.hpp);
//   - RLIMIT_MEMLOCK and CAP_IPC_LOCK: the facts, what the limit means and the
//     message for a refused mapping (memlock.hpp);
//   - the direct map's counters: DirectMap4k/2M/1G of /proc/meminfo and
//     direct_map_level2/3_splits and _collapses of /proc/vmstat (direct_map.hpp);
//   - the direct map's page tables themselves, read through /proc/kcore and
//     decoded into 1G/2M/4K coverage per 2 MiB region, or why the kernel
//     does not allow it (kernel_map.hpp);
//   - /proc/PID/pagemap: the frames behind a virtual range, and the
//     memfd_secret mappings of a process (pagemap.hpp);
//   - reading /proc and /sys text (proc_text.hpp).
// Used by libexmem's messages, `exmem probe`, `exmem trace record` and the
// benches, so that all of them say the same about the same kernel.
//
// Must not touch: libexmem, the model, fmt, JSON, anything but libc and the
// C++ standard library. No function throws on its own (only an allocation of
// a std::string or std::vector can); the functions meant for the library
// (secret_facts, word_secret_unavailable, why_secret_unavailable,
// memlock_facts, word_memlock_refusal) allocate nothing and write into the
// caller's buffer, as snprintf does.
#pragma once

#include "host/direct_map.hpp"
#include "host/kernel_map.hpp"
#include "host/memlock.hpp"
#include "host/pagemap.hpp"
#include "host/proc_text.hpp"
#include "host/secret.hpp"
