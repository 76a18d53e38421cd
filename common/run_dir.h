// Which kind of training run a run directory holds, so that one kind never writes over another.
// `meow train` (local mode) and `meow learner` write the distributed layout (checkpoints/, replay/,
// metrics.csv with replay columns) and resume from it; `meow train --sync` writes its own and
// cannot resume. DIR/run_kind names the kind; directories from before the file existed are
// recognised by their contents.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace meow {

inline constexpr char kDistributedRun[] = "distributed";
inline constexpr char kSyncRun[] = "sync";

// Claims `dir` (whose DirectoryLock the caller holds) for a run of `kind` and records it.
// FailedPrecondition naming the directory when it holds a run of another kind, or, when
// `resumable` is false, an earlier run of any kind (its metrics and policies would be overwritten).
absl::Status ClaimRunDir(const std::string& dir, const std::string& kind, bool resumable);

}  // namespace meow
