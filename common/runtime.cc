#include "common/runtime.h"

#include <dlfcn.h>
#include <malloc.h>

#include <ATen/Parallel.h>

namespace meow {

void TuneAllocator() {
  // 1 GiB: allocations below it come from the heap, and the heap is not trimmed below it.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

void SetComputeThreads(int threads) {
  at::set_num_threads(threads < 1 ? 1 : threads);
  // Looked up at run time: present when the BLAS behind LibTorch is OpenBLAS, absent otherwise.
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
  }
}

}  // namespace meow
