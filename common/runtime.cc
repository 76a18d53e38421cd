#include "common/runtime.h"

#include <dlfcn.h>
#include <malloc.h>

#include <ATen/Parallel.h>

namespace meow {

void TuneAllocator() {
  // 1 GiB: allocations below it come from the heap, and the heap is not trimmed below it.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // Threads other than the first allocate from arenas made of 64 MiB heaps, and glibc unmaps a
  // heap as soon as everything in it is freed, whatever the trim threshold, unless top_pad
  // bytes would stay. A learner thread whose update's temporaries outgrow one heap then maps a
  // fresh heap and faults its pages in at every update and unmaps it after: one HalfCheetah
  // learner spent a fifth of its time in page faults (26,000 a second, 25 updates/s against 79
  // for its twin on the main arena). Padding by a whole heap keeps heaps mapped.
  mallopt(M_TOP_PAD, 64 << 20);
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
