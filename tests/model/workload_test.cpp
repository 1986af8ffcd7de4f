// Tests of workload/ and policy/: the synthetic workload and the registry.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "model/machine.hpp"
#include "model/policy/policy.hpp"
#include "model/workload/synthetic.hpp"

namespace exmem::model {
namespace {

using testing::join;
using testing::small_config;

TEST(PolicyRegistry, KnowsUpstream) {
  const auto& r = policy::Registry::builtin();
  ASSERT_NE(r.find("upstream"), nullptr);
  EXPECT_EQ(r.find("upstream")->make()->name(), "upstream");
  EXPECT_EQ(r.find("nonexistent"), nullptr);
}

TEST(PolicyRegistry, UnknownNameIsAnErrorListingTheKnownOnes) {
  try {
    (void)policy::make_policy("secretmem-pmd-pool-typo");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("upstream"), std::string::npos);
  }
}

TEST(SyntheticWorkload, RunsTheRequestedNumberOfEventsAndSplitsTheDirectMap) {
  Machine m(small_config(1 * GiB, false, 4));
  workload::WorkloadConfig wc;
  wc.events = 20000;
  workload::SyntheticWorkload w(m, wc);
  const auto r = w.run();
  EXPECT_GE(r.events, wc.events);
  EXPECT_GT(r.secret_faults, 0u);
  EXPECT_GT(r.secret_frees, 0u);
  EXPECT_GT(r.kernel_allocs, 0u);
  EXPECT_GT(r.user_allocs, 0u);
  EXPECT_GT(m.dmap().counters().level2_splits, 0u);
  EXPECT_EQ(m.dmap().counters().level2_collapses, 0u);  // secretmem never collapses
  EXPECT_SOUND(m);
}

TEST(SyntheticWorkload, IsReproducibleForASeed) {
  auto run = [](std::uint64_t seed) {
    Machine m(small_config(1 * GiB, true, 4));
    workload::WorkloadConfig wc;
    wc.events = 5000;
    wc.seed = seed;
    workload::SyntheticWorkload w(m, wc);
    const auto r = w.run();
    return std::make_tuple(r.secret_faults, r.kernel_allocs, r.user_frees,
                           m.dmap().counters().level2_splits, m.phys().free_pages());
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

// run_waking() is how `exmem sim` follows a run (its samples and progress):
// it must call back at the first step that reaches each count asked for, and
// change nothing in the run itself.
TEST(SyntheticWorkload, RunWakingCallsBackAtTheCountsAskedForAndChangesNothing) {
  workload::WorkloadConfig wc;
  wc.events = 20000;
  wc.seed = 3;
  wc.secret_hold_turns = 5;  // steps that count no event
  Machine a(small_config(1 * GiB, true, 4));
  Machine b(small_config(1 * GiB, true, 4));
  workload::SyntheticWorkload wa(a, wc);
  workload::SyntheticWorkload wb(b, wc);
  std::vector<std::uint64_t> every_step;
  const auto ra = wa.run([&](std::uint64_t events) { every_step.push_back(events); });
  std::vector<std::uint64_t> woken;
  std::uint64_t asked = 0;
  const auto rb = wb.run_waking([&](std::uint64_t events) {
    EXPECT_GE(events, asked);
    woken.push_back(events);
    asked = events + 1000;
    return asked;
  });
  // The same run, step for step.
  EXPECT_EQ(ra.events, rb.events);
  EXPECT_EQ(ra.secret_faults, rb.secret_faults);
  EXPECT_EQ(ra.hold_turns, rb.hold_turns);
  EXPECT_EQ(a.dmap().counters().level2_splits, b.dmap().counters().level2_splits);
  EXPECT_EQ(a.phys().free_pages(), b.phys().free_pages());
  // Woken exactly at the first step that reached each count asked for.
  ASSERT_GE(woken.size(), 2u);
  std::vector<std::uint64_t> expected;
  std::uint64_t want = 0;
  for (std::uint64_t e : every_step) {
    if (e >= want) {
      expected.push_back(e);
      want = e + 1000;
    }
  }
  EXPECT_EQ(woken, expected);
  EXPECT_GT(every_step.size(), woken.size() * 500);  // the steps between cost no call
}

TEST(SyntheticWorkload, KeepsEveryInvariantThroughoutARun) {
  MachineConfig c = small_config(128 * MiB, true, 2);
  c.kernel_image_bytes = 4 * MiB;
  Machine m(c);
  workload::WorkloadConfig wc;
  wc.events = 4000;
  wc.max_secret_file_pages = 16;
  workload::SyntheticWorkload w(m, wc);
  std::uint64_t last = 0;
  w.run([&](std::uint64_t events) {
    if (events - last < 50) return;
    last = events;
    const auto v = m.check();
    ASSERT_TRUE(v.empty()) << "after " << events << " events:\n" << join(v);
  });
  EXPECT_SOUND(m);
}

TEST(SyntheticWorkload, DrivesTheOtherUsersOfUnmappedPages) {
  Machine m(small_config(1 * GiB, true, 4));
  workload::WorkloadConfig wc;
  wc.events = 30000;
  wc.secret_share = 0.2;
  wc.kernel_share = 0.2;
  wc.map_exclusive_share = 0.1;
  wc.rox_share = 0.1;
  wc.guest_share = 0.1;
  wc.guests = 2;
  wc.guest_pages = 256;
  workload::SyntheticWorkload w(m, wc);
  std::uint64_t last = 0;
  const auto r = w.run([&](std::uint64_t events) {
    if (events - last < 1000) return;
    last = events;
    const auto v = m.check();
    ASSERT_TRUE(v.empty()) << "after " << events << " events:\n" << join(v);
  });
  EXPECT_GT(r.exclusive_faults, 0u);
  EXPECT_GT(r.exclusive_frees, 0u);
  EXPECT_EQ(r.exclusive_faults - r.exclusive_frees, m.mm().exclusive_pages());
  EXPECT_GT(r.rox_loads, 0u);
  EXPECT_GT(r.rox_unloads, 0u);
  EXPECT_GT(m.execmem().stats().populates, 0u);
  EXPECT_EQ(m.execmem().stats().loads, r.rox_loads);
  EXPECT_GT(r.guest_faults, 0u);
  EXPECT_GT(r.guest_teardowns, 0u);
  EXPECT_EQ(r.guest_faults - r.guest_frees, m.guest_memfd().unmapped_pages());
  EXPECT_GT(r.secret_faults, 0u);
  EXPECT_GT(r.user_allocs, 0u);
  EXPECT_SOUND(m);
}

// With 2 MiB guest_memfd folios a guest's turn faults one folio (one event),
// and the teardown counts one event per folio freed.
TEST(SyntheticWorkload, AGuestFaultsOneFolioPerEvent) {
  for (const std::uint64_t events : {4u, 8u}) {
    SCOPED_TRACE(events);
    Machine m(small_config(1 * GiB, true, 4));
    workload::WorkloadConfig wc;
    wc.events = events;
    wc.fill = 0.1;
    wc.secret_share = 0;
    wc.kernel_share = 0;
    wc.guest_share = 1;
    wc.guests = 1;
    wc.guest_pages = 4 * kPagesPer2M;
    wc.guest_folio_order = kPageblockOrder;
    workload::SyntheticWorkload w(m, wc);
    const auto r = w.run();
    EXPECT_EQ(r.events, events);
    EXPECT_EQ(r.guest_faults, 4u);  // 4 folios of 512 pages: the whole guest
    EXPECT_EQ(m.guest_memfd().stats().faults, 4u);
    if (events == 4) {
      EXPECT_EQ(r.guest_teardowns, 0u);
      EXPECT_EQ(m.guest_memfd().unmapped_pages(), 4 * kPagesPer2M);
    } else {
      EXPECT_EQ(r.guest_teardowns, 1u);
      EXPECT_EQ(r.guest_frees, 4u);
      EXPECT_EQ(m.guest_memfd().unmapped_pages(), 0u);
    }
    EXPECT_SOUND(m);
  }
}

TEST(SyntheticWorkload, DefaultsLeaveTheOtherUsersIdle) {
  Machine m(small_config(1 * GiB, true, 4));
  workload::WorkloadConfig wc;
  wc.events = 5000;
  workload::SyntheticWorkload w(m, wc);
  const auto r = w.run();
  EXPECT_EQ(r.exclusive_faults + r.rox_loads + r.guest_faults + r.hold_turns, 0u);
  EXPECT_EQ(m.mm().stats().exclusive_mmaps, 0u);
  EXPECT_EQ(m.execmem().cached_pages(), 0u);
  EXPECT_EQ(m.guest_memfd().stats().files_created, 0u);
  EXPECT_GT(r.secret_faults, 0u);
}

TEST(SyntheticWorkload, SecretFilesAreSizedBetweenMinAndMax) {
  Machine m(small_config(1 * GiB, true, 4));
  workload::WorkloadConfig wc;
  wc.events = 20000;
  wc.min_secret_file_pages = 5;
  wc.max_secret_file_pages = 5;
  wc.fork_probability = 0;
  wc.fd_pass_probability = 0;
  workload::SyntheticWorkload w(m, wc);
  const auto r = w.run();
  ASSERT_EQ(r.secret_ooms + r.mmap_failures, 0u);
  const auto& st = m.mm().stats();
  ASSERT_GT(st.secret_files_released, 10u);
  EXPECT_EQ(st.secret_pages_freed, 5 * st.secret_files_released);  // every file held 5 pages
  EXPECT_EQ(r.secret_faults, st.faults_major);
}

TEST(SyntheticWorkload, SecretHoldersKeepTheirSecretForTheirHoldTurns) {
  auto files_created = [](double hold) {
    Machine m(small_config(1 * GiB, true, 4));
    workload::WorkloadConfig wc;
    wc.events = 20000;
    wc.secret_hold_turns = hold;
    workload::SyntheticWorkload w(m, wc);
    const auto r = w.run();
    EXPECT_EQ(r.hold_turns > 0, hold > 0);
    return m.mm().stats().secret_files_created;
  };
  const std::uint64_t churn = files_created(0);
  const std::uint64_t held = files_created(200);
  EXPECT_LT(held, churn);  // holders that stay make room for fewer new files
}

TEST(WorkloadConfig, OutOfRangeSettingsAreRejectedByName) {
  Machine m(small_config());
  auto message = [&](const workload::WorkloadConfig& wc) -> std::string {
    try {
      workload::SyntheticWorkload w(m, wc);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  workload::WorkloadConfig wc;
  wc.min_secret_file_pages = 10;
  wc.max_secret_file_pages = 4;
  EXPECT_NE(message(wc).find("max_secret_file_pages"), std::string::npos);
  wc = {};
  wc.min_secret_file_pages = 0;
  EXPECT_NE(message(wc).find("min_secret_file_pages"), std::string::npos);
  wc = {};
  wc.secret_hold_turns = -1;
  EXPECT_NE(message(wc).find("secret_hold_turns"), std::string::npos);
  wc = {};
  wc.rox_share = 0.5;  // 0.4 + 0.3 + 0.5 > 1
  EXPECT_NE(message(wc).find("at most 1"), std::string::npos);
  wc = {};
  wc.guest_share = 0.1;
  wc.guest_pages = 0;
  EXPECT_NE(message(wc).find("guest_pages"), std::string::npos);
  wc = {};
  wc.map_exclusive_share = -0.1;
  EXPECT_NE(message(wc).find("map_exclusive_share"), std::string::npos);
  EXPECT_EQ(message(workload::WorkloadConfig{}), "");
}

// Short random workloads under memory pressure, checked after every step.
RC_GTEST_PROP(SyntheticWorkloadProperty, RandomWorkloadsKeepEveryInvariantAfterEveryStep, ()) {
  MachineConfig c = small_config(64 * MiB, *rc::gen::arbitrary<bool>(), 2);
  c.kernel_image_bytes = 4 * MiB;
  Machine m(c);
  workload::WorkloadConfig wc;
  wc.events = *rc::gen::inRange<std::uint64_t>(50, 400);
  wc.seed = *rc::gen::arbitrary<std::uint64_t>();
  wc.fill = *rc::gen::element(0.0, 0.5, 0.9);
  wc.secret_processes = *rc::gen::inRange(1u, 8u);
  wc.max_secret_file_pages = *rc::gen::inRange<std::uint64_t>(1, 32);
  wc.working_set_pages = *rc::gen::inRange<std::uint64_t>(100, 20000);
  workload::SyntheticWorkload w(m, wc);
  std::string failure;
  w.run([&](std::uint64_t) {
    if (!failure.empty()) return;
    const auto v = m.check();
    if (!v.empty()) failure = join(v);
  });
  if (!failure.empty()) RC_FAIL(failure);
}

}  // namespace
}  // namespace exmem::model

namespace exmem::model {
namespace {

// A workload of nothing but secret holders on a machine without secretmem:
// every holder's memfd_secret fails, and each attempt is an event, so the run
// still reaches its event count instead of looping for ever.
TEST(SyntheticWorkload, HoldersWhoseMemfdSecretFailsStillEndTheRun) {
  MachineConfig mc = small_config(1 * GiB, true, 4);
  mc.secretmem_enable = false;
  Machine m(mc);
  workload::WorkloadConfig wc;
  wc.events = 5000;
  wc.secret_share = 1.0;
  wc.kernel_share = 0;
  workload::SyntheticWorkload w(m, wc);
  const auto r = w.run();
  EXPECT_EQ(r.events, 5000u);
  EXPECT_EQ(r.mmap_failures, 5000u);
  EXPECT_EQ(r.secret_faults, 0u);
}

}  // namespace
}  // namespace exmem::model
