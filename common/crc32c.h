// CRC-32C (Castagnoli): the checksum of replay snapshots and logs, learner checkpoints and
// TensorBoard records. Uses the SSE4.2 crc32 instruction when the CPU has it (several GB/s), a
// table otherwise. Thread-safe: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace meow {

// CRC-32C of `n` bytes at `data`, continuing from `crc` (0 to start).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
inline uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }

// Stored checksums are masked (as in LevelDB) so that the CRC of data that itself holds CRCs does
// not degenerate.
inline uint32_t MaskCrc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline uint32_t UnmaskCrc32c(uint32_t masked) {
  const uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace meow
