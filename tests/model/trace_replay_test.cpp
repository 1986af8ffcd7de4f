// Tests of workload/trace_format and trace_replay: the kmem trace reader (its
// one entry point for a line, hex and decimal pfns, failed allocations, gfp
// flags through phys/'s one table of names, line prefixes, the writer's lines
// read back) and its replay on a model machine (frees through the pfn map,
// pages from before the recording, secret pages through memfd_secret, unknown
// lines with their numbers), with every invariant checked after the replay.
#include "model/workload/trace_replay.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "helpers.hpp"
#include "model/machine.hpp"
#include "model/phys/gfp_names.hpp"
#include "model/workload/trace_format.hpp"

namespace exmem::model::workload {
namespace {

using testing::join;
using testing::small_config;

// A trace file in the test's own temporary folder, removed at the end.
class TempTrace {
 public:
  explicit TempTrace(const std::string& text) {
    path_ = (std::filesystem::temp_directory_path() / fmt::format("exmem-replay-{}-{}.trace", ::getpid(), counter_++))
                .string();
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempTrace() { std::filesystem::remove(path_); }
  TempTrace(const TempTrace&) = delete;
  TempTrace& operator=(const TempTrace&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

std::string alloc(std::uint64_t pfn, unsigned order, const char* gfp = "GFP_KERNEL", unsigned cpu = 0,
                  const char* task = "cc1plus-2431") {
  return fmt::format(
      "{:>16} [{:03}] ..... 100.000001: mm_page_alloc: page=00000000deadbeef pfn={:#x} order={} "
      "migratetype=0 gfp_flags={}\n",
      task, cpu, pfn, order, gfp);
}
std::string free_line(std::uint64_t pfn, unsigned order, unsigned cpu = 0) {
  return fmt::format(
      "          cc1plus-2431    [{:03}] ..... 100.000002: mm_page_free: page=00000000deadbeef "
      "pfn={:#x} order={}\n",
      cpu, pfn, order);
}

TEST(TraceLine, ReadsHexAndDecimalPfns) {
  auto hex = parse_trace_line(
      "   bash-1234    [001] ..... 11905.396068: mm_page_alloc: page=0000000039cebdbf pfn=0x3ed1d1 order=0 "
      "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO");
  ASSERT_TRUE(hex.has_value());
  EXPECT_EQ(hex->kind, TraceEventKind::Alloc);
  EXPECT_EQ(hex->pfn, 0x3ed1d1u);
  EXPECT_EQ(hex->order, 0u);
  EXPECT_EQ(hex->pid, 1234);
  EXPECT_EQ(hex->cpu, 1u);
  EXPECT_FALSE(hex->failed);
  EXPECT_EQ(hex->gfp, "GFP_HIGHUSER_MOVABLE|__GFP_ZERO");
  // Kernels before 5.x printed pfn=%lu.
  auto dec =
      parse_trace_line("   bash-1234    [003] .... 11905.396068: mm_page_free: page=ffffea0000068ac0 pfn=6699 order=2");
  ASSERT_TRUE(dec.has_value());
  EXPECT_EQ(dec->kind, TraceEventKind::Free);
  EXPECT_EQ(dec->pfn, 6699u);
  EXPECT_EQ(dec->order, 2u);
  EXPECT_EQ(dec->cpu, 3u);
}

TEST(TraceLine, ReadsTheTaskAndCpuWhateverTheCommandIsCalled) {
  auto ev = parse_trace_line(
      "   kworker/u4:2-mm_page_x-77 (     77) [002] d..3. 1.5: mm_page_free_batched: page=00000000c9995747 "
      "pfn=0x13e81c order=0");
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind, TraceEventKind::FreeBatched);
  EXPECT_EQ(ev->pid, 77);
  EXPECT_EQ(ev->cpu, 2u);
  EXPECT_EQ(ev->pfn, 0x13e81cu);
  // Older mm_page_free_batched lines have cold= and may omit order=.
  auto old = parse_trace_line("  <...>-5 [000] .... 2.0: mm_page_free_batched: page=ffffea0000068ac0 pfn=4096 cold=0");
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->order, 0u);
  EXPECT_EQ(old->pid, 5);
}

TEST(TraceLine, AFailedAllocationHasNoPage) {
  // TP_printk of mm_page_alloc prints a NULL page and pfn 0 when the allocation failed.
  for (const char* line :
       {"  a-1 [000] ..... 1.0: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 "
        "gfp_flags=GFP_TRANSHUGE_LIGHT",
        "  a-1 [000] .... 1.0: mm_page_alloc: page=(null) pfn=0 order=3 migratetype=0 gfp_flags=GFP_NOWAIT"}) {
    auto ev = parse_trace_line(line);
    ASSERT_TRUE(ev.has_value()) << line;
    EXPECT_TRUE(ev->failed) << line;
  }
}

TEST(TraceLine, RecognisesTheOtherKmemPageEventsAndRejectsTheRest) {
  EXPECT_EQ(parse_trace_line(
                "  a-1 [000] d..3. 1.0: mm_page_pcpu_drain: page=0000000000000001 pfn=0x31a5b1 order=0 migratetype=1")
                ->kind,
            TraceEventKind::PcpuDrain);
  EXPECT_EQ(
      parse_trace_line("  a-1 [000] d..3. 1.0: mm_page_alloc_extfrag: page=00000000e899c817 pfn=0x1d8c00 alloc_order=0 "
                       "fallback_order=10 pageblock_order=9 alloc_migratetype=0 fallback_migratetype=1 "
                       "fragmenting=0 change_ownership=1")
          ->kind,
      TraceEventKind::AllocExtfrag);
  EXPECT_EQ(
      parse_trace_line("  a-1 [000] d..3. 1.0: mm_page_alloc_zone_locked: page=0000000000000001 pfn=0x1000 order=0 "
                       "migratetype=1 percpu_refill=1")
          ->kind,
      TraceEventKind::AllocZoneLocked);
  std::string why;
  EXPECT_FALSE(parse_trace_line("  a-1 [000] ..... 1.0: kmalloc: call_site=x ptr=y", &why));
  EXPECT_NE(why.find("not a kmem page event"), std::string::npos) << why;
  EXPECT_FALSE(parse_trace_line("  a-1 [000] ..... 1.0: mm_page_free: page=1 order=0", &why));
  EXPECT_NE(why.find("without pfn="), std::string::npos) << why;
  EXPECT_FALSE(parse_trace_line("  a-1 [000] ..... 1.0: mm_page_free: page=1 pfn=0xzz order=0", &why));
  EXPECT_NE(why.find("pfn= is not a number"), std::string::npos) << why;
  EXPECT_FALSE(parse_trace_line("  a-1 [000] ..... 1.0: mm_page_free: page=1 pfn=0x10 order=12", &why));
  EXPECT_NE(why.find("order=12"), std::string::npos) << why;
  EXPECT_FALSE(parse_trace_line("  a-1 [000] ..... 1.0: mm_page_frobnicate: pfn=0x10", &why));
  EXPECT_NE(why.find("unknown event mm_page_frobnicate"), std::string::npos) << why;
}

TEST(TraceLine, OneEntryPointReadsALineStraightFromTheBufferUpToItsNewline) {
  const std::string text = alloc(0x2000, 1, "GFP_KERNEL|__GFP_ZERO", 3) + free_line(0x2000, 1, 2) + "  a-1 [000]";
  const char* const end = text.data() + text.size();
  TraceEvent ev;
  std::string why;
  const EventLine first = read_event_line(text.data(), end, ev, &why);
  ASSERT_TRUE(first.event) << why;
  ASSERT_NE(first.end, end);
  EXPECT_EQ(*first.end, '\n');
  EXPECT_EQ(first.end, text.data() + text.find('\n'));
  EXPECT_EQ(ev.kind, TraceEventKind::Alloc);
  EXPECT_EQ(ev.pfn, 0x2000u);
  EXPECT_EQ(ev.order, 1u);
  EXPECT_EQ(ev.cpu, 3u);
  EXPECT_EQ(ev.pid, 2431);
  EXPECT_EQ(ev.gfp, "GFP_KERNEL|__GFP_ZERO");

  TraceEvent second;
  const EventLine next = read_event_line(first.end + 1, end, second);
  ASSERT_TRUE(next.event);
  EXPECT_EQ(second.kind, TraceEventKind::Free);
  EXPECT_EQ(second.cpu, 2u);
  // A last line without its newline ends at the end of the text.
  TraceEvent partial;
  const EventLine last = read_event_line(next.end + 1, end, partial, &why);
  EXPECT_FALSE(last.event);
  EXPECT_EQ(last.end, end);
  EXPECT_FALSE(why.empty());
}


// A short page= value: the skip over a 16-digit hashed pointer must stop at
// the newline, not read on into the next line (the trace fuzzer's finding).
TEST(TraceLine, AShortPagePointerDoesNotRunIntoTheNextLine) {
  const std::string first = "a-1 [000] .... 1.0: mm_page_alloc: page=ab\n";
  const std::string text = first + "0123456789abc pfn=0x1 order=0 migratetype=0 gfp_flags=GFP_KERNEL\n";
  TraceEvent ev;
  std::string why;
  const EventLine l = read_event_line(text.data(), text.data() + text.size(), ev, &why);
  EXPECT_FALSE(l.event);
  EXPECT_EQ(l.end, text.data() + first.size() - 1);
  EXPECT_FALSE(why.empty());

  const TempTrace trace(text + alloc(0x2000, 0));
  Machine m(small_config());
  const ReplayStats s = TraceReplay(m, trace.path()).run();
  EXPECT_EQ(s.lines, 3u);
  EXPECT_EQ(s.events, 1u);
  EXPECT_EQ(s.unknown_lines, 2u);
}
// The usual layout's scans look at 16 bytes at a time: every field must be
// found wherever it falls in those blocks, and the line must end at its own
// newline (or at the end of the buffer), never in the next line.
TEST(TraceLine, EveryFieldIsFoundWhereverItFallsAmongTheScannedBlocks) {
  for (std::size_t shift = 0; shift < 40; ++shift) {
    for (const bool last : {false, true}) {
      const std::string comm = "kworker/u8:" + std::string(shift + 1, '3');
      std::string gfp = "GFP_KERNEL";
      for (std::size_t i = 0; i < shift % 5; ++i) gfp += "|__GFP_ZERO";
      const std::string line = comm + "-42 [003] ..... 5.000001: mm_page_alloc: page=00000000deadbeef pfn=0x1234 " +
                               "order=2 migratetype=1 gfp_flags=" + gfp;
      const std::string next = comm + "-43 [001] .... 6.0: mm_page_free: page=00000000deadbeef pfn=0x99 order=0\n";
      const std::string text = last ? line : line + "\n" + next;
      TraceEvent ev;
      std::string why;
      const EventLine l = read_event_line(text.data(), text.data() + text.size(), ev, &why);
      ASSERT_TRUE(l.event) << text << why;
      EXPECT_EQ(l.end, text.data() + line.size()) << text;
      EXPECT_EQ(ev.pid, 42) << text;
      EXPECT_EQ(ev.cpu, 3u) << text;
      EXPECT_EQ(ev.pfn, 0x1234u) << text;
      EXPECT_EQ(ev.order, 2u) << text;
      EXPECT_EQ(ev.gfp, gfp) << text;
    }
  }
}
TEST(TraceLine, ACarriageReturnAndTheGeneralLayoutReadLikeTheUsualOne) {
  const std::string usual = alloc(0x3000, 0, "GFP_HIGHUSER|__GFP_ZERO", 1);  // ends in '\n'
  const std::string crlf = usual.substr(0, usual.size() - 1) + "\r\n";
  // The record-tgid option puts "(TGID)" after the pid.
  const std::string tgid =
      "     cc1plus-2431 (   2430) [001] ..... 100.000001: mm_page_alloc: page=00000000deadbeef pfn=0x3000 order=0 "
      "migratetype=0 gfp_flags=GFP_HIGHUSER|__GFP_ZERO\n";
  for (const std::string& text : {usual, crlf, tgid}) {
    TraceEvent ev;
    std::string why;
    const EventLine l = read_event_line(text.data(), text.data() + text.size(), ev, &why);
    ASSERT_TRUE(l.event) << text << why;
    EXPECT_EQ(l.end, text.data() + text.size() - 1) << text;
    EXPECT_EQ(ev.pfn, 0x3000u) << text;
    EXPECT_EQ(ev.cpu, 1u) << text;
    EXPECT_EQ(ev.pid, 2431) << text;
    EXPECT_EQ(ev.gfp, "GFP_HIGHUSER|__GFP_ZERO") << text;
    const std::optional<TraceEvent> same = parse_trace_line(std::string_view(text).substr(0, text.size() - 1));
    ASSERT_TRUE(same.has_value()) << text;
    EXPECT_EQ(same->pfn, ev.pfn);
    EXPECT_EQ(same->pid, ev.pid);
    EXPECT_EQ(same->gfp, ev.gfp);
  }
}

TEST(TraceLine, ThePidCanBeLeftForLaterAndThenReadsTheSame) {
  const std::string text = alloc(0x4000, 0, "GFP_HIGHUSER", 0, "secret-user-77");
  TraceEvent ev;
  const char* pid_at = nullptr;
  ASSERT_TRUE(read_event_line(text.data(), text.data() + text.size(), ev, nullptr, &pid_at).event);
  EXPECT_EQ(ev.pid, -1);
  ASSERT_NE(pid_at, nullptr);
  EXPECT_EQ(*pid_at, '[');
  read_event_pid(text.data(), pid_at, ev);
  EXPECT_EQ(ev.pid, 77);
  // A line the general reader takes has its pid read at once.
  const std::string tgid = "  a-5 (5) [000] .... 2.0: mm_page_free_batched: page=ffffea0000068ac0 pfn=4096 cold=0\n";
  TraceEvent old;
  pid_at = text.data();
  ASSERT_TRUE(read_event_line(tgid.data(), tgid.data() + tgid.size(), old, nullptr, &pid_at).event);
  EXPECT_EQ(pid_at, nullptr);
  EXPECT_EQ(old.pid, 5);
}

TEST(GfpFlagsText, MapsTheKernelsNamesToTheModelsFlags) {
  EXPECT_EQ(parse_gfp_flags("GFP_KERNEL").gfp, phys::GFP_KERNEL);
  EXPECT_EQ(parse_gfp_flags("GFP_KERNEL|__GFP_RECLAIMABLE").gfp, phys::GFP_KERNEL_RECLAIMABLE);
  EXPECT_EQ(parse_gfp_flags("GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO").gfp,
            phys::GFP_HIGHUSER_MOVABLE | phys::__GFP_COMP | phys::__GFP_ZERO);
  EXPECT_EQ(parse_gfp_flags("GFP_NOWAIT").gfp, phys::GFP_NOWAIT);
  EXPECT_EQ(parse_gfp_flags("GFP_ATOMIC|__GFP_NOWARN").gfp, phys::GFP_ATOMIC | phys::__GFP_NOWARN);
  EXPECT_EQ(parse_gfp_flags("GFP_USER|__GFP_MOVABLE").gfp, phys::GFP_USER | phys::__GFP_MOVABLE);
  EXPECT_EQ(parse_gfp_flags("GFP_DMA32").gfp, phys::__GFP_DMA32);
  EXPECT_EQ(parse_gfp_flags("none").gfp, 0u);
  std::vector<std::string> unknown;
  const GfpFlags g = parse_gfp_flags("GFP_KERNEL|__GFP_ZEROTAGS|0x8000000", &unknown);
  EXPECT_EQ(g.gfp, phys::GFP_KERNEL);
  EXPECT_EQ(g.unknown, 2u);
  EXPECT_EQ(unknown, (std::vector<std::string>{"__GFP_ZEROTAGS", "0x8000000"}));
}

TEST(GfpNames, EveryNameReadsAsItsFlagsAndEveryPrintedNameComesBack) {
  for (const phys::GfpName& g : phys::kGfpNames) {
    const GfpFlags read = parse_gfp_flags(g.name);
    EXPECT_EQ(read.unknown, 0u) << g.name;
    EXPECT_EQ(read.gfp, g.gfp) << g.name;
    EXPECT_NE(g.gfp, 0u) << g.name;
    if (g.use == phys::GfpNameUse::ReadOnly) {
      // Another spelling: printed under the table's own name, which reads back the same.
      EXPECT_NE(phys::gfp_name(g.gfp), g.name);
      EXPECT_EQ(parse_gfp_flags(phys::gfp_name(g.gfp)).gfp, g.gfp) << g.name;
    } else {
      EXPECT_EQ(phys::gfp_name(g.gfp), g.name);
    }
    if (g.name.find('|') == std::string_view::npos) {
      EXPECT_EQ(phys::gfp_from_name(g.name), g.gfp) << g.name;
    }
  }
  EXPECT_EQ(phys::gfp_from_name("__GFP_ZEROTAGS"), std::nullopt);
}

TEST(GfpNames, FlagsPrintedAndReadBackAreTheSame) {
  std::vector<phys::Gfp> masks{0};
  for (const phys::GfpName& g : phys::kGfpNames) masks.push_back(g.gfp);
  for (const phys::Gfp a : masks) {
    for (unsigned bit = 0; bit < 23; ++bit) {
      const phys::Gfp gfp = a | (phys::Gfp{1} << bit);
      const std::string name = phys::gfp_name(gfp);
      const phys::Gfp known = gfp & ~(phys::Gfp{1} << 9);  // bit 9 has no name in the model
      EXPECT_EQ(parse_gfp_flags(name).gfp, known) << name;
    }
  }
  EXPECT_EQ(phys::gfp_name(0), "0");
  EXPECT_EQ(phys::gfp_name(phys::GFP_KERNEL_RECLAIMABLE | phys::__GFP_DMA32), "GFP_KERNEL|__GFP_RECLAIMABLE|__GFP_DMA32");
}

TEST(TraceReplay, ReplaysAllocationsAndFreesThroughThePfnMap) {
  std::string t = "# exmem-trace 1\n# cpus: 2\n";
  for (std::uint64_t i = 0; i < 100; ++i)
    t += alloc(0x10000 + i * 8, i % 4, i % 3 ? "GFP_KERNEL" : "GFP_HIGHUSER_MOVABLE", i % 2);
  for (std::uint64_t i = 0; i < 100; i += 2) t += free_line(0x10000 + i * 8, i % 4, 1);
  const TempTrace f(t);
  Machine m(small_config());
  const std::uint64_t free_before = m.phys().free_pages() + m.phys().pcp_pages();
  TraceReplay r(m, f.path());
  const ReplayStats st = r.run();
  EXPECT_EQ(st.events, 150u);
  EXPECT_EQ(st.allocs, 100u);
  EXPECT_EQ(st.allocs_replayed, 100u);
  EXPECT_EQ(st.user_allocs, 34u);  // i % 3 == 0
  EXPECT_EQ(st.kernel_allocs, 66u);
  EXPECT_EQ(st.frees, 50u);
  EXPECT_EQ(st.frees_replayed, 50u);
  EXPECT_EQ(st.frees_unknown, 0u);
  EXPECT_EQ(st.unknown_lines, 0u);
  // The 50 blocks still allocated are the odd ones: orders 1 and 3 alternately.
  std::uint64_t live = 0;
  for (std::uint64_t i = 1; i < 100; i += 2) live += std::uint64_t{1} << (i % 4);
  EXPECT_EQ(free_before - (m.phys().free_pages() + m.phys().pcp_pages()), live);
  EXPECT_SOUND(m);
}

TEST(TraceReplay, FreesOfPagesAllocatedBeforeTheRecordingAreCountedAndSkipped) {
  const TempTrace f(free_line(0x5000, 0) + free_line(0x6000, 3) + alloc(0x7000, 0) + free_line(0x7000, 0));
  Machine m(small_config());
  const ReplayStats st = TraceReplay(m, f.path()).run();
  EXPECT_EQ(st.frees_unknown, 2u);
  EXPECT_EQ(st.frees_replayed, 1u);
  EXPECT_SOUND(m);
}

TEST(TraceReplay, DecimalPfnsReplayLikeHexOnes) {
  const TempTrace f(
      "  a-1 [000] .... 1.0: mm_page_alloc: page=ffffea0000068ac0 pfn=6699 order=1 migratetype=0 gfp_flags=GFP_KERNEL\n"
      "  a-1 [000] .... 1.1: mm_page_free: page=ffffea0000068ac0 pfn=6699 order=1\n");
  Machine m(small_config());
  const ReplayStats st = TraceReplay(m, f.path()).run();
  EXPECT_EQ(st.allocs_replayed, 1u);
  EXPECT_EQ(st.frees_replayed, 1u);
  EXPECT_EQ(st.frees_unknown, 0u);
  EXPECT_SOUND(m);
}

TEST(TraceReplay, FailedAllocationsAreCountedNotReplayed) {
  const TempTrace f(alloc(0, 9, "GFP_TRANSHUGE_LIGHT") + alloc(0x8000, 0));
  Machine m(small_config());
  const std::uint64_t pgalloc = m.phys().stats().pgalloc;
  const ReplayStats st = TraceReplay(m, f.path()).run();
  EXPECT_EQ(st.allocs, 2u);
  EXPECT_EQ(st.allocs_failed_in_trace, 1u);
  EXPECT_EQ(st.allocs_replayed, 1u);
  EXPECT_EQ(m.phys().stats().pgalloc - pgalloc, 1u);
}

TEST(TraceReplay, AFreeOfPartOfABlockWaitsForTheWholeBlock) {
  // split_page(): an order-2 allocation whose four pages are freed one by one.
  const TempTrace f(alloc(0x9000, 2) + free_line(0x9001, 0) + free_line(0x9003, 0) + free_line(0x9000, 0) +
                    free_line(0x9002, 0));
  Machine m(small_config());
  const std::uint64_t free_before = m.phys().free_pages() + m.phys().pcp_pages();
  TraceReplay r(m, f.path());
  ReplayStats st;
  std::uint64_t live_after_three = 0;
  st = r.run(
      [&](const ReplayProgress& p) {
        if (p.events == 4) live_after_three = free_before - (m.phys().free_pages() + m.phys().pcp_pages());
      },
      1);
  EXPECT_EQ(live_after_three, 4u);  // three of four pages freed: the block is still there
  EXPECT_EQ(st.frees_partial, 4u);
  EXPECT_EQ(st.frees_replayed, 1u);
  EXPECT_EQ(st.frees_unknown, 0u);
  EXPECT_EQ(m.phys().free_pages() + m.phys().pcp_pages(), free_before);
  EXPECT_SOUND(m);
}

TEST(TraceReplay, AnAllocationOfALivePfnFreesTheOldBlockFirst) {
  const TempTrace f(alloc(0xA000, 0) + alloc(0xA000, 0) + free_line(0xA000, 0));
  Machine m(small_config());
  const std::uint64_t free_before = m.phys().free_pages() + m.phys().pcp_pages();
  const ReplayStats st = TraceReplay(m, f.path()).run();
  EXPECT_EQ(st.realloc_while_live, 1u);
  EXPECT_EQ(st.frees_replayed, 2u);
  EXPECT_EQ(m.phys().free_pages() + m.phys().pcp_pages(), free_before);
  EXPECT_SOUND(m);
}

TEST(TraceReplay, UnknownLinesAreReportedWithTheirLineNumbers) {
  const TempTrace f("# exmem-trace 1\n" + alloc(0xB000, 0) + "this is not a trace line\n" + free_line(0xB000, 0) +
                    "\n" + "  a-1 [000] ..... 1.0: mm_page_free: page=1 order=0\n" + "CPU:1 [LOST 42 EVENTS]\n" +
                    "# secret pfn=0xZZ pid=3\n");
  Machine m(small_config());
  const ReplayStats st = TraceReplay(m, f.path()).run();
  EXPECT_EQ(st.events, 2u);
  EXPECT_EQ(st.unknown_lines, 3u);
  ASSERT_EQ(st.first_unknown.size(), 3u);
  EXPECT_EQ(st.first_unknown[0].line, 3u);
  EXPECT_EQ(st.first_unknown[0].text, "this is not a trace line");
  EXPECT_EQ(st.first_unknown[1].line, 6u);
  EXPECT_NE(st.first_unknown[1].why.find("without pfn="), std::string::npos);
  EXPECT_EQ(st.first_unknown[2].line, 8u);
  EXPECT_EQ(st.lost_events, 42u);
  EXPECT_EQ(st.lines, 8u);
}

// `exmem trace record --sched` puts the scheduler's events between the kmem
// ones: the replay counts and skips them, as they are no allocator events.
TEST(TraceReplay, SchedulerLinesOfASchedRecordingAreCountedAndSkippedNotUnknown) {
  const std::string sched =
      "         cc1plus-6853    [000] d..2. 100.000001: sched_switch: prev_comm=cc1plus prev_pid=6853 "
      "prev_prio=120 prev_state=R ==> next_comm=rcu_preempt next_pid=15 next_prio=120\n"
      "           exmem-7163    [001] ..... 100.000002: task_newtask: pid=7171 comm=exmem clone_flags=1200000 "
      "oom_score_adj=0\n"
      "           exmem-7171    [000] .N... 100.000003: sched_process_exec: filename=/tmp/x pid=7171 old_pid=7171\n"
      "         cc1plus-7169    [001] ..... 100.000004: sched_process_exit: comm=cc1plus pid=7169 prio=120 "
      "group_dead=true\n";
  const TempTrace f(trace_header("x", 2, 1024, "") + trace_sched_lines("mono") + alloc(0xD000, 0) + sched +
                    free_line(0xD000, 0) + sched + trace_command_pid_line(7171) + trace_kthread_line(2));
  Machine m(small_config());
  TraceReplay r(m, f.path());
  EXPECT_TRUE(r.info().sched);
  EXPECT_EQ(r.info().command_pid, 7171);
  const ReplayStats st = r.run();
  EXPECT_EQ(st.events, 2u);
  EXPECT_EQ(st.frees_replayed, 1u);
  EXPECT_EQ(st.sched_lines, 8u);
  EXPECT_EQ(st.unknown_lines, 0u);
  EXPECT_SOUND(m);
}

TEST(TraceReplay, OnlyTheFirstFewUnknownLinesAreKeptButAllAreCounted) {
  std::string t = alloc(0xC000, 0);
  for (int i = 0; i < 25; ++i) t += fmt::format("garbage {}\n", i);
  const TempTrace f(t);
  Machine m(small_config());
  const ReplayStats st = TraceReplay(m, f.path()).run();
  EXPECT_EQ(st.unknown_lines, 25u);
  EXPECT_EQ(st.first_unknown.size(), ReplayStats::kMaxUnknownReported);
  EXPECT_EQ(st.first_unknown.back().line, 1 + ReplayStats::kMaxUnknownReported);
}

TEST(TraceReplay, AFileWithoutAnyEventIsAnErrorNamingItAndItsFirstLines) {
  const TempTrace f("# exmem-trace 1\nhello\nworld\n");
  Machine m(small_config());
  TraceReplay r(m, f.path());
  try {
    (void)r.run();
    FAIL() << "no error";
  } catch (const TraceError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(f.path() + ": no kmem page event", 0), 0u) << msg;
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  }
}

TEST(TraceReplay, AMissingFileIsAnErrorNamingIt) {
  Machine m(small_config());
  try {
    TraceReplay r(m, "/nonexistent/x.trace");
    FAIL() << "no error";
  } catch (const TraceError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("/nonexistent/x.trace: cannot open", 0), 0u) << e.what();
  }
}

TEST(TraceReplay, SecretPagesAreFaultedThroughMemfdSecretAndLeaveTheDirectMap) {
  // Like `exmem trace record` writes it: events, then the footer with the
  // command's secret pages; the file is released when its pages are freed.
  std::string t = "# exmem-trace 1\n# command: holder\n# cpus: 2\n# MemTotal_kB: 262144\n";
  t += alloc(0x20000, 0, "GFP_KERNEL", 1, "holder-4242");
  for (std::uint64_t i = 0; i < 8; ++i)
    t += alloc(0x30000 + i, 0, "GFP_HIGHUSER|__GFP_COMP|__GFP_ZERO", 0, "holder-4242");
  std::string frees;
  for (std::uint64_t i = 0; i < 8; ++i) frees += free_line(0x30000 + i, 0);
  std::string footer = "# end DirectMap4k_kB=1\n";
  for (std::uint64_t i = 0; i < 8; ++i) footer += fmt::format("# secret pfn={:#x} pid=4242\n", 0x30000 + i);
  footer += "# exit_status: 0\n# duration_seconds: 0.5\n# events: 17\n# lost_events: 0\n";

  Machine m(small_config());
  const TempTrace held(t + footer);
  {
    TraceReplay r(m, held.path());
    EXPECT_EQ(r.info().secret_pages.size(), 8u);
    const ReplayStats st = r.run();
    EXPECT_EQ(st.secret_marked, 8u);
    EXPECT_EQ(st.secret_faults, 8u);
    EXPECT_EQ(st.secret_files, 1u);
    EXPECT_EQ(st.allocs_replayed, 1u);  // the GFP_KERNEL page only
    EXPECT_EQ(m.mm().secret_pages(), 8u);
    EXPECT_EQ(m.mm().stats().secret_files_created, 1u);
    EXPECT_EQ(m.phys().pages_of_kind(phys::FrameKind::Secret), 8u);
    EXPECT_GT(m.dmap().counters().level2_splits, 0u);  // upstream: the pages split their 2 MiB leaf
    EXPECT_SOUND(m);  // among its invariants: no secret page is present in the direct map
  }
  Machine m2(small_config());
  const TempTrace released(t + frees + footer);
  const ReplayStats st = TraceReplay(m2, released.path()).run();
  EXPECT_EQ(st.secret_faults, 8u);
  EXPECT_EQ(st.secret_releases, 1u);
  EXPECT_EQ(st.secret_frees, 8u);
  EXPECT_EQ(st.frees_unknown, 0u);
  EXPECT_EQ(m2.mm().secret_pages(), 0u);
  EXPECT_EQ(m2.mm().stats().secret_pages_freed, 8u);
  EXPECT_SOUND(m2);
}

TEST(TraceReplay, OnlyTheHoldersUnmovableOrderZeroAllocationOfAMarkedPfnIsItsSecretFault) {
  // The pfn was the holder's page cache, then the holder's page table, then
  // another process's GFP_HIGHUSER page, before it became a secret page of
  // pid 7 (one of whose threads is 8).
  const TempTrace f(alloc(0x40000, 0, "GFP_HIGHUSER_MOVABLE", 0, "holder-7") + free_line(0x40000, 0) +
                    alloc(0x40000, 0, "GFP_KERNEL_ACCOUNT|__GFP_ZERO", 0, "holder-7") + free_line(0x40000, 0) +
                    alloc(0x40000, 0, "GFP_HIGHUSER|__GFP_ZERO", 0, "cc1plus-2431") + free_line(0x40000, 0) +
                    alloc(0x40000, 0, "GFP_HIGHUSER|__GFP_ZERO", 1, "holder-8") + "# secret pfn=0x40000 pid=7\n" +
                    "# thread tid=8 pid=7\n");
  Machine m(small_config());
  TraceReplay r(m, f.path());
  EXPECT_EQ(r.info().threads.at(8), 7);
  const ReplayStats st = r.run();
  EXPECT_EQ(st.user_allocs, 1u);
  EXPECT_EQ(st.kernel_allocs, 2u);
  EXPECT_EQ(st.secret_faults, 1u);
  EXPECT_EQ(m.mm().secret_pages(), 1u);
  EXPECT_SOUND(m);
}

TEST(TraceReplay, AllocationsTheModelCannotMakeAreCountedAndTheirFreesSkipped) {
  std::string t;
  const std::uint64_t n = 256 * MiB / kPageSize / 8 + 200;  // order-3 blocks: more than the machine's RAM
  for (std::uint64_t i = 0; i < n; ++i) t += alloc(0x100000 + i * 8, 3);
  for (std::uint64_t i = 0; i < n; ++i) t += free_line(0x100000 + i * 8, 3);
  const TempTrace f(t);
  Machine m(small_config());
  const std::uint64_t free_before = m.phys().free_pages() + m.phys().pcp_pages();
  const ReplayStats st = TraceReplay(m, f.path()).run();
  EXPECT_GT(st.model_alloc_failures, 0u);
  EXPECT_EQ(st.model_alloc_failures + st.allocs_replayed, n);
  EXPECT_EQ(st.frees_of_model_failures, st.model_alloc_failures);
  EXPECT_EQ(st.frees_replayed, st.allocs_replayed);
  EXPECT_EQ(m.phys().free_pages() + m.phys().pcp_pages(), free_before);
  EXPECT_SOUND(m);
}

TEST(TraceReplay, StreamsAFileLargerThanItsBufferAndALastLineWithoutNewline) {
  std::string t;
  const std::uint64_t n = 60'000;  // about 9 MiB of lines: several buffer refills
  for (std::uint64_t i = 0; i < n; ++i) t += alloc(0x200000 + i, 0) + free_line(0x200000 + i, 0);
  t += "  a-1 [000] ..... 1.0: mm_page_free: page=1 pfn=0x5 order=0";  // no newline
  const TempTrace f(t);
  Machine m(small_config());
  std::uint64_t calls = 0;
  std::uint64_t last_events = 0;
  const ReplayStats st = TraceReplay(m, f.path())
                             .run(
                                 [&](const ReplayProgress& p) {
                                   ++calls;
                                   EXPECT_GE(p.events, last_events);
                                   last_events = p.events;
                                   EXPECT_LE(p.bytes, p.total_bytes);
                                 },
                                 10'000);
  EXPECT_EQ(st.events, 2 * n + 1);
  EXPECT_EQ(st.frees_replayed, n);
  EXPECT_EQ(st.frees_unknown, 1u);
  EXPECT_EQ(st.bytes, t.size());
  EXPECT_EQ(calls, (2 * n + 1) / 10'000 + 1);
  EXPECT_EQ(last_events, st.events);
  EXPECT_SOUND(m);
}

TEST(TraceInfoReader, ReadsTheHeaderAndFooterAroundTheEvents) {
  const TempTrace f(
      "# exmem-trace 1\n# command: sh -c true\n# cpus: 2\n# MemTotal_kB: 16384000\n"
      "# start DirectMap4k_kB=100 DirectMap2M_kB=200 level2_splits=3\n" +
      alloc(0x1000, 0) +
      "# end DirectMap4k_kB=104 DirectMap2M_kB=196 level2_splits=4\n# secret pfn=0x1a2b pid=99\n"
      "# secret pfn=6699 pid=100\n# exit_status: 3\n# duration_seconds: 1.250000\n# events: 1\n# lost_events: 7\n");
  const TraceInfo i = read_trace_info(f.path());
  EXPECT_EQ(i.format_version, 1);
  EXPECT_EQ(i.command, "sh -c true");
  EXPECT_EQ(i.cpus, 2u);
  EXPECT_EQ(i.mem_total_kb, 16384000u);
  EXPECT_EQ(i.start_counters.at("DirectMap4k_kB"), "100");
  EXPECT_EQ(i.end_counters.at("level2_splits"), "4");
  ASSERT_EQ(i.secret_pages.size(), 2u);
  EXPECT_EQ(i.secret_pages[0], (std::pair<std::uint64_t, int>{0x1a2b, 99}));
  EXPECT_EQ(i.secret_pages[1], (std::pair<std::uint64_t, int>{6699, 100}));
  ASSERT_TRUE(i.exit_status.has_value());
  EXPECT_EQ(*i.exit_status, 3);
  EXPECT_DOUBLE_EQ(i.duration_seconds, 1.25);
  EXPECT_EQ(i.recorded_events, 1u);
  EXPECT_EQ(i.lost_events, 7u);
  EXPECT_GT(i.bytes, 0u);
}

TEST(TraceInfoReader, ReadsBackWhatTheWritersHelpersWrite) {
  std::string counters;
  for (const std::string_view k : trace_counter::kAll) counters += fmt::format(" {}={}", k, k.size());
  const TempTrace f(trace_header("app --serve", 4, 8192000, counters) + alloc(0x1000, 0) + free_line(0x1000, 0) +
                    trace_end_line(counters) + trace_secret_line(0x1a2b, 42) + trace_thread_line(43, 42) +
                    trace_footer(-1, 2.5, 2, 0));
  const TraceInfo i = read_trace_info(f.path());
  EXPECT_EQ(i.format_version, kTraceFormatVersion);
  EXPECT_EQ(i.command, "app --serve");
  EXPECT_EQ(i.cpus, 4u);
  EXPECT_EQ(i.mem_total_kb, 8192000u);
  ASSERT_EQ(i.start_counters.size(), trace_counter::kAll.size());
  for (const std::string_view k : trace_counter::kAll) {
    EXPECT_EQ(i.start_counters.at(std::string(k)), std::to_string(k.size())) << k;
    EXPECT_EQ(i.end_counters.at(std::string(k)), std::to_string(k.size())) << k;
  }
  EXPECT_EQ(i.secret_pages, (std::vector<std::pair<std::uint64_t, int>>{{0x1a2b, 42}}));
  EXPECT_EQ(i.threads, (std::map<int, int>{{43, 42}}));
  EXPECT_EQ(i.exit_status, -1);
  EXPECT_DOUBLE_EQ(i.duration_seconds, 2.5);
  EXPECT_EQ(i.recorded_events, 2u);
  EXPECT_EQ(i.lost_events, 0u);
}

// "# direct_map" lines: the real map at the start and the end, run-length coded.
DirectMapSnapshot snapshot_of(std::string_view codes) {  // one of ".GMK" per region
  DirectMapSnapshot s;
  for (const char c : codes) s.regions.push_back(static_cast<std::uint8_t>(std::string_view(".GMK").find(c)));
  return s;
}

TEST(TraceInfoReader, ReadsTheDirectMapSnapshotsBackFromTheFooter) {
  const DirectMapSnapshot start = snapshot_of("KMMMMKKM..GGGG");
  const DirectMapSnapshot end = snapshot_of("KMKMMKKM..GGGG");
  const std::string lines = trace_direct_map_lines("start", start) + trace_direct_map_lines("end", end);
  EXPECT_NE(lines.find("# direct_map start regions=14 from=0 map=1K4M2K1M2.4G\n"), std::string::npos) << lines;
  const TempTrace f(trace_header("x", 2, 1024, "") + alloc(0x1000, 0) + trace_end_line("") + lines +
                    trace_footer(0, 1, 1, 0));
  const TraceInfo i = read_trace_info(f.path());
  ASSERT_TRUE(i.map_start.has_value());
  ASSERT_TRUE(i.map_end.has_value());
  EXPECT_EQ(*i.map_start, start);
  EXPECT_EQ(*i.map_end, end);
  EXPECT_EQ(i.map_end->regions_of(3), 4u);
  EXPECT_TRUE(i.map_unavailable.empty());
}

TEST(TraceInfoReader, AMapOfManyRunsTakesSeveralLinesAndReadsBack) {
  std::string codes;
  for (std::size_t r = 0; r < 3 * kDirectMapRunsPerLine + 17; ++r) codes += r % 2 == 0 ? 'K' : 'M';
  const DirectMapSnapshot m = snapshot_of(codes);
  const std::string lines = trace_direct_map_lines("end", m);
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 4);
  EXPECT_NE(lines.find(fmt::format(" from={} ", kDirectMapRunsPerLine)), std::string::npos);
  const TempTrace f(trace_header("x", 2, 1024, "") + lines + trace_footer(0, 1, 0, 0));
  const TraceInfo i = read_trace_info(f.path());
  ASSERT_TRUE(i.map_end.has_value());
  EXPECT_EQ(*i.map_end, m);
  EXPECT_FALSE(i.map_start.has_value());
}

TEST(TraceInfoReader, ATraceWithoutSnapshotsReadsAsBeforeAndARefusalKeepsItsReason) {
  const TempTrace old(trace_header("x", 2, 1024, "") + alloc(0x1000, 0) + trace_footer(0, 1, 1, 0));
  const TraceInfo o = read_trace_info(old.path());
  EXPECT_FALSE(o.map_start.has_value());
  EXPECT_FALSE(o.map_end.has_value());
  EXPECT_TRUE(o.map_unavailable.empty());
  const TempTrace refused(trace_header("x", 2, 1024, "") + alloc(0x1000, 0) +
                          trace_direct_map_unavailable_line("no_kcore", "/proc/kcore does not exist\n(here)") +
                          trace_footer(0, 1, 1, 0));
  const TraceInfo r = read_trace_info(refused.path());
  EXPECT_FALSE(r.map_start.has_value());
  EXPECT_EQ(r.map_unavailable, "no_kcore: /proc/kcore does not exist (here)");
}

::testing::AssertionResult has(const std::string& text, std::string_view part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// A malformed snapshot is an error that names the line and the field.
std::string snapshot_error(const std::string& lines) {
  const TempTrace f(trace_header("x", 2, 1024, "") + alloc(0x1000, 0) + lines + trace_footer(0, 1, 1, 0));
  try {
    (void)read_trace_info(f.path());
  } catch (const TraceError& e) {
    return e.what();
  }
  return "no error";
}

TEST(TraceInfoReader, AMalformedSnapshotIsAnErrorNamingTheLineAndTheField) {
  const std::string bad_code = snapshot_error("# direct_map end regions=4 from=0 map=2K2X\n");
  EXPECT_TRUE(has(bad_code, "the line \"# direct_map end regions=4 from=0\""));
  EXPECT_TRUE(has(bad_code, "field map=: run 2 (\"2X\"): code 'X' is not G, M, K or ."));
  EXPECT_TRUE(has(snapshot_error("# direct_map end regions=4 from=0 map=2KM\n"), "field map=: run 2 (at character 2) has no count"));
  EXPECT_TRUE(has(snapshot_error("# direct_map end regions=4 from=0 map=2K3M\n"), "field map=: run 2 reaches region 5, past regions=4"));
  EXPECT_TRUE(has(snapshot_error("# direct_map start regions=4 from=0 map=2K1M\n"), "the \"# direct_map start\" lines: field map=: the runs cover 3 regions, regions=4"));
  EXPECT_TRUE(has(snapshot_error("# direct_map end regions=4 map=4K\n"), "field from= is missing"));
  EXPECT_TRUE(has(snapshot_error("# direct_map end regions=four from=0 map=4K\n"), "field regions=: not a number"));
  EXPECT_TRUE(has(snapshot_error("# direct_map end regions=4 from=0\n"), "field map= is missing"));
  EXPECT_TRUE(has(snapshot_error("# direct_map end regions=4 from=0 map=2K\n# direct_map end regions=4 from=3 map=2K\n"), "field from=: 3, but the map's earlier lines end at region 2"));
  EXPECT_TRUE(has(snapshot_error("# direct_map middle regions=4 from=0 map=4K\n"), "\"middle\" is neither start, end nor unavailable"));
  // The file is named.
  EXPECT_TRUE(has(snapshot_error("# direct_map end regions=4 from=0 map=4Q\n"), ".trace: the line"));
}

}  // namespace
}  // namespace exmem::model::workload
