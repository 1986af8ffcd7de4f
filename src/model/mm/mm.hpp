// mm/: processes, their file descriptors and mappings, memfd_secret(2)
// exactly as merged (mm/secretmem.c, Linux 6.18): the syscall, ftruncate once,
// mmap (MAP_SHARED only, RLIMIT_MEMLOCK), the fault, GUP refusal, fork, fd
// passing, release; and MAP_EXCLUSIVE, the 2019 RFC (see the block comment
// above Mm::mmap() in mm.cpp for what the model decided where the RFC was
// silent).
// Owns: processes, fd tables, VMAs, secretmem files and their page caches,
// the anonymous objects that hold MAP_EXCLUSIVE pages, the processes'
// anonymous and page-cache pages and reclaimable slab (process_memory.hpp),
// and the OOM killer (oom_kill.hpp).
// Must not touch: frames, free lists or the direct map directly; pages come
// from and go back to the machine's policy (policy/), which uses phys/ and
// directmap/.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/directmap/directmap.hpp"
#include "model/mm/oom_kill.hpp"
#include "model/mm/process_memory.hpp"
#include "model/phys/page_source.hpp"
#include "model/phys/physmem.hpp"
#include "model/policy/policy.hpp"
#include "model/types.hpp"

namespace exmem::model::mm {

// uapi constants (values of x86-64 Linux).
inline constexpr unsigned kO_CLOEXEC = 02000000;
inline constexpr unsigned kPROT_READ = 0x1;
inline constexpr unsigned kPROT_WRITE = 0x2;
inline constexpr unsigned kPROT_EXEC = 0x4;
inline constexpr unsigned kMAP_SHARED = 0x01;
inline constexpr unsigned kMAP_PRIVATE = 0x02;
inline constexpr unsigned kMAP_SHARED_VALIDATE = 0x03;
inline constexpr unsigned kMAP_TYPE = 0x0f;
inline constexpr unsigned kMAP_ANONYMOUS = 0x20;
inline constexpr unsigned kMAP_LOCKED = 0x2000;
inline constexpr unsigned kMAP_POPULATE = 0x8000;
inline constexpr unsigned kMAP_HUGETLB = 0x40000;
// "mm: add MAP_EXCLUSIVE to create exclusive user mappings" (RFC, October
// 2019): the value the RFC gave it in include/uapi/asm-generic/mman-common.h.
inline constexpr unsigned kMAP_EXCLUSIVE = 0x200000;
inline constexpr int kMADV_DONTFORK = 10;
inline constexpr int kMADV_DOFORK = 11;
inline constexpr int kMADV_WIPEONFORK = 18;
inline constexpr int kMADV_KEEPONFORK = 19;
inline constexpr unsigned kRlimitNofile = 1024;

// What a page fault ends in (VM_FAULT_* and the signal it becomes).
enum class VmFault : std::uint8_t {
  Minor,    // the page was in the file already
  Major,    // a page was allocated for it
  Oom,      // VM_FAULT_OOM: the OOM killer runs
  SigBus,   // VM_FAULT_SIGBUS: offset past the file size
  SigSegv,  // no mapping, or the access is not allowed
};
const char* vm_fault_name(VmFault f);

struct MmStats {
  std::uint64_t secret_files_created = 0;
  std::uint64_t secret_files_released = 0;
  std::uint64_t faults_major = 0;
  std::uint64_t faults_minor = 0;
  std::uint64_t faults_oom = 0;       // VM_FAULT_OOM: no page (the OOM killer found no victim), or the
                                      // faulting process was the OOM killer's victim
  std::uint64_t faults_oom_victim = 0;  // ... of them: the faulting process was killed meanwhile
  std::uint64_t faults_sigbus = 0;
  std::uint64_t faults_sigsegv = 0;
  std::uint64_t secret_pages_freed = 0;
  std::uint64_t gup_refused = 0;
  std::uint64_t populate_skipped = 0;  // MAP_POPULATE/MAP_LOCKED: GUP refused, nothing faulted
  // MAP_EXCLUSIVE
  std::uint64_t exclusive_mmaps = 0;         // mappings created
  std::uint64_t exclusive_mmap_refused = 0;  // -EINVAL (not private anonymous), -EAGAIN
                                             // (memlock), or the policy's reservation failed
  std::uint64_t exclusive_faults = 0;        // pages taken from the policy (populate or fault)
  std::uint64_t exclusive_faults_oom = 0;    // populate or fault found no page
  std::uint64_t exclusive_pages_freed = 0;   // pages given back at munmap / exit / exec
  std::uint64_t exclusive_not_copied = 0;    // mappings fork() left out of the child
};

// The machine's settings mm/ follows.
struct MmSettings {
  std::uint64_t rlimit_memlock_bytes = 8 * MiB;  // what spawn() gives a process
  bool secretmem_enable = true;                  // secretmem.enable=: else ENOSYS
};

class Mm {
 public:
  // Secret pages come from and go back to policy; anonymous, page-cache and
  // slab pages to `pages` (the machine's page source); phys gives the number
  // of CPUs; phys and dmap are read by check().
  Mm(policy::Policy& policy, phys::PageSource& pages, const phys::PhysMem& phys, const directmap::DirectMap& dmap,
     const MmSettings& settings);
  ~Mm();
  Mm(const Mm&) = delete;
  Mm& operator=(const Mm&) = delete;

  // A new process running on `cpu` (default: round robin over the CPUs).
  Pid spawn(std::uint64_t rlimit_memlock_bytes, bool cap_ipc_lock = false, int cpu = -1);
  Pid spawn();
  int set_cpu(Pid pid, CpuId cpu);
  // fork(): fds shared, mappings shared (not VM_DONTCOPY ones), mlock not inherited.
  Result<Pid> fork(Pid parent);
  // execve(): O_CLOEXEC fds closed, every mapping dropped.
  int exec(Pid pid);
  int exit(Pid pid);

  // The memory the processes own besides their mappings of secret pages:
  // anonymous pages, page cache, and the kernel's reclaimable slab.
  ProcessMemory& memory() { return memory_; }
  [[nodiscard]] const ProcessMemory& memory() const { return memory_; }
  // /proc/PID/oom_score_adj (-1000..1000; -EINVAL outside), inherited by fork.
  int set_oom_score_adj(Pid pid, int adj);
  [[nodiscard]] int oom_score_adj(Pid pid) const;
  // A process the OOM killer never chooses (oom_unkillable_task(): init, a kernel thread).
  int set_unkillable(Pid pid, bool unkillable);
  // What the workload calls the process (its comm), reported with an OOM kill.
  int set_name(Pid pid, std::string name);
  [[nodiscard]] std::string name(Pid pid) const;
  // get_mm_rss(): anonymous pages, page cache mapped, and the pages present
  // in its secretmem (MM_FILEPAGES) and MAP_EXCLUSIVE (MM_ANONPAGES) mappings.
  [[nodiscard]] std::uint64_t rss(Pid pid) const;
  [[nodiscard]] std::uint64_t secret_rss(Pid pid) const;  // the secret part of rss
  // mm_pgtables_bytes() / PAGE_SIZE: one page-table page per 512 pages mapped.
  [[nodiscard]] std::uint64_t pgtables_pages(Pid pid) const;
  // Every pid ever given, in creation order (for_each_process()): 1..max_pid().
  [[nodiscard]] Pid max_pid() const { return static_cast<Pid>(procs_.size()); }
  [[nodiscard]] bool unkillable(Pid pid) const;
  // The OOM killer's kill (__oom_kill_process()): the victim's anonymous
  // memory is reaped at once, then it exits (fds closed, mappings dropped:
  // a secret file goes with its last reference). Returns the pages freed.
  std::uint64_t oom_kill(Pid pid, CpuId cpu);
  // The OOM killer's record.
  OomStats& oom() { return oom_; }
  [[nodiscard]] const OomStats& oom() const { return oom_; }

  // mirrors SYSCALL_DEFINE1(memfd_secret): the new fd, or -ENOSYS / -EINVAL / -EMFILE.
  int memfd_secret(Pid pid, unsigned flags);
  // mirrors do_sys_ftruncate() + secretmem_setattr(): the size is set once.
  int ftruncate(Pid pid, int fd, std::int64_t length);
  // mirrors do_mmap() + secretmem_mmap_prepare(), or with kMAP_EXCLUSIVE the
  // RFC's ksys_mmap_pgoff() + populate: the mapping's address. Anonymous
  // mappings without kMAP_EXCLUSIVE are not modelled (-EOPNOTSUPP): the
  // workload's user pages stand for ordinary memory.
  Result<std::uint64_t> mmap(Pid pid, std::uint64_t len, unsigned prot, unsigned flags, int fd,
                             std::uint64_t offset);
  int munmap(Pid pid, std::uint64_t addr, std::uint64_t len);
  // mirrors do_mprotect_pkey(): every page of [addr, addr + len) must be
  // mapped (-ENOMEM otherwise); mappings partly covered are split. PROT_EXEC
  // on a secretmem mapping is -EACCES (its mount is noexec). The pages stay
  // where they are: a MAP_EXCLUSIVE page stays out of the direct map.
  int mprotect(Pid pid, std::uint64_t addr, std::uint64_t len, unsigned prot);
  // MADV_DONTFORK / MADV_DOFORK / MADV_WIPEONFORK / MADV_KEEPONFORK on whole mappings.
  int madvise(Pid pid, std::uint64_t addr, std::uint64_t len, int advice);
  int close(Pid pid, int fd);
  // read(2)/write(2) on the fd: secretmem has no read/write file operations.
  int read(Pid pid, int fd);
  // sendmsg(SCM_RIGHTS) + recvmsg(): the receiver's new fd.
  Result<int> send_fd(Pid from, int fd, Pid to, bool cloexec);
  // A user access to addr: handle_mm_fault() -> secretmem_fault() when needed.
  VmFault touch(Pid pid, std::uint64_t addr, bool write);
  // get_user_pages() on addr (/proc/pid/mem, process_vm_readv, ptrace peeks,
  // O_DIRECT): refused with -EFAULT on secretmem and MAP_EXCLUSIVE mappings.
  int gup(Pid pid, std::uint64_t addr);
  // hibernation_available(): false while any secretmem file exists.
  [[nodiscard]] bool hibernation_available() const { return secretmem_users_ == 0; }

  // The pfn behind a user address, as /proc/pid/pagemap shows it to root
  // (kNoPfn when nothing is mapped there yet).
  [[nodiscard]] Pfn pagemap(Pid pid, std::uint64_t addr) const;
  [[nodiscard]] bool alive(Pid pid) const;
  [[nodiscard]] std::uint64_t locked_vm(Pid pid) const;  // pages
  [[nodiscard]] std::uint64_t secret_pages() const { return secret_pages_; }
  // Pages held by MAP_EXCLUSIVE mappings (FrameKind::Secret frames too).
  [[nodiscard]] std::uint64_t exclusive_pages() const { return exclusive_pages_; }
  // Whether addr lies in a MAP_EXCLUSIVE mapping of pid.
  [[nodiscard]] bool is_exclusive(Pid pid, std::uint64_t addr) const;
  [[nodiscard]] std::uint64_t live_files() const { return secretmem_users_; }
  [[nodiscard]] std::uint64_t processes() const;
  [[nodiscard]] const MmStats& stats() const { return stats_; }
  [[nodiscard]] std::size_t model_bytes() const;
  // Every page of every file and MAP_EXCLUSIVE object is a Secret frame absent
  // from the direct map; reference counts match fds and mappings; locked_vm
  // matches VM_LOCKED mappings; a MAP_EXCLUSIVE object has no fd and belongs
  // to one process.
  [[nodiscard]] std::vector<std::string> check() const;

 private:
  struct File;
  struct Process;
  struct Vma {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::uint32_t file = 0;
    std::uint64_t pgoff = 0;
    unsigned prot = 0;
    bool locked = false;      // VM_LOCKED
    bool dontcopy = false;    // VM_DONTCOPY (MADV_DONTFORK)
    bool wipeonfork = false;  // VM_WIPEONFORK
    bool exclusive = false;   // VM_EXCLUSIVE (the MAP_EXCLUSIVE RFC)
  };

  Process* proc(Pid pid);
  [[nodiscard]] const Process* proc(Pid pid) const;
  File* file_of(Process& p, int fd);
  int install_fd(Process& p, std::uint32_t file, bool cloexec);
  void get_file(std::uint32_t file);
  void put_file(std::uint32_t file, CpuId cpu);
  void release_file(std::uint32_t file, CpuId cpu);
  void drop_vma(Process& p, const Vma& vma);
  void drop_all_vmas(Process& p);
  void split_vma(Process& p, std::uint64_t addr);
  std::uint32_t new_file_id();
  Result<std::uint64_t> mmap_exclusive(Process& p, std::uint64_t pages, unsigned prot);
  VmFault secretmem_fault(Pid pid, std::uint32_t file, std::uint64_t pgoff, CpuId cpu);
  VmFault exclusive_fault(Pid pid, std::uint32_t file, std::uint64_t pgoff, CpuId cpu);
  [[nodiscard]] std::uint64_t pages_in(const Vma& vma) const;
  void free_exclusive_range(std::uint32_t file, std::uint64_t first, std::uint64_t count, CpuId cpu);

  policy::Policy& policy_;
  ProcessMemory memory_;
  const phys::PhysMem& phys_;
  const directmap::DirectMap& dmap_;
  MmSettings settings_;
  std::vector<std::unique_ptr<Process>> procs_;  // index = pid - 1
  std::vector<std::unique_ptr<File>> files_;     // index = file id
  std::vector<std::uint32_t> free_file_ids_;
  std::uint64_t secretmem_users_ = 0;
  std::uint64_t secret_pages_ = 0;
  std::uint64_t exclusive_pages_ = 0;
  unsigned next_cpu_ = 0;
  MmStats stats_;
  OomStats oom_;
};

}  // namespace exmem::model::mm
