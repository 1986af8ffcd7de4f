#!/usr/bin/env python3
"""Writes the hand-made seeds of exmem_fuzz_api into fuzz/corpus/api/.

Each seed is a short program in the input language of fuzz/api_fuzz.cpp (see
the table at the top of that file): one opcode byte, then the operation's
arguments. Run it from anywhere; it rewrites only the seed-*.bin files it
names (regression inputs found by fuzzing, regress-*.bin, are kept).
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "api")

# Opcodes.
ALLOC, CALLOC, REALLOC, FREE, USABLE, WRITE, READ = range(7)
R_ALLOC, R_FREE, R_REALLOC, RESTART, BURST, STATS, SHARE, BAD_SHARE, FREE_ALL, INJECT = range(7, 17)
# The set-up orders are opcode bytes 238..241 (operations 17..20).
RESET, INIT, FAILED_SETUP, FORK = range(238, 242)

# INIT's config byte: growth index (bits 0-1), reserve index (2-3), canaries (4),
# EXMEM_FORK_SHARE (5), EXMEM_REQUIRE_SECRET (6).
GROWTH_64K, GROWTH_1M, RESERVE_64K, RESERVE_1M, CANARIES, FORK_SHARE, REQUIRE = 1, 2, 4, 8, 16, 32, 64
# FAILED_SETUP's byte: the first use (0 exmem_alloc, 1 exmem_protection, 2
# exmem_share_create) plus 4 to fail the slab table's mmap instead of every mmap.
FIRST_ALLOC, FIRST_PROTECTION, FIRST_SHARE, TABLE_ONLY = 0, 1, 2, 4

# Calls of the platform layer (testing/exmem_testing.hpp), for INJECT.
MEMFD_SECRET, MEMFD_CREATE, FTRUNCATE, MMAP, MUNMAP, MADVISE, MLOCK, CLOSE, OPEN, READ_CALL = range(10)


# Sizes: a kind byte (taken modulo 32) and its value.
def tiny(n):
    assert 0 <= n < 256
    return bytes([0, n])


def small(n):
    assert 1 <= n <= 4096
    return bytes([8]) + struct.pack("<H", n - 1)


def edge(cls, delta):  # class index 0..27, delta 0 (= size), 1 (size - 1), 2 (size + 1)
    return bytes([16, cls + 28 * delta])


def special(i):  # index into kSpecial: 0, 1, 7, 8, 9, 15, 16, 17, 4080, 4087, 4088, 4089, 4095, 4096, 4097, ...
    return bytes([22, i])


def large(n):  # 4097 .. 69632
    k = n - 4097
    assert 0 <= k < 65536
    return bytes([26]) + struct.pack("<H", k)


def big(quarters):  # 1..4: 256 KiB .. 1 MiB
    return bytes([28, quarters - 1])


def huge(i):  # index into kHuge: SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 7, SIZE_MAX - 8, ...
    return bytes([29, i])


def raw(n):
    return bytes([31]) + struct.pack("<Q", n)


def count8(n):
    return bytes([0, n])


def count_max_shift(s):  # SIZE_MAX >> s
    return bytes([1, s])


def op(code, *args):
    return bytes([code]) + b"".join(args)


def u8(v):
    return bytes([v])


def u16(v):
    return struct.pack("<H", v)


def write(obj, off, length, seed):
    return op(WRITE, u8(obj), u16(off), u16(length), u8(seed))


SEEDS = {
    # Every class size, its neighbours, written, read and freed.
    "seed-classes": b"".join(
        op(ALLOC, edge(c, d)) + write(0, 0, 0xFFFF, c) for c in range(28) for d in range(3)
    ) + op(STATS) + b"".join(op(READ, u8(i)) for i in range(0, 84, 7)) + op(FREE_ALL) + op(STATS),
    # The odd sizes: 0, 1, 4095, 4096, 4097, and the canary boundary 4088/4089.
    "seed-odd-sizes": b"".join(op(ALLOC, special(i)) + op(USABLE, u8(0)) for i in range(26)) + op(STATS),
    # Sizes no heap can give: NULL + errno, for alloc, calloc and realloc.
    "seed-huge": b"".join(op(ALLOC, huge(i)) for i in range(16))
    + op(ALLOC, small(100)) + write(0, 0, 100, 7)
    + b"".join(op(REALLOC, u8(0), huge(i)) for i in range(16))
    + op(CALLOC, count_max_shift(0), small(2)) + op(CALLOC, count8(3), huge(0))
    + op(ALLOC, raw(2**64 - 1)) + op(READ, u8(0)) + op(STATS),
    # realloc growing and shrinking across classes and to a large object and back.
    "seed-realloc-chain": op(ALLOC, small(24)) + write(0, 0, 24, 1)
    + b"".join(op(REALLOC, u8(0), s) + write(0, 0, 0xFFFF, i) for i, s in enumerate(
        [small(40), small(200), small(4000), large(5000), large(65000), small(3000), small(10), tiny(1),
         special(13), special(14), special(10), special(11)]))
    + op(READ, u8(0)) + op(REALLOC, u8(0), tiny(0)) + op(STATS),
    # realloc(NULL, n) and realloc(p, 0).
    "seed-realloc-null-zero": op(REALLOC, u8(255), small(64)) + write(0, 0, 64, 3)
    + op(REALLOC, u8(0), tiny(0)) + op(FREE, u8(255)) + op(STATS),
    # calloc: zeroed, including reused (wiped) slots.
    "seed-calloc-reuse": op(ALLOC, small(48)) + write(0, 0, 48, 9) + op(FREE, u8(0))
    + op(CALLOC, count8(3), small(16)) + op(READ, u8(0)) + op(CALLOC, count8(0), small(16))
    + op(CALLOC, count8(200), small(100)) + op(STATS),
    # More than a magazine's worth of one class, freed in three orders, some remotely.
    "seed-bursts": op(BURST, small(32), u8(40), u8(0)) + op(BURST, small(32), u8(40), u8(1))
    + op(BURST, small(200), u8(100), u8(2)) + op(BURST, small(200), u8(100), u8(6))
    + op(BURST, large(9000), u8(5), u8(1)) + op(STATS),
    # Cross-thread: the second thread allocates, the first frees and the reverse;
    # the second thread exits holding objects (orphaned slabs), then others adopt them.
    "seed-threads": op(R_ALLOC, small(64)) + write(0, 0, 64, 1) + op(R_ALLOC, small(64)) + op(ALLOC, small(64))
    + op(FREE, u8(0)) + op(R_FREE, u8(0)) + op(R_ALLOC, small(500)) + op(R_ALLOC, large(20000))
    + op(RESTART) + op(READ, u8(0)) + op(R_REALLOC, u8(0), small(900)) + op(REALLOC, u8(1), small(10))
    + op(BURST, small(64), u8(30), u8(4)) + op(RESTART) + op(STATS) + op(FREE_ALL) + op(STATS),
    # Large objects: page edges and a few MiB.
    "seed-large": op(ALLOC, large(4097)) + op(ALLOC, large(8193)) + op(ALLOC, big(1)) + write(2, 65535, 0xFFFF, 4)
    + op(ALLOC, big(3)) + op(FREE, u8(0)) + op(ALLOC, special(15)) + op(READ, u8(2)) + op(STATS),
    # Shares: create, send to ourselves, receive, compare, release; and malformed messages.
    "seed-share": op(SHARE, small(100)) + op(SHARE, large(65000)) + op(SHARE, tiny(0)) + op(SHARE, huge(11)) + op(SHARE, huge(13))
    + op(BAD_SHARE, u8(8), b"exmemSH1", u8(0))
    + op(BAD_SHARE, u8(24), b"exmemSH1" + struct.pack("<QiI", 4096, 1, 0), u8(1))
    + op(BAD_SHARE, u8(24), b"exmemSH1" + struct.pack("<QiI", 8192, 2, 0), u8(1))
    + op(BAD_SHARE, u8(24), b"exmemSH1" + struct.pack("<QiI", 4096, 2, 0), u8(2))
    + op(BAD_SHARE, u8(24), b"exmemSH1" + struct.pack("<QiI", 4096, 1, 0), u8(3))
    + op(BAD_SHARE, u8(24), b"exmemSH1" + struct.pack("<QiI", 2**63, 2, 0), u8(1)),
    # System calls failing under an allocation: a clean NULL, and the heap recovers.
    "seed-faults": op(INJECT, u8(MMAP), u8(0), u8(0)) + op(ALLOC, large(30000))
    + op(INJECT, u8(MEMFD_SECRET), u8(0), u8(1)) + op(ALLOC, big(1))
    + op(INJECT, u8(READ_CALL), u8(0), u8(8)) + op(BURST, small(3000), u8(200), u8(0))
    + op(INJECT, u8(FTRUNCATE), u8(0), u8(0)) + op(SHARE, small(10))
    + op(INJECT, u8(MMAP), u8(0), u8(0)) + op(SHARE, small(10))
    + op(ALLOC, large(30000)) + op(STATS),
    # The maximum (8 MiB): large objects until it refuses, then everything freed.
    # Regression: realloc(p, SIZE_MAX) with canaries on. size + 8 wrapped around
    # to a small class, so realloc copied the whole object into a 16-byte slot
    # (SIGSEGV at the slab's guard); alloc(SIZE_MAX) returned a 16-byte object.
    "regress-realloc-size-max": op(R_ALLOC, big(4)) + write(0, 0, 0xFFFF, 1) + op(R_REALLOC, u8(0), huge(0))
    + op(REALLOC, u8(0), huge(2)) + op(ALLOC, huge(0)) + op(CALLOC, count8(1), huge(1)) + op(READ, u8(0)),
    # Regression: a shared region past exmem_config.maximum was created (and
    # every page of it faulted in): shares did not count towards the maximum.
    "regress-share-beyond-maximum": op(SHARE, huge(13)) + op(SHARE, huge(14)) + op(SHARE, big(4)) + op(STATS),
    # Regression: a failed first use, then exmem_init, registered the fork
    # handlers twice; the next fork() deadlocked.
    "regress-fork-after-failed-setup": op(RESET) + op(FAILED_SETUP, u8(FIRST_ALLOC)) + op(INIT, u8(0))
    + op(ALLOC, small(32)) + op(FORK) + op(FREE_ALL),
    # Set-up orders: a first use with the defaults, inits that repeat or conflict,
    # failed set-ups of each kind, forks in both modes.
    "seed-setup-orders": op(RESET) + op(ALLOC, small(100)) + op(INIT, u8(0)) + op(FORK) + op(RESET)
    + op(FAILED_SETUP, u8(FIRST_PROTECTION | TABLE_ONLY)) + op(FAILED_SETUP, u8(FIRST_SHARE))
    + op(INIT, u8(FORK_SHARE | RESERVE_64K | GROWTH_64K)) + op(INIT, u8(FORK_SHARE | RESERVE_64K | GROWTH_64K))
    + op(INIT, u8(0)) + op(ALLOC, small(64)) + write(0, 0, 64, 5) + op(FORK) + op(RESET)
    + op(INIT, u8(REQUIRE | CANARIES | RESERVE_1M)) + op(ALLOC, large(9000)) + op(FORK) + op(STATS),
    "seed-maximum": b"".join(op(ALLOC, big(4)) for _ in range(10)) + op(STATS) + op(FREE_ALL)
    + op(ALLOC, big(4)) + op(STATS),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {OUT}")


if __name__ == "__main__":
    main()
