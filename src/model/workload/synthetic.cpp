// workload/: what drives the model (see synthetic.hpp for what the folder owns).
// synthetic.cpp: the built-in synthetic workload.
#include "model/workload/synthetic.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

namespace exmem::model::workload {

namespace {
std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(std::uint64_t seed) {
  for (std::uint64_t& s : s_) s = splitmix64(seed);
}

std::uint64_t Rng::next() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

struct SyntheticWorkload::State {
  struct Block {
    Pfn pfn;
    std::uint8_t order;
  };
  struct Holder {  // one process holding a secret region
    mm::Pid pid = 0;
    int fd = -1;
    std::uint64_t addr = 0;
    std::uint64_t pages = 0;
    std::uint64_t touched = 0;
  };
  std::vector<Block> kernel;
  std::vector<Block> user;
  std::uint64_t kernel_pages = 0;
  std::uint64_t user_pages = 0;
  std::uint64_t kernel_target = 0;
  std::uint64_t user_target = 0;
  std::vector<Holder> holders;
  std::vector<Block> fill;
  std::vector<Pfn> wp_tables;       // write-protected page-table pages in use
  std::uint64_t user_base_pages = 0;  // order-0 user pages since the last table
  bool filled = false;
};

SyntheticWorkload::SyntheticWorkload(Machine& machine, const WorkloadConfig& config)
    : machine_(machine), config_(config), rng_(config.seed), st_(std::make_unique<State>()) {
  st_->holders.resize(std::max(1u, config_.secret_processes));
}

SyntheticWorkload::~SyntheticWorkload() = default;

void SyntheticWorkload::fill() {
  phys::PhysMem& ph = machine_.phys();
  const std::uint64_t target =
      static_cast<std::uint64_t>(static_cast<double>(ph.free_pages()) * config_.fill);
  std::uint64_t got = 0;
  const auto t0 = std::chrono::steady_clock::now();
  CpuId cpu = 0;
  unsigned order = kHpagePmdOrder;
  while (got < target) {
    const phys::Gfp gfp = order == 0 ? phys::GFP_HIGHUSER_MOVABLE : phys::GFP_TRANSHUGE_LIGHT;
    const Result<Pfn> r = ph.alloc_pages(gfp, order, cpu, phys::FrameKind::User);
    if (!r.ok()) {
      if (order == 0) break;
      order = 0;  // no THP left: finish with base pages
      continue;
    }
    st_->fill.push_back({r.value, static_cast<std::uint8_t>(order)});
    got += std::uint64_t{1} << order;
    cpu = (cpu + 1) % ph.cpus();
  }
  result_.fill_pages = got;
  result_.fill_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::uint64_t ws = config_.working_set_pages;
  if (ws == 0) {
    ws = std::min<std::uint64_t>(ph.free_pages() / 4, std::max<std::uint64_t>(4096, config_.events / 4));
  }
  const double ku = config_.kernel_share + (1.0 - config_.secret_share - config_.kernel_share);
  const double kshare = ku > 0 ? config_.kernel_share / ku : 0.5;
  st_->kernel_target = static_cast<std::uint64_t>(static_cast<double>(ws) * kshare);
  st_->user_target = ws - st_->kernel_target;
  st_->filled = true;
}

void SyntheticWorkload::secret_step() {
  mm::Mm& m = machine_.mm();
  State::Holder& h = st_->holders[rng_.below(st_->holders.size())];
  if (h.pid == 0) {
    // A new holder: memfd_secret(O_CLOEXEC), ftruncate, mmap(MAP_SHARED).
    h.pid = m.spawn();
    h.fd = m.memfd_secret(h.pid, mm::kO_CLOEXEC);
    h.pages = 1 + rng_.below(config_.max_secret_file_pages);
    m.ftruncate(h.pid, h.fd, static_cast<std::int64_t>(h.pages * kPageSize));
    const Result<std::uint64_t> addr = m.mmap(h.pid, h.pages * kPageSize,
                                              mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED,
                                              h.fd, 0);
    h.addr = addr.ok() ? addr.value : 0;
    h.touched = 0;
    if (!addr.ok()) {
      ++result_.mmap_failures;
      h.touched = h.pages;  // nothing to touch; retire next time
    }
  }
  if (h.touched < h.pages) {
    const mm::VmFault f = m.touch(h.pid, h.addr + h.touched * kPageSize, true);
    ++h.touched;
    ++result_.events;
    if (f == mm::VmFault::Major) ++result_.secret_faults;
    if (f == mm::VmFault::Oom) ++result_.secret_ooms;
    if (f == mm::VmFault::SigBus) ++result_.secret_sigbus;
    return;
  }
  // Done: the holder goes away, perhaps after sharing its secret.
  const std::uint64_t before = m.stats().secret_pages_freed;
  const double r = rng_.uniform();
  if (r < config_.fork_probability) {
    const Result<mm::Pid> child = m.fork(h.pid);
    ++result_.forks;
    m.exit(h.pid);
    if (child.ok()) {
      m.touch(child.value, h.addr, false);  // the child sees the parent's page
      m.exit(child.value);
    }
  } else if (r < config_.fork_probability + config_.fd_pass_probability) {
    const mm::Pid helper = m.spawn();
    const Result<int> nfd = m.send_fd(h.pid, h.fd, helper, true);
    ++result_.fd_passes;
    m.exit(h.pid);
    if (nfd.ok()) {
      const Result<std::uint64_t> a = m.mmap(helper, h.pages * kPageSize, mm::kPROT_READ,
                                             mm::kMAP_SHARED, nfd.value, 0);
      if (a.ok()) m.touch(helper, a.value, false);
    }
    m.exit(helper);
  } else {
    m.exit(h.pid);
  }
  const std::uint64_t freed = m.stats().secret_pages_freed - before;
  result_.secret_frees += freed;
  result_.events += freed;
  h = State::Holder{};
}

void SyntheticWorkload::kernel_step() {
  phys::PhysMem& ph = machine_.phys();
  const auto cpu = static_cast<CpuId>(rng_.below(ph.cpus()));
  const bool grow = st_->kernel_pages < st_->kernel_target ? rng_.uniform() < 0.6
                                                           : rng_.uniform() < 0.4;
  if (grow || st_->kernel.empty()) {
    const double r = rng_.uniform();
    const unsigned order = r < 0.7 ? 0 : r < 0.8 ? 1 : r < 0.9 ? 2 : 3;
    const bool reclaimable = rng_.uniform() < 0.2;
    const Result<Pfn> p =
        machine_.alloc_pages(reclaimable ? phys::GFP_KERNEL_RECLAIMABLE : phys::GFP_KERNEL, order, cpu,
                       reclaimable ? phys::FrameKind::Reclaimable : phys::FrameKind::Kernel);
    ++result_.events;
    if (!p.ok()) {
      ++result_.alloc_failures;
      return;
    }
    st_->kernel.push_back({p.value, static_cast<std::uint8_t>(order)});
    st_->kernel_pages += std::uint64_t{1} << order;
    ++result_.kernel_allocs;
    return;
  }
  const std::size_t i = rng_.below(st_->kernel.size());
  const State::Block b = st_->kernel[i];
  st_->kernel[i] = st_->kernel.back();
  st_->kernel.pop_back();
  machine_.free_pages(b.pfn, b.order, cpu);
  st_->kernel_pages -= std::uint64_t{1} << b.order;
  ++result_.kernel_frees;
  ++result_.events;
}

void SyntheticWorkload::user_step() {
  phys::PhysMem& ph = machine_.phys();
  const auto cpu = static_cast<CpuId>(rng_.below(ph.cpus()));
  const bool grow = st_->user_pages < st_->user_target ? rng_.uniform() < 0.6
                                                       : rng_.uniform() < 0.4;
  if (grow || st_->user.empty()) {
    const unsigned order = rng_.uniform() < 0.02 ? kHpagePmdOrder : 0;
    const Result<Pfn> p = machine_.alloc_pages(
        order == 0 ? phys::GFP_HIGHUSER_MOVABLE : phys::GFP_TRANSHUGE_LIGHT, order, cpu,
        phys::FrameKind::User);
    ++result_.events;
    if (!p.ok()) {
      ++result_.alloc_failures;
      return;
    }
    st_->user.push_back({p.value, static_cast<std::uint8_t>(order)});
    st_->user_pages += std::uint64_t{1} << order;
    ++result_.user_allocs;
    // A PTE table per 512 base pages (a THP is mapped by a PMD: no PTE table).
    if (config_.wp_page_tables && order == 0 && ++st_->user_base_pages == kPtrsPerTable) {
      st_->user_base_pages = 0;
      const Result<Pfn> t = machine_.policy().alloc_wp_table(machine_, cpu);
      if (t.ok()) {
        st_->wp_tables.push_back(t.value);
        ++result_.wp_tables_allocated;
      } else {
        ++result_.wp_table_failures;
      }
    }
    return;
  }
  const std::size_t i = rng_.below(st_->user.size());
  const State::Block b = st_->user[i];
  st_->user[i] = st_->user.back();
  st_->user.pop_back();
  machine_.free_pages(b.pfn, b.order, cpu);
  st_->user_pages -= std::uint64_t{1} << b.order;
  // Tables go when the memory they map has gone: one per 512 base pages freed.
  if (config_.wp_page_tables && b.order == 0 && !st_->wp_tables.empty() &&
      st_->wp_tables.size() * kPtrsPerTable > st_->user.size()) {
    machine_.policy().free_wp_table(machine_, st_->wp_tables.back(), cpu);
    st_->wp_tables.pop_back();
    ++result_.wp_tables_freed;
  }
  ++result_.user_frees;
  ++result_.events;
}

WorkloadResult SyntheticWorkload::run(const std::function<void(std::uint64_t)>& after_step) {
  if (!st_->filled) fill();
  const auto t0 = std::chrono::steady_clock::now();
  const double s = config_.secret_share;
  const double k = s + config_.kernel_share;
  while (result_.events < config_.events) {
    const double r = rng_.uniform();
    if (r < s) {
      secret_step();
    } else if (r < k) {
      kernel_step();
    } else {
      user_step();
    }
    machine_.scan_tick(static_cast<CpuId>(result_.events % machine_.phys().cpus()));
    if (after_step) after_step(result_.events);
  }
  result_.run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result_;
}

}  // namespace exmem::model::workload
