// The returns other work published for the paper's MuJoCo tasks, that `meow report` draws beside
// a run's curve. Thread-safe: constant data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace meow {

// A published return of a task to compare a run with: whose, at how many environment steps, and
// how the figure was obtained.
struct PublishedReturn {
  std::string source;  // e.g. "MEow paper", "CleanRL SAC"
  int64_t env_steps = 0;  // < 0: a level with no step (e.g. an offline dataset's return), drawn across
  double value = 0;
  std::string note;          // how it was read or measured
  bool approximate = false;  // read off a published curve rather than reported as a number
};
// The published returns of `env` (the paper's MuJoCo tasks); empty for other tasks.
const std::vector<PublishedReturn>& PublishedReturns(const std::string& env);

}  // namespace meow
