#include "common/run_dir.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace meow {
namespace {

// The kind of the run in `dir`, or "" when it holds none yet (no metrics written).
std::string ExistingKind(const std::string& dir) {
  if (auto recorded = ReadFile(dir + "/run_kind"); recorded.ok()) {
    return std::string(absl::StripAsciiWhitespace(*recorded));
  }
  std::error_code ec;
  const bool has_metrics = std::filesystem::file_size(dir + "/metrics.csv", ec) > 0 && !ec;
  if (std::filesystem::exists(dir + "/checkpoints", ec)) return kDistributedRun;
  if (auto config = ReadFile(dir + "/config.txt");
      config.ok() && (absl::StrContains(*config, "\nmode=local") || absl::StrContains(*config, "\nmode=learner"))) {
    return kDistributedRun;
  }
  return has_metrics ? kSyncRun : "";
}

}  // namespace

absl::Status ClaimRunDir(const std::string& dir, const std::string& kind, bool resumable) {
  const std::string existing = ExistingKind(dir);
  auto describe = [](const std::string& k) {
    return k == kSyncRun ? std::string("a `meow train --sync` run") : std::string("a local-mode or `meow learner` run");
  };
  if (!existing.empty() && existing != kind) {
    return absl::FailedPreconditionError(
        absl::StrCat("run dir ", dir, " holds ", describe(existing), "; ", describe(kind),
                     " would overwrite its metrics and policies: pick another --run_dir"));
  }
  if (!existing.empty() && !resumable) {
    return absl::FailedPreconditionError(
        absl::StrCat("run dir ", dir, " holds an earlier ", describe(existing),
                     ", which cannot be resumed and "
                     "would be overwritten: pick another --run_dir (or remove that one)"));
  }
  return WriteFileAtomically(dir + "/run_kind", kind + "\n");
}

}  // namespace meow
