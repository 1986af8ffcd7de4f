// Process-wide set-up of every libexmem test program.
//  - Death tests run "threadsafe": the child re-executes the test program, so it
//    is a fresh process where exmem_init() can still choose a configuration.
//  - Core dumps are off: many tests end a child with SIGSEGV or SIGABRT on
//    purpose. The core dump test turns them back on in its own victim process.
#include <gtest/gtest.h>
#include <sys/resource.h>

namespace {

class Setup : public ::testing::Environment {
 public:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

[[maybe_unused]] const bool kRegistered = [] {
  rlimit none{0, 0};
  rlimit cur{};
  if (getrlimit(RLIMIT_CORE, &cur) == 0) none.rlim_max = cur.rlim_max;
  setrlimit(RLIMIT_CORE, &none);
  ::testing::AddGlobalTestEnvironment(new Setup);
  return true;
}();

}  // namespace

// Under AddressSanitizer or ThreadSanitizer (the asan and tsan presets): let
// faults be faults. Many tests expect a child to die of SIGSEGV (guard pages,
// memory kept from children), which a sanitizer would otherwise turn into a
// report and exit status 1.
extern "C" const char* __asan_default_options() { return "handle_segv=0:handle_sigbus=0:handle_abort=0"; }
extern "C" const char* __tsan_default_options() { return "handle_segv=0:handle_sigbus=0:handle_abort=0"; }
