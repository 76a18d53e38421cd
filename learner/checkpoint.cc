#include "learner/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crc32c.h"
#include "common/flow_policy.h"
#include "common/safetensors.h"

namespace meow {
namespace {

constexpr char kPrefix[] = "ckpt-";
constexpr char kSuffix[] = ".safetensors";

constexpr char kRngTensor[] = "torch_rng";
constexpr char kAlgorithmKey[] = "meow.algorithm";

std::string CrcKey(const std::string& name) { return "meow.crc32c." + name; }

}  // namespace

CheckpointStore::CheckpointStore(std::string run_dir, int keep)
    : dir_(std::move(run_dir) + "/checkpoints"), keep_(std::max(1, keep)) {}

std::vector<std::string> CheckpointStore::List() const {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, kPrefix) && absl::EndsWith(name, kSuffix)) {
      files.push_back(entry.path().string());
    }
  }
  // Zero-padded update counts: lexicographic order is numeric order.
  std::sort(files.rbegin(), files.rend());
  return files;
}

absl::Status CheckpointStore::Save(const Algorithm& algorithm, const LearnerCounters& counters) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir_, ": ", ec.message()));
  SafetensorsFile file;
  for (const auto& [name, tensor] : algorithm.State()) {
    if (name == kRngTensor) return absl::InternalError(absl::StrCat("state tensor name ", name, " is reserved"));
    file.tensors[name] = ToRawTensor(tensor);
  }
  {
    auto* gen = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
    std::lock_guard<std::mutex> lock(gen->mutex_);
    file.tensors[kRngTensor] = ToRawTensor(at::Tensor(gen->get_state()));
  }
  file.metadata = algorithm.StateMetadata();
  for (const auto& [name, raw] : file.tensors) {
    file.metadata[CrcKey(name)] = absl::StrCat(Crc32c(raw.data.data(), raw.data.size()));
  }
  file.metadata[kAlgorithmKey] = algorithm.name();
  file.metadata["meow.env_steps"] = absl::StrCat(counters.env_steps);
  file.metadata["meow.updates"] = absl::StrCat(counters.updates);
  file.metadata["meow.skipped"] = absl::StrCat(counters.skipped);
  file.metadata["meow.version"] = absl::StrCat(counters.version);
  const std::string path = absl::StrFormat("%s/%s%012d%s", dir_, kPrefix, counters.updates, kSuffix);
  if (absl::Status s = WriteSafetensors(path, file); !s.ok()) return s;
  const std::vector<std::string> files = List();
  for (size_t i = keep_; i < files.size(); ++i) std::filesystem::remove(files[i], ec);
  return absl::OkStatus();
}

absl::StatusOr<LearnerCounters> CheckpointStore::RestoreFrom(const std::string& path, Algorithm& algorithm) {
  auto file = ReadSafetensors(path);
  if (!file.ok()) return file.status();
  // Files written before the name was recorded are MEow's.
  const auto recorded = file->metadata.find(kAlgorithmKey);
  const std::string algorithm_name = recorded == file->metadata.end() ? "meow" : recorded->second;
  if (algorithm_name != algorithm.name()) {
    return absl::FailedPreconditionError(absl::StrCat("a checkpoint of algorithm \"", algorithm_name,
                                                      "\", and this run trains \"", algorithm.name(), "\""));
  }
  if (file->tensors.find(kRngTensor) == file->tensors.end()) {
    return absl::DataLossError(absl::StrCat("no tensor \"", kRngTensor, "\""));
  }
  for (const auto& [name, raw] : file->tensors) {
    auto crc = file->metadata.find(CrcKey(name));
    uint32_t expected = 0;
    if (crc == file->metadata.end() || !absl::SimpleAtoi(crc->second, &expected)) {
      return absl::DataLossError(absl::StrCat("no checksum for \"", name, "\""));
    }
    if (Crc32c(raw.data.data(), raw.data.size()) != expected) {
      return absl::DataLossError(absl::StrCat("checksum mismatch in \"", name, "\""));
    }
  }
  LearnerCounters counters;
  for (auto [key, field] :
       {std::pair{"meow.env_steps", &counters.env_steps}, std::pair{"meow.updates", &counters.updates},
        std::pair{"meow.skipped", &counters.skipped}, std::pair{"meow.version", &counters.version}}) {
    auto it = file->metadata.find(key);
    if (it == file->metadata.end() || !absl::SimpleAtoi(it->second, field) || *field < 0) {
      return absl::DataLossError(absl::StrCat("bad or missing counter ", key));
    }
  }
  std::map<std::string, at::Tensor> state;
  for (const auto& [name, raw] : file->tensors) {
    if (name == kRngTensor) continue;
    absl::StatusOr<at::Tensor> t = FromRawFloat32(raw, name);
    if (!t.ok()) return t.status();
    state.emplace(name, *std::move(t));
  }
  if (absl::Status s = algorithm.RestoreState(state, counters.updates, counters.skipped); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("does not fit this network: ", s.message()));
  }
  const RawTensor& rng = file->tensors.at(kRngTensor);
  at::Tensor rng_state = at::empty({static_cast<int64_t>(rng.data.size())}, at::kByte);
  std::memcpy(rng_state.data_ptr(), rng.data.data(), rng.data.size());
  try {
    auto* gen = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
    std::lock_guard<std::mutex> lock(gen->mutex_);
    gen->set_state(*rng_state.unsafeGetTensorImpl());
  } catch (const c10::Error& e) {
    return absl::DataLossError("the generator state does not load");
  }
  return counters;
}

absl::StatusOr<RestoreResult> CheckpointStore::RestoreLatest(Algorithm& algorithm) {
  RestoreResult result;
  std::error_code ec;
  if (!std::filesystem::exists(dir_, ec)) return result;
  const std::vector<std::string> paths = List();
  int other_algorithm = 0;
  for (const std::string& path : paths) {
    auto counters = RestoreFrom(path, algorithm);
    if (counters.ok()) {
      result.counters = *counters;
      result.path = path;
      return result;
    }
    other_algorithm += absl::StartsWith(counters.status().message(), "a checkpoint of algorithm");
    result.problems.push_back(
        absl::StrCat("checkpoint ", path, " is unusable (", counters.status().message(), "); trying the previous one"));
  }
  // A run dir of another algorithm is not this run's to start afresh in (its metrics and policies
  // would be mixed with this one's).
  if (!paths.empty() && other_algorithm == static_cast<int>(paths.size())) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir_, " holds checkpoints of another algorithm only (", result.problems.front(),
        "): train it with that --algo, or use another --run_dir"));
  }
  return result;
}

}  // namespace meow
