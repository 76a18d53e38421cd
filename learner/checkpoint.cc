#include "learner/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
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

absl::Status CheckpointStore::Save(const MeowUpdater& updater, const LearnerCounters& counters) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir_, ": ", ec.message()));
  SafetensorsFile file;
  file.tensors["params"] = ToRawTensor(updater.flat_params());
  file.tensors["target"] = ToRawTensor(updater.flat_target());
  file.tensors["adam_m"] = ToRawTensor(updater.adam_m());
  file.tensors["adam_v"] = ToRawTensor(updater.adam_v());
  {
    auto* gen = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
    std::lock_guard<std::mutex> lock(gen->mutex_);
    file.tensors["torch_rng"] = ToRawTensor(at::Tensor(gen->get_state()));
  }
  for (const auto& [name, raw] : file.tensors) {
    file.metadata[CrcKey(name)] = absl::StrCat(Crc32c(raw.data.data(), raw.data.size()));
  }
  const FlowPolicyConfig& pc = updater.policy_config();
  file.metadata["meow.env_steps"] = absl::StrCat(counters.env_steps);
  file.metadata["meow.updates"] = absl::StrCat(counters.updates);
  file.metadata["meow.skipped"] = absl::StrCat(counters.skipped);
  file.metadata["meow.version"] = absl::StrCat(counters.version);
  file.metadata["meow.obs_dim"] = absl::StrCat(pc.obs_dim);
  file.metadata["meow.action_dim"] = absl::StrCat(pc.action_dim);
  const std::string path = absl::StrFormat("%s/%s%012d%s", dir_, kPrefix, counters.updates, kSuffix);
  if (absl::Status s = WriteSafetensors(path, file); !s.ok()) return s;
  const std::vector<std::string> files = List();
  for (size_t i = keep_; i < files.size(); ++i) std::filesystem::remove(files[i], ec);
  return absl::OkStatus();
}

absl::StatusOr<LearnerCounters> CheckpointStore::RestoreFrom(const std::string& path, MeowUpdater& updater) {
  auto file = ReadSafetensors(path);
  if (!file.ok()) return file.status();
  for (const char* name : {"params", "target", "adam_m", "adam_v", "torch_rng"}) {
    auto it = file->tensors.find(name);
    if (it == file->tensors.end()) return absl::DataLossError(absl::StrCat("no tensor \"", name, "\""));
    auto crc = file->metadata.find(CrcKey(name));
    uint32_t expected = 0;
    if (crc == file->metadata.end() || !absl::SimpleAtoi(crc->second, &expected)) {
      return absl::DataLossError(absl::StrCat("no checksum for \"", name, "\""));
    }
    if (Crc32c(it->second.data.data(), it->second.data.size()) != expected) {
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
  auto flat = [&](const char* name) -> absl::StatusOr<at::Tensor> {
    const RawTensor& raw = file->tensors.at(name);
    if (raw.dtype != "F32" || raw.shape.size() != 1) {
      return absl::DataLossError(absl::StrCat("\"", name, "\" is not a float32 vector"));
    }
    at::Tensor t = at::empty({raw.shape[0]}, at::kFloat);
    std::memcpy(t.data_ptr(), raw.data.data(), raw.data.size());
    return t.to(updater.device());
  };
  auto params = flat("params"), target = flat("target"), m = flat("adam_m"), v = flat("adam_v");
  for (const auto* t : {&params, &target, &m, &v}) {
    if (!t->ok()) return t->status();
  }
  if (absl::Status s = updater.RestoreState(*params, *target, *m, *v, counters.updates, counters.skipped); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("does not fit this network: ", s.message()));
  }
  const RawTensor& rng = file->tensors.at("torch_rng");
  at::Tensor state = at::empty({static_cast<int64_t>(rng.data.size())}, at::kByte);
  std::memcpy(state.data_ptr(), rng.data.data(), rng.data.size());
  try {
    auto* gen = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
    std::lock_guard<std::mutex> lock(gen->mutex_);
    gen->set_state(*state.unsafeGetTensorImpl());
  } catch (const c10::Error& e) {
    return absl::DataLossError("the generator state does not load");
  }
  return counters;
}

absl::StatusOr<RestoreResult> CheckpointStore::RestoreLatest(MeowUpdater& updater) {
  RestoreResult result;
  std::error_code ec;
  if (!std::filesystem::exists(dir_, ec)) return result;
  for (const std::string& path : List()) {
    auto counters = RestoreFrom(path, updater);
    if (counters.ok()) {
      result.counters = *counters;
      result.path = path;
      return result;
    }
    result.problems.push_back(
        absl::StrCat("checkpoint ", path, " is unusable (", counters.status().message(), "); trying the previous one"));
  }
  return result;
}

}  // namespace meow
