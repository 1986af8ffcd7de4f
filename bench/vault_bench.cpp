// What a vault's access costs: exmem_vault_open + exmem_vault_close.
//
// A vault is PROT_NONE while closed, so the first open and the last close each
// change the protection of its mapping (one mprotect each, the close's with a
// TLB flush); a nested open or close only counts, under the vault's mutex.
// Rows (median of 10 repetitions, real time per open+close pair):
//   open_close/rw          open read-write, close: two mprotect calls
//   open_close/read        the same, read-only
//   open_write_close/rw    open read-write, write one byte per page, close
//   nested_open_close/rw   another read-write open is held: no mprotect
// The vault is 4 KiB unless the row's argument says otherwise (pages).

// exmem.h declares a function and a struct both named exmem_stats, which g++'s
// -Wshadow reports as the function hiding the struct's constructor.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#include <exmem/exmem.h>
#pragma GCC diagnostic pop

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>

namespace {

constexpr int kRepetitions = 10;
constexpr double kMinTime = 0.2;

exmem_vault* make_vault(benchmark::State& st, size_t pages) {
  exmem_vault* v = exmem_vault_create(pages * 4096);
  if (!v) st.SkipWithError(exmem_last_error_message());
  return v;
}

void BM_open_close(benchmark::State& st, int access) {
  exmem_vault* v = make_vault(st, static_cast<size_t>(st.range(0)));
  if (!v) return;
  for (auto _ : st) {
    void* p = exmem_vault_open(v, access);
    benchmark::DoNotOptimize(p);
    if (exmem_vault_close(v, access) != EXMEM_OK) st.SkipWithError(exmem_last_error_message());
  }
  exmem_vault_destroy(v);
}

void BM_open_close_rw(benchmark::State& st) { BM_open_close(st, EXMEM_VAULT_READ_WRITE); }
void BM_open_close_read(benchmark::State& st) { BM_open_close(st, EXMEM_VAULT_READ); }

void BM_open_write_close_rw(benchmark::State& st) {
  size_t pages = static_cast<size_t>(st.range(0));
  exmem_vault* v = make_vault(st, pages);
  if (!v) return;
  unsigned char n = 0;
  for (auto _ : st) {
    auto* p = static_cast<volatile unsigned char*>(exmem_vault_open(v, EXMEM_VAULT_READ_WRITE));
    for (size_t i = 0; i < pages; ++i) p[i * 4096] = n;
    ++n;
    exmem_vault_close(v, EXMEM_VAULT_READ_WRITE);
  }
  exmem_vault_destroy(v);
}

void BM_nested_open_close_rw(benchmark::State& st) {
  exmem_vault* v = make_vault(st, static_cast<size_t>(st.range(0)));
  if (!v) return;
  exmem_vault_open(v, EXMEM_VAULT_READ_WRITE);  // held: the inner pairs change nothing
  for (auto _ : st) {
    void* p = exmem_vault_open(v, EXMEM_VAULT_READ_WRITE);
    benchmark::DoNotOptimize(p);
    exmem_vault_close(v, EXMEM_VAULT_READ_WRITE);
  }
  exmem_vault_close(v, EXMEM_VAULT_READ_WRITE);
  exmem_vault_destroy(v);
}

void configure(benchmark::internal::Benchmark* b) {
  b->Repetitions(kRepetitions)->ReportAggregatesOnly(true)->MinTime(kMinTime)->UseRealTime();
}

BENCHMARK(BM_open_close_rw)->Name("open_close/rw")->Arg(1)->Arg(16)->Apply(configure);
BENCHMARK(BM_open_close_read)->Name("open_close/read")->Arg(1)->Apply(configure);
BENCHMARK(BM_open_write_close_rw)->Name("open_write_close/rw")->Arg(1)->Arg(16)->Apply(configure);
BENCHMARK(BM_nested_open_close_rw)->Name("nested_open_close/rw")->Arg(1)->Apply(configure);

}  // namespace

int main(int argc, char** argv) {
  int prot = exmem_protection();
  std::printf("exmem protection: %s\n", prot == EXMEM_PROT_SECRET   ? "EXMEM_PROT_SECRET (memfd_secret)"
                                        : prot == EXMEM_PROT_LOCKED ? "EXMEM_PROT_LOCKED (locked memory)"
                                                                    : "none");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
