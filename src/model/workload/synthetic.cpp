// workload/: what drives the model (see README.md for what the folder owns).
// synthetic.cpp: the built-in synthetic workload.
#include "model/workload/synthetic.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "model/huge_pages.hpp"

namespace exmem::model::workload {

namespace {
std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

void WorkloadConfig::validate() const {
  auto fail = [](const std::string& what) { throw std::invalid_argument("workload: " + what); };
  auto share = [&](const char* name, double v) {
    if (!(v >= 0.0 && v <= 1.0)) fail(fmt::format("{} is {}: expected a share from 0 to 1", name, v));
  };
  share("secret_share", secret_share);
  share("kernel_share", kernel_share);
  share("map_exclusive_share", map_exclusive_share);
  share("rox_share", rox_share);
  share("guest_share", guest_share);
  share("fork_probability", fork_probability);
  share("fd_pass_probability", fd_pass_probability);
  share("fill", fill);
  share("page_cache_share", page_cache_share);
  if (ordinary_processes == 0) fail("ordinary_processes is 0: expected at least 1 process");
  const double sum = secret_share + kernel_share + map_exclusive_share + rox_share + guest_share;
  if (sum > 1.0 + 1e-9) {
    fail(fmt::format("secret_share + kernel_share + map_exclusive_share + rox_share + guest_share "
                     "is {}: expected at most 1 (the rest are user allocations)",
                     sum));
  }
  if (fork_probability + fd_pass_probability > 1.0 + 1e-9) {
    fail("fork_probability + fd_pass_probability is above 1: expected at most 1");
  }
  if (min_secret_file_pages == 0) fail("min_secret_file_pages is 0: expected at least 1 page");
  if (max_secret_file_pages < min_secret_file_pages) {
    fail(fmt::format("max_secret_file_pages ({}) is below min_secret_file_pages ({})",
                     max_secret_file_pages, min_secret_file_pages));
  }
  if (!(secret_hold_turns >= 0.0) || !std::isfinite(secret_hold_turns)) {
    fail(fmt::format("secret_hold_turns is {}: expected a mean of 0 or more turns", secret_hold_turns));
  }
  if (map_exclusive_share > 0 && map_exclusive_max_pages == 0) {
    fail("map_exclusive_max_pages is 0: expected at least 1 page");
  }
  if (rox_share > 0 && rox_max_pages == 0) fail("rox_max_pages is 0: expected at least 1 page");
  if (guest_share > 0 && guests == 0) fail("guests is 0: expected at least 1 VM");
  if (guest_share > 0 && guest_pages == 0) fail("guest_pages is 0: expected at least 1 page");
  if (guest_folio_order > kPageblockOrder) {
    fail(fmt::format("guest_folio_order is {}: expected at most {} (2 MiB)", guest_folio_order, kPageblockOrder));
  }
  if (guest_share > 0 && guest_pages % (std::uint64_t{1} << guest_folio_order) != 0) {
    fail(fmt::format("guest_pages is {}: expected a whole number of folios of {} pages", guest_pages,
                     std::uint64_t{1} << guest_folio_order));
  }
}

Rng::Rng(std::uint64_t seed) {
  for (std::uint64_t& s : s_) s = splitmix64(seed);
}

struct SyntheticWorkload::State {
  // A kernel block (handle kNoHandle: pfn and order), or an owned one as
  // mm::ProcessMemory allocated it.
  using Block = mm::OwnedPage;
  struct Ordinary {  // one ordinary process owning user memory
    mm::Pid pid = 0;
    std::string name;
  };
  struct Holder {  // one process holding a secret region
    mm::Pid pid = 0;
    int fd = -1;
    std::uint64_t addr = 0;
    std::uint64_t pages = 0;
    std::uint64_t touched = 0;
    bool holding = false;  // faulted in; hold drawn
    std::uint64_t hold = 0;
  };
  struct ExclusiveHolder {  // one process holding a MAP_EXCLUSIVE mapping
    mm::Pid pid = 0;
    std::uint64_t addr = 0;
    std::uint64_t pages = 0;
    std::uint64_t hold = 0;
  };
  struct Module {  // text loaded through the execmem ROX cache
    std::uint64_t addr = 0;
    std::uint64_t pages = 0;
  };
  struct Guest {  // a VM and its guest_memfd
    bool live = false;
    std::uint32_t file = 0;
    CpuId cpu = 0;
    std::uint64_t touched = 0;
  };
  HugeVector<Block> kernel;
  HugeVector<Block> user;
  std::uint64_t kernel_pages = 0;
  std::uint64_t user_pages = 0;
  std::uint64_t kernel_target = 0;
  std::uint64_t user_target = 0;
  HugeVector<Holder> holders;
  std::vector<ExclusiveHolder> exclusive;
  std::vector<Module> modules;
  std::vector<Guest> guests;
  HugeVector<Block> fill;
  HugeVector<Ordinary> ordinary;
  std::vector<Pfn> wp_tables;       // write-protected page-table pages in use
  std::uint64_t user_base_pages = 0;  // order-0 user pages since the last table
  bool filled = false;
};

SyntheticWorkload::SyntheticWorkload(Machine& machine, const WorkloadConfig& config)
    : machine_(machine), config_(config), rng_(config.seed), st_(std::make_unique<State>()) {
  config_.validate();
  st_->holders.resize(std::max(1u, config_.secret_processes));
  st_->exclusive.resize(std::max(1u, config_.secret_processes));
  st_->guests.resize(std::max(1u, config_.guests));
}

SyntheticWorkload::~SyntheticWorkload() = default;

// The ordinary process i, spawned (again, when the OOM killer took it) on its turn.
mm::Pid SyntheticWorkload::ordinary(std::size_t i) {
  mm::Mm& m = machine_.mm();
  State::Ordinary& o = st_->ordinary[i];
  if (o.pid != 0 && m.alive(o.pid)) return o.pid;
  if (o.pid != 0) {
    ++result_.processes_killed;
    ++result_.processes_replaced;
  }
  o.pid = m.spawn();
  m.set_name(o.pid, o.name);
  return o.pid;
}

void SyntheticWorkload::fill() {
  phys::PhysMem& ph = machine_.phys();
  mm::ProcessMemory& mem = machine_.mm().memory();
  st_->ordinary.resize(config_.ordinary_processes);
  for (std::size_t i = 0; i < st_->ordinary.size(); ++i) {
    st_->ordinary[i].name = i == 0 ? "database" : fmt::format("app-{}", i);
  }
  const mm::Pid database = ordinary(0);
  const std::uint64_t target =
      static_cast<std::uint64_t>(static_cast<double>(ph.free_pages()) * config_.fill);
  std::uint64_t got = 0;
  const auto t0 = std::chrono::steady_clock::now();
  CpuId cpu = 0;
  unsigned order = kHpagePmdOrder;
  while (got < target) {
    // The fill takes what is free and kills no one for it (__GFP_NORETRY: no
    // OOM killer), which also leaves the database alive when memory runs short.
    const phys::Gfp gfp =
        order == 0 ? phys::GFP_HIGHUSER_MOVABLE | phys::__GFP_NORETRY : phys::GFP_TRANSHUGE_LIGHT;
    const Result<mm::PageHandle> r = mem.alloc_anon(database, gfp, order, cpu);
    if (!r.ok()) {
      if (order == 0) break;
      order = 0;  // no THP left: finish with base pages
      continue;
    }
    st_->fill.push_back(mem.owned(r.value));
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
  const double user_share = 1.0 - config_.secret_share - config_.kernel_share -
                            config_.map_exclusive_share - config_.rox_share - config_.guest_share;
  const double ku = config_.kernel_share + user_share;
  const double kshare = ku > 0 ? config_.kernel_share / ku : 0.5;
  st_->kernel_target = static_cast<std::uint64_t>(static_cast<double>(ws) * kshare);
  st_->user_target = ws - st_->kernel_target;
  st_->filled = true;
}

// An exponentially distributed number of turns of mean secret_hold_turns,
// rounded to the nearest whole turn; no draw (and no random number used)
// when the mean is 0.
std::uint64_t SyntheticWorkload::draw_hold() {
  if (config_.secret_hold_turns <= 0) return 0;
  const double u = rng_.uniform();
  return static_cast<std::uint64_t>(std::llround(-config_.secret_hold_turns * std::log1p(-u)));
}

void SyntheticWorkload::secret_step() {
  mm::Mm& m = machine_.mm();
  State::Holder& h = st_->holders[rng_.below(st_->holders.size())];
  if (h.pid != 0 && !m.alive(h.pid)) {  // the OOM killer took it: replaced now
    ++result_.processes_killed;
    ++result_.processes_replaced;
    h = State::Holder{};
  }
  if (h.pid == 0) {
    // A new holder: memfd_secret(O_CLOEXEC), ftruncate, mmap(MAP_SHARED).
    h.pid = m.spawn();
    m.set_name(h.pid, "secret-holder");
    h.fd = m.memfd_secret(h.pid, mm::kO_CLOEXEC);
    h.pages = config_.min_secret_file_pages +
              rng_.below(config_.max_secret_file_pages - config_.min_secret_file_pages + 1);
    m.ftruncate(h.pid, h.fd, static_cast<std::int64_t>(h.pages * kPageSize));
    const Result<std::uint64_t> addr = m.mmap(h.pid, h.pages * kPageSize,
                                              mm::kPROT_READ | mm::kPROT_WRITE, mm::kMAP_SHARED,
                                              h.fd, 0);
    h.addr = addr.ok() ? addr.value : 0;
    h.touched = 0;
    if (!addr.ok()) {
      // memfd_secret or mmap failed (secretmem disabled, RLIMIT_MEMLOCK): the
      // attempt is the step's event, or a workload of nothing but failing
      // holders would never reach its event count.
      ++result_.mmap_failures;
      ++result_.events;
      h.touched = h.pages;  // nothing to touch; retire next time
      return;
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
  // Faulted in: the holder keeps its secret for a while (not when mmap failed).
  if (h.addr != 0 && config_.secret_hold_turns > 0) {
    if (!h.holding) {
      h.holding = true;
      h.hold = draw_hold();
    }
    if (h.hold > 0) {
      --h.hold;
      ++result_.hold_turns;
      return;
    }
  }
  // Done: the holder goes away, perhaps after sharing its secret.
  const std::uint64_t before = m.stats().secret_pages_freed;
  const double r = rng_.uniform();
  if (r < config_.fork_probability) {
    const Result<mm::Pid> child = m.fork(h.pid);
    ++result_.forks;
    if (child.ok()) m.set_name(child.value, "secret-holder-child");
    m.exit(h.pid);
    if (child.ok()) {
      m.touch(child.value, h.addr, false);  // the child sees the parent's page
      m.exit(child.value);
    }
  } else if (r < config_.fork_probability + config_.fd_pass_probability) {
    const mm::Pid helper = m.spawn();
    m.set_name(helper, "secret-helper");
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

// A block the workload lets go: an owned one through its owner (a no-op,
// counted, when reclaim or the OOM killer took it already).
void SyntheticWorkload::free_block(const mm::OwnedPage& b, CpuId cpu) {
  if (b.handle == mm::kNoHandle) {
    machine_.free_pages(b.pfn, b.order, cpu);
    return;
  }
  if (!machine_.mm().memory().free(b, cpu)) ++result_.frees_of_gone;
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
    // Reclaimable allocations are slab of the reclaimable caches, which the
    // shrinker may free; the rest are the caller's until it frees them.
    const Result<Pfn> p = reclaimable ? machine_.mm().memory().alloc_slab(phys::GFP_KERNEL_RECLAIMABLE, order, cpu)
                                      : machine_.alloc_pages(phys::GFP_KERNEL, order, cpu, phys::FrameKind::Kernel);
    ++result_.events;
    if (!p.ok()) {
      ++result_.alloc_failures;
      return;
    }
    if (reclaimable) {
      ++result_.slab_allocs;
      st_->kernel.push_back(machine_.mm().memory().owned(p.value));
    } else {
      st_->kernel.push_back({mm::kNoHandle, p.value, 0, static_cast<std::uint8_t>(order), mm::PageUse::Anon});
    }
    st_->kernel_pages += std::uint64_t{1} << order;
    ++result_.kernel_allocs;
    return;
  }
  const std::size_t i = rng_.below(st_->kernel.size());
  const State::Block b = st_->kernel[i];
  st_->kernel[i] = st_->kernel.back();
  st_->kernel.pop_back();
  free_block(b, cpu);
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
    const double u = rng_.uniform();
    const unsigned order = u < 0.02 ? kHpagePmdOrder : 0;
    // One draw decides the order and, for a base page, whether it is page
    // cache (the rest of [0.02, 1) split by page_cache_share).
    const bool cache = order == 0 && u < 0.02 + 0.98 * config_.page_cache_share;
    const mm::Pid pid = ordinary(rng_.below(st_->ordinary.size()));
    mm::ProcessMemory& mem = machine_.mm().memory();
    const Result<mm::PageHandle> p =
        cache ? mem.alloc_cache(pid, phys::GFP_HIGHUSER_MOVABLE, 0, cpu)
              : mem.alloc_anon(pid, order == 0 ? phys::GFP_HIGHUSER_MOVABLE : phys::GFP_TRANSHUGE_LIGHT, order, cpu);
    ++result_.events;
    if (!p.ok()) {
      ++result_.alloc_failures;
      return;
    }
    if (cache) ++result_.page_cache_allocs;
    st_->user.push_back(mem.owned(p.value));
    st_->user_pages += std::uint64_t{1} << order;
    ++result_.user_allocs;
    // A PTE table per 512 base pages (a THP is mapped by a PMD: no PTE table).
    if (config_.wp_page_tables && order == 0 && ++st_->user_base_pages == kPtrsPerTable) {
      st_->user_base_pages = 0;
      const Result<Pfn> t = machine_.policy().alloc_wp_table(cpu);
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
  free_block(b, cpu);
  st_->user_pages -= std::uint64_t{1} << b.order;
  // Tables go when the memory they map has gone: one per 512 base pages freed.
  if (config_.wp_page_tables && b.order == 0 && !st_->wp_tables.empty() &&
      st_->wp_tables.size() * kPtrsPerTable > st_->user.size()) {
    machine_.policy().free_wp_table(st_->wp_tables.back(), cpu);
    st_->wp_tables.pop_back();
    ++result_.wp_tables_freed;
  }
  ++result_.user_frees;
  ++result_.events;
}

// A MAP_EXCLUSIVE holder: mmap(MAP_PRIVATE | MAP_ANONYMOUS | MAP_EXCLUSIVE)
// populates every page at once; after its hold the holder lets go, perhaps
// after forking (the child gets no copy), making the mapping read-only, or
// unmapping half of it first, then exits.
void SyntheticWorkload::exclusive_step() {
  mm::Mm& m = machine_.mm();
  State::ExclusiveHolder& h = st_->exclusive[rng_.below(st_->exclusive.size())];
  if (h.pid != 0 && !m.alive(h.pid)) {  // the OOM killer took it: replaced now
    ++result_.processes_killed;
    ++result_.processes_replaced;
    h = State::ExclusiveHolder{};
  }
  if (h.pid == 0) {
    h.pid = m.spawn();
    m.set_name(h.pid, "exclusive-holder");
    h.pages = 1 + rng_.below(config_.map_exclusive_max_pages);
    const std::uint64_t faults0 = m.stats().exclusive_faults;
    const std::uint64_t oom0 = m.stats().exclusive_faults_oom;
    const Result<std::uint64_t> a =
        m.mmap(h.pid, h.pages * kPageSize, mm::kPROT_READ | mm::kPROT_WRITE,
               mm::kMAP_PRIVATE | mm::kMAP_ANONYMOUS | mm::kMAP_EXCLUSIVE, -1, 0);
    const std::uint64_t faulted = m.stats().exclusive_faults - faults0;
    result_.exclusive_faults += faulted;
    result_.exclusive_failures += m.stats().exclusive_faults_oom - oom0;
    result_.events += std::max<std::uint64_t>(1, faulted);
    if (!a.ok()) {
      ++result_.exclusive_failures;
      m.exit(h.pid);
      h = State::ExclusiveHolder{};
      return;
    }
    h.addr = a.value;
    h.hold = draw_hold();
    return;
  }
  if (h.hold > 0) {
    --h.hold;
    ++result_.hold_turns;
    return;
  }
  const std::uint64_t freed0 = m.stats().exclusive_pages_freed;
  const double r = rng_.uniform();
  if (r < config_.fork_probability) {
    const Result<mm::Pid> child = m.fork(h.pid);
    ++result_.forks;
    if (child.ok()) {
      m.touch(child.value, h.addr, false);  // nothing there: SIGSEGV
      m.exit(child.value);
    }
  } else if (r < 0.5) {
    m.mprotect(h.pid, h.addr, h.pages * kPageSize, mm::kPROT_READ);
  } else if (h.pages > 1) {
    m.munmap(h.pid, h.addr, h.pages / 2 * kPageSize);
  }
  m.exit(h.pid);
  const std::uint64_t freed = m.stats().exclusive_pages_freed - freed0;
  result_.exclusive_frees += freed;
  result_.events += std::max<std::uint64_t>(1, freed);
  h = State::ExclusiveHolder{};
}

// Module (or BPF program) text through the execmem ROX cache: loads and
// unloads around kRoxModules live at a time.
void SyntheticWorkload::rox_step() {
  users::ExecmemCache& x = machine_.execmem();
  std::vector<State::Module>& live = st_->modules;
  const auto cpu = static_cast<CpuId>(rng_.below(machine_.phys().cpus()));
  const bool grow = live.size() < WorkloadConfig::kRoxModules ? rng_.uniform() < 0.6
                                                              : rng_.uniform() < 0.4;
  ++result_.events;
  if (grow || live.empty()) {
    const std::uint64_t pages = 1 + rng_.below(config_.rox_max_pages);
    const Result<std::uint64_t> a = x.alloc(pages, cpu);
    if (!a.ok()) {
      ++result_.rox_failures;
      return;
    }
    live.push_back({a.value, pages});
    ++result_.rox_loads;
    return;
  }
  const std::size_t i = rng_.below(live.size());
  x.free(live[i].addr, cpu);
  live[i] = live.back();
  live.pop_back();
  ++result_.rox_unloads;
}

// A KVM guest: its guest_memfd (NO_DIRECT_MAP, folios of guest_folio_order)
// is created on the VM's first turn, one folio is faulted in per turn (one
// event), and the VM is torn down once all of its memory is faulted in, or
// when a fault finds no memory; the teardown counts an event per folio freed.
void SyntheticWorkload::guest_step() {
  users::GuestMemfd& gm = machine_.guest_memfd();
  State::Guest& g = st_->guests[rng_.below(st_->guests.size())];
  if (!g.live) {
    const Result<std::uint32_t> f =
        gm.create(config_.guest_pages * kPageSize, users::kGUEST_MEMFD_FLAG_NO_DIRECT_MAP, config_.guest_folio_order);
    if (!f.ok()) {
      ++result_.guest_failures;
      ++result_.events;
      return;
    }
    g.live = true;
    g.file = f.value;
    g.cpu = static_cast<CpuId>(rng_.below(machine_.phys().cpus()));
    g.touched = 0;
  }
  if (g.touched < config_.guest_pages) {
    const mm::VmFault f = gm.fault(g.file, g.touched, g.cpu);
    ++result_.events;
    if (f == mm::VmFault::Major || f == mm::VmFault::Minor) {
      if (f == mm::VmFault::Major) ++result_.guest_faults;
      g.touched += std::uint64_t{1} << config_.guest_folio_order;
      return;
    }
    ++result_.guest_failures;  // the VMM gives up on this VM
  }
  const std::uint64_t folios = gm.folios(g.file);
  gm.release(g.file, g.cpu);
  result_.guest_frees += folios;
  result_.events += std::max<std::uint64_t>(1, folios);
  ++result_.guest_teardowns;
  g = State::Guest{};
}

WorkloadResult SyntheticWorkload::run(const std::function<void(std::uint64_t)>& after_step) {
  if (!after_step) return run_waking({}, ~std::uint64_t{0});
  return run_waking([&](std::uint64_t events) {
    after_step(events);
    return 0;  // after every step, whether or not it counted an event
  });
}

WorkloadResult SyntheticWorkload::run_waking(const std::function<std::uint64_t(std::uint64_t)>& wake,
                                             std::uint64_t next) {
  if (!st_->filled) fill();
  const auto t0 = std::chrono::steady_clock::now();
  // Thresholds on one uniform draw per step; a share of 0 adds none.
  const double s = config_.secret_share;
  const double k = s + config_.kernel_share;
  const double x = k + config_.map_exclusive_share;
  const double rx = x + config_.rox_share;
  const double g = rx + config_.guest_share;
  const unsigned cpus = machine_.phys().cpus();
  while (result_.events < config_.events) {
    const double r = rng_.uniform();
    if (r < s) {
      secret_step();
    } else if (r < k) {
      kernel_step();
    } else if (r < x) {
      exclusive_step();
    } else if (r < rx) {
      rox_step();
    } else if (r < g) {
      guest_step();
    } else {
      user_step();
    }
    machine_.scan_tick(static_cast<CpuId>(result_.events % cpus));
    if (result_.events >= next && wake) next = wake(result_.events);
  }
  result_.run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result_;
}

}  // namespace exmem::model::workload
