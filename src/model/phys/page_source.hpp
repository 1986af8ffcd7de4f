// phys/: physical memory (see physmem.hpp for what the folder owns).
// page_source.hpp: where the kernel's users of pages (processes, the execmem
// cache, guest_memfd, a policy giving a page back) allocate and free: the
// machine's alloc_pages() and __free_pages(), which may run a shrinker before
// failing and let the policy take pages of pageblocks it marked. A test can
// hand a part a source of its own.
#pragma once

#include "model/phys/frame.hpp"
#include "model/phys/gfp.hpp"
#include "model/types.hpp"

namespace exmem::model::phys {

class PageSource {
 public:
  virtual ~PageSource() = default;
  virtual Result<Pfn> alloc_pages(Gfp gfp, unsigned order, CpuId cpu, FrameKind kind) = 0;
  virtual void free_pages(Pfn pfn, unsigned order, CpuId cpu) = 0;
};

}  // namespace exmem::model::phys
