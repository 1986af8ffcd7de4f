// The kernel model's scale and speed: booting a big machine, the synthetic
// mix of events, and the memfd_secret fault path alone.
//   Boot: host bytes per modelled 4 KiB frame (counter bytes_per_frame; the
//   target is <= 8, Linux's struct page costs 64) and seconds to boot.
//   SyntheticMix: page alloc/free events per second (items_per_second).
//   PolicyRun: one policy's whole `exmem sim` run (sim/run.hpp: boot, the
//   synthetic mix sampled 50 times, the cost estimate at the end) per second
//   of events, as the command runs it.
//   SecretFaultPath: secretmem faults + frees per second: a process maps a
//   memfd_secret file, touches every page (secretmem_fault: order-0 page,
//   removed from the direct map, one-page flush) and unmaps it (each page
//   restored and freed); items are page allocations plus frees.
#include <benchmark/benchmark.h>

#include "model/machine.hpp"
#include "model/mm/mm.hpp"
#include "model/workload/synthetic.hpp"
#include "sim/run.hpp"

namespace {

namespace md = exmem::model;

md::MachineConfig config(std::uint64_t ram) {
  md::MachineConfig mc;
  mc.ram_bytes = ram;
  mc.cpus = 16;
  return mc;
}

void BM_Boot(benchmark::State& state) {
  const std::uint64_t ram = static_cast<std::uint64_t>(state.range(0)) * md::GiB;
  double per_frame = 0;
  for (auto _ : state) {
    md::Machine m(config(ram));
    per_frame = static_cast<double>(m.model_bytes()) / static_cast<double>(m.phys().total_ram_pages());
    benchmark::DoNotOptimize(per_frame);
  }
  state.counters["bytes_per_frame"] = per_frame;
}
BENCHMARK(BM_Boot)->Arg(64)->Arg(1024)->Unit(benchmark::kMillisecond)->Iterations(2);

void BM_SyntheticMix(benchmark::State& state) {
  const std::uint64_t ram = static_cast<std::uint64_t>(state.range(0)) * md::GiB;
  md::Machine m(config(ram));
  md::workload::WorkloadConfig wc;
  wc.events = 1'000'000;
  md::workload::SyntheticWorkload w(m, wc);
  std::uint64_t events = 0;
  for (auto _ : state) events += w.run().events;  // each run continues on the same machine
  state.SetItemsProcessed(static_cast<int64_t>(events));
}
BENCHMARK(BM_SyntheticMix)->Arg(64)->Arg(1024)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_PolicyRun(benchmark::State& state) {
  md::workload::Scenario s;
  s.name = "bench";
  s.machine = config(static_cast<std::uint64_t>(state.range(0)) * md::GiB);
  s.workload.events = 200'000;
  exmem::sim::RunOptions o;
  o.tlb = md::tlb::TlbConfig::preset(s.tlb);
  std::uint64_t events = 0;
  for (auto _ : state) {
    const exmem::sim::RunResult r = exmem::sim::run_synthetic(s, "upstream", o);
    benchmark::DoNotOptimize(r.direct_map.level2_splits);
    events += r.events();
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
}
BENCHMARK(BM_PolicyRun)->Arg(64)->Unit(benchmark::kMillisecond)->Iterations(2);

void BM_SecretFaultPath(benchmark::State& state) {
  md::Machine m(config(64 * md::GiB));
  md::mm::Mm& mm = m.mm();
  const auto pid = mm.spawn(8 * md::MiB, /*cap_ipc_lock=*/true);
  const std::uint64_t pages = 4096;
  std::uint64_t events = 0;
  for (auto _ : state) {
    int fd = mm.memfd_secret(pid, md::mm::kO_CLOEXEC);
    if (fd < 0 || mm.ftruncate(pid, fd, static_cast<std::int64_t>(pages * md::kPageSize)) != 0) {
      state.SkipWithError("memfd_secret or ftruncate failed in the model");
      break;
    }
    auto addr = mm.mmap(pid, pages * md::kPageSize, md::mm::kPROT_READ | md::mm::kPROT_WRITE, md::mm::kMAP_SHARED,
                        fd, 0);
    if (!addr.ok()) {
      state.SkipWithError("mmap failed in the model");
      break;
    }
    for (std::uint64_t i = 0; i < pages; ++i) benchmark::DoNotOptimize(mm.touch(pid, addr.value + i * md::kPageSize, true));
    mm.munmap(pid, addr.value, pages * md::kPageSize);
    mm.close(pid, fd);
    events += 2 * pages;
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
}
BENCHMARK(BM_SecretFaultPath)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
