// Process-wide runtime settings that every `meow` process and benchmark applies at start-up.
#pragma once

namespace meow {

// Keeps freed memory in glibc's heap instead of returning it to the kernel. LibTorch allocates
// activations of a few hundred KiB per op (a 256 x 256 float matrix is 256 KiB); with glibc's
// default thresholds each one is an mmap/munmap pair with fresh page faults, which doubled the
// time of an update on the development machine; and the heaps of other threads' arenas stay
// mapped when emptied (runtime.cc), which tripled it for a learner thread. Call once, before any
// thread starts.
void TuneAllocator();

// Sets LibTorch's intra-op threads to `threads` and OpenBLAS's own pool to one thread. OpenBLAS
// (pthread build) otherwise keeps a pool per core that spins in sched_yield beside LibTorch's
// threads; on 2 cores that cost a quarter of an update's time. LibTorch parallelises above BLAS.
void SetComputeThreads(int threads);

}  // namespace meow
