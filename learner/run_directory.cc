#include "learner/run_directory.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "actor/acting_policy.h"
#include "common/safetensors.h"
#include "common/run_dir.h"

namespace meow {

absl::StatusOr<std::unique_ptr<RunDirectory>> RunDirectory::Open(const std::string& dir, const std::string& kind,
                                                                 bool resumable) {
  if (dir.empty()) return absl::InvalidArgumentError("run_dir must be set");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create run dir ", dir, ": ", ec.message()));
  auto lock = DirectoryLock::Acquire(dir, "run dir");
  if (!lock.ok()) return lock.status();
  if (absl::Status s = ClaimRunDir(dir, kind, resumable); !s.ok()) return s;
  auto metrics = RunMetricsWriter::Open(dir);
  if (!metrics.ok()) return metrics.status();
  return std::unique_ptr<RunDirectory>(new RunDirectory(dir, *std::move(lock), *std::move(metrics)));
}

absl::Status RunDirectory::WriteConfig(const std::vector<std::pair<std::string, std::string>>& lines) {
  std::string text;
  for (const auto& [key, value] : lines) absl::StrAppend(&text, key, "=", value, "\n");
  return WriteFileAtomically(dir_ + "/config.txt", text);
}

absl::Status RunDirectory::SaveLatest(ActingPolicy& policy) {
  return WriteSafetensors(dir_ + "/policy_latest.safetensors", policy.ExportWeights());
}

absl::Status RunDirectory::SaveBest(double score, ActingPolicy& policy) {
  if (absl::Status s = WriteSafetensors(dir_ + "/policy_best.safetensors", policy.ExportWeights()); !s.ok()) return s;
  metrics_->set_best_eval(score);
  return absl::OkStatus();
}

}  // namespace meow
