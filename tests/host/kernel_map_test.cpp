// host/kernel_map.hpp: the direct map's page tables decoded from synthetic
// tables in memory (4- and 5-level, KASLR'd bases, 1G/2M leaves, split PMDs,
// pages cleared as set_direct_map_invalid_noflush() leaves them), kallsyms
// parsing, every refusal, and on this machine the refusal or the map.
#include <cerrno>
#include <cstdint>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "host/host.hpp"

namespace {

namespace host = exmem::host;
using host::MapCoverage;
using host::PageTable;

constexpr std::uint64_t kPresentRw = 0x63;  // present, rw, accessed, dirty: as the kernel builds tables
constexpr std::uint64_t kLeaf = kPresentRw | host::kPteHuge;

// Page tables held in a map from a made-up physical address to their entries.
struct Tables {
  std::map<std::uint64_t, PageTable> pages;
  std::uint64_t next = 0x100000;
  std::uint64_t add() {
    const std::uint64_t pa = next;
    next += 4096;
    pages[pa] = PageTable{};
    return pa;
  }
  host::ReadTable reader() const {
    return [this](std::uint64_t phys, PageTable& out) {
      const auto it = pages.find(phys);
      if (it == pages.end()) return false;
      out = it->second;
      return true;
    };
  }
};

// A machine with 4 GiB at a KASLR'd base (0xffff9a4c40000000: 1 GiB aligned,
// not 512 GiB aligned, so the walk's indices start mid-table): GiB 0 split to
// 2 MiB with region 1 split to 4 KiB (3 pages cleared, 2 empty) and region 5
// not present; GiB 1 and 2 one 1 GiB leaf each; GiB 3 not present.
struct Fixture4 {
  static constexpr std::uint64_t kBase = 0xffff9a4c40000000ULL;
  Tables t;
  PageTable top{};
  Fixture4() {
    const std::uint64_t pud = t.add();
    top[(kBase >> 39) & 511] = pud | kPresentRw;
    const unsigned pud0 = (kBase >> 30) & 511;
    const std::uint64_t pmd = t.add();
    t.pages[pud][pud0] = pmd | kPresentRw;
    t.pages[pud][pud0 + 1] = (1ULL << 30) | kLeaf;
    t.pages[pud][pud0 + 2] = (2ULL << 30) | kLeaf;
    for (unsigned i = 0; i < 512; ++i) t.pages[pmd][i] = (std::uint64_t{i} << 21) | kLeaf;
    t.pages[pmd][5] = 0;
    const std::uint64_t pte = t.add();
    t.pages[pmd][1] = pte | kPresentRw;
    for (unsigned j = 0; j < 512; ++j) t.pages[pte][j] = ((512 + j) << 12) | kPresentRw;
    for (unsigned j : {7u, 8u, 300u}) t.pages[pte][j] &= ~host::kPtePresent;  // as secretmem leaves them
    t.pages[pte][510] = 0;
    t.pages[pte][511] = 0;
  }
};

TEST(KernelMapWalk, DecodesLeavesSplitsAndHolesAtAKaslrBase) {
  Fixture4 f;
  std::string err;
  const auto m = host::walk_direct_map(f.top, 4, Fixture4::kBase, 4ULL << 30, f.t.reader(), &err);
  ASSERT_TRUE(m) << err;
  ASSERT_EQ(m->regions.size(), 2048u);
  EXPECT_EQ(m->regions[0], MapCoverage::Leaf2M);
  EXPECT_EQ(m->regions[1], MapCoverage::Split4K);
  EXPECT_EQ(m->regions[5], MapCoverage::NotMapped);
  EXPECT_EQ(m->regions[511], MapCoverage::Leaf2M);
  EXPECT_EQ(m->regions[512], MapCoverage::Leaf1G);
  EXPECT_EQ(m->regions[1535], MapCoverage::Leaf1G);
  EXPECT_EQ(m->regions[1536], MapCoverage::NotMapped);
  EXPECT_EQ(m->regions_of(MapCoverage::Leaf2M), 510u);
  EXPECT_EQ(m->regions_of(MapCoverage::Leaf1G), 1024u);
  EXPECT_EQ(m->regions_of(MapCoverage::Split4K), 1u);
  EXPECT_EQ(m->regions_of(MapCoverage::NotMapped), 513u);
  EXPECT_EQ(m->pte_present[1], 507u);
  EXPECT_EQ(m->pte_cleared[1], 3u);
  // As direct_pages_count[] counts: a cleared PTE still counts as 4K, an empty one does not.
  EXPECT_EQ(m->bytes_4k, 510u * 4096);
  EXPECT_EQ(m->bytes_2m, 510u * host::k2M);
  EXPECT_EQ(m->bytes_1g, 2u * host::k1G);
  // Not mapped: the two empty PTEs (at the end of region 1), region 5, and GiB 3.
  ASSERT_EQ(m->not_mapped.size(), 3u);
  EXPECT_EQ(m->not_mapped[0].first, host::k2M + 510 * 4096);
  EXPECT_EQ(m->not_mapped[0].second, 2 * host::k2M);
  EXPECT_EQ(m->not_mapped[1].first, 5 * host::k2M);
  EXPECT_EQ(m->not_mapped[2].first, 3 * host::k1G);
  EXPECT_EQ(m->not_mapped[2].second, 4 * host::k1G);
}

TEST(KernelMapWalk, RoundsTheEndUpToAGibibyte) {
  Fixture4 f;
  const auto m = host::walk_direct_map(f.top, 4, Fixture4::kBase, (2ULL << 30) + 4096, f.t.reader(), nullptr);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->phys_end, 3ULL << 30);
  EXPECT_EQ(m->regions.size(), 1536u);
}

TEST(KernelMapWalk, FiveLevelsGoThroughTheP4d) {
  constexpr std::uint64_t kBase5 = 0xff11000000000000ULL;
  Tables t;
  PageTable top{};
  const std::uint64_t p4d = t.add(), pud = t.add();
  top[(kBase5 >> 48) & 511] = p4d | kPresentRw;
  t.pages[p4d][(kBase5 >> 39) & 511] = pud | kPresentRw;
  t.pages[pud][0] = kLeaf;
  std::string err;
  const auto m5 = host::walk_direct_map(top, 5, kBase5, 2ULL << 30, t.reader(), &err);
  ASSERT_TRUE(m5) << err;
  EXPECT_EQ(m5->regions_of(MapCoverage::Leaf1G), 512u);
  EXPECT_EQ(m5->regions_of(MapCoverage::NotMapped), 512u);
  // Read as 4 levels, the same top table finds the P4D where a PUD should be: nothing mapped.
  const auto m4 = host::walk_direct_map(top, 4, kBase5, 2ULL << 30, t.reader(), &err);
  ASSERT_TRUE(m4);
  EXPECT_EQ(m4->regions_of(MapCoverage::Leaf1G), 0u);
}

// __split_large_page() counts splits of the kernel image's mapping in DirectMap4k/2M too:
// the walk counts the split 2 MiB leaves there, so the totals can be reconciled.
TEST(KernelMapWalk, CountsSplitLeavesOfTheKernelImageMapping) {
  Fixture4 f;
  const std::uint64_t pud = f.t.add(), pmd = f.t.add(), pte = f.t.add();
  f.top[511] = pud | kPresentRw;
  f.t.pages[pud][510] = pmd | kPresentRw;  // __START_KERNEL_map: PGD 511, PUD 510
  for (unsigned i = 0; i < 40; ++i) f.t.pages[pmd][i] = (std::uint64_t{i} << 21) | kLeaf;
  f.t.pages[pmd][3] = pte | kPresentRw;
  f.t.pages[pmd][17] = pte | kPresentRw;
  const auto n = host::count_split_pmds(f.top, 4, host::kStartKernelMap, host::kKernelImageSize, f.t.reader());
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  // Only the range asked: the first 4 MiB hold none of them.
  EXPECT_EQ(host::count_split_pmds(f.top, 4, host::kStartKernelMap, 4ULL << 20, f.t.reader()), 0u);
  f.t.pages.erase(pmd);
  EXPECT_FALSE(host::count_split_pmds(f.top, 4, host::kStartKernelMap, host::kKernelImageSize, f.t.reader()));
}

TEST(KernelMapWalk, AnUnreadableTableIsAnErrorNotAHole) {
  Fixture4 f;
  f.t.pages.erase(f.t.pages.rbegin()->first);  // the PTE table
  std::string err;
  EXPECT_FALSE(host::walk_direct_map(f.top, 4, Fixture4::kBase, 4ULL << 30, f.t.reader(), &err));
  EXPECT_NE(err.find("PTE table"), std::string::npos) << err;
  EXPECT_FALSE(host::walk_direct_map(f.top, 3, Fixture4::kBase, 4ULL << 30, f.t.reader(), &err));
  EXPECT_FALSE(host::walk_direct_map(f.top, 4, Fixture4::kBase + 4096, 4ULL << 30, f.t.reader(), &err));
}

TEST(KernelMapSymbols, FindsTheThreeSymbolsAndSkipsModules) {
  const auto s = host::parse_kallsyms(
      "ffffffffa6e13d60 D page_offset_base\n"
      "ffffffffa6e13d70 D __pgtable_l5_enabled\n"
      "ffffffffa7410000 D init_top_pgt\n"
      "ffffffffc0001000 d init_top_pgt\t[evil]\n"
      "ffffffffa741a010 D phys_base\n");
  EXPECT_EQ(s.page_offset_base, 0xffffffffa6e13d60ULL);
  EXPECT_EQ(s.pgtable_l5_enabled, 0xffffffffa6e13d70ULL);
  EXPECT_EQ(s.init_top_pgt, 0xffffffffa7410000ULL);
  EXPECT_FALSE(s.all_zero);
}

TEST(KernelMapSymbols, KptrRestrictShowsZeros) {
  const auto s = host::parse_kallsyms("0000000000000000 D page_offset_base\n0000000000000000 D init_top_pgt\n");
  EXPECT_TRUE(s.all_zero);
  EXPECT_EQ(s.init_top_pgt, 0u);
}

host::KernelMapAccess access(int err) {
  host::KernelMapAccess a;
  a.machine = "x86_64";
  a.kcore_errno = err;
  a.root = true;
  a.cap_sys_rawio = true;
  return a;
}

TEST(KernelMapRefusal, EachCauseNamesWhatWouldAllowIt) {
  EXPECT_EQ(host::refusal_for_access(access(0)).refusal, host::KernelMapRefusal::None);

  auto r = host::refusal_for_access(access(ENOENT));
  EXPECT_EQ(r.refusal, host::KernelMapRefusal::NoKcore);
  EXPECT_NE(r.why.find("CONFIG_PROC_KCORE"), std::string::npos);
  EXPECT_NE(r.would_allow.find("CONFIG_PROC_KCORE=y"), std::string::npos);
  auto unmounted = access(ENOENT);
  unmounted.proc_mounted = false;
  EXPECT_NE(host::refusal_for_access(unmounted).would_allow.find("mount -t proc"), std::string::npos);

  auto a = access(EACCES);
  a.root = false;
  a.cap_sys_rawio = false;
  r = host::refusal_for_access(a);
  EXPECT_EQ(r.refusal, host::KernelMapRefusal::NeedsRoot);
  EXPECT_NE(r.would_allow.find("root"), std::string::npos);

  a = access(EPERM);
  a.lockdown = "none integrity [confidentiality]\n";
  r = host::refusal_for_access(a);
  EXPECT_EQ(r.refusal, host::KernelMapRefusal::Lockdown);
  EXPECT_NE(r.why.find("confidentiality"), std::string::npos);

  a.lockdown = "none [integrity] confidentiality\n";  // integrity does not forbid kcore
  EXPECT_EQ(host::refusal_for_access(a).refusal, host::KernelMapRefusal::OpenDenied);

  a = access(0);
  a.machine = "aarch64";
  EXPECT_EQ(host::refusal_for_access(a).refusal, host::KernelMapRefusal::NotX86_64);
  EXPECT_EQ(host::refusal_name(host::KernelMapRefusal::NeedsRoot), "needs_root");
}

// On this machine: either a map whose totals are those of /proc/meminfo, or a
// refusal with both sentences.
TEST(KernelMapHere, ReadsTheMapOrSaysWhyNot) {
  const host::KernelMapResult r = host::read_kernel_map();
  if (r.refusal != host::KernelMapRefusal::None) {
    EXPECT_FALSE(r.map);
    EXPECT_FALSE(r.why.empty());
    EXPECT_FALSE(r.would_allow.empty());
    GTEST_SKIP() << "the kernel map cannot be read here: " << r.why << "; would allow: " << r.would_allow;
  }
  ASSERT_TRUE(r.map);
  const host::DirectMapCounters dm = host::read_direct_map();
  // __split_large_page() also counts the kernel image's split leaves (high_map_split_2m).
  const std::uint64_t moved = r.map->high_map_split_2m.value_or(0) * host::k2M;
  if (dm.dm2m_kb) {
    EXPECT_EQ((r.map->bytes_2m - moved) / 1024, *dm.dm2m_kb);
  }
  if (dm.dm4k_kb) {
    EXPECT_EQ((r.map->bytes_4k + moved) / 1024, *dm.dm4k_kb);
  }
  if (dm.dm1g_kb) {
    EXPECT_EQ(r.map->bytes_1g / 1024, *dm.dm1g_kb);
  }
}

}  // namespace
