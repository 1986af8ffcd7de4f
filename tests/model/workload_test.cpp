// Tests of workload/ and policy/: the synthetic workload and the registry.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

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
