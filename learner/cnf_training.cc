#include "learner/cnf_training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <vector>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/flow_policy.h"

namespace meow {
namespace {

namespace fs = std::filesystem;

constexpr char kMetricsHeader[] = "epoch,steps,train_nll,valid_nll,valid_mean_mae,valid_sample_std,seconds\n";

at::Tensor Rows(const std::vector<float>& column, int64_t width, const std::vector<int64_t>& rows) {
  at::Tensor out = at::empty({static_cast<int64_t>(rows.size()), width}, at::kFloat);
  float* dst = out.data_ptr<float>();
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(dst + i * width, column.data() + rows[i] * width, sizeof(float) * width);
  }
  return out;
}

SafetensorsFile StateFile(const std::map<std::string, at::Tensor>& state, int64_t epoch, double best_nll) {
  SafetensorsFile file;
  for (const auto& [name, tensor] : state) file.tensors[name] = ToRawTensor(tensor.to(at::kFloat));
  file.metadata["meow.algorithm"] = "cnf-pretrain";
  file.metadata["meow.epoch"] = absl::StrCat(epoch);
  file.metadata["meow.best_valid_nll"] = absl::StrFormat("%.17g", best_nll);
  return file;
}

}  // namespace

absl::Status CnfFlowStageConfig::Validate() const {
  if (run_dir.empty()) return absl::InvalidArgumentError("cnf pre-training: run_dir must be set");
  if (absl::Status s = flow.Validate(); !s.ok()) return s;
  if (absl::Status s = optimiser.Validate(); !s.ok()) return s;
  if (epochs < 1) return absl::InvalidArgumentError(absl::StrCat("flow_epochs must be >= 1, got ", epochs));
  if (batch_size < 2) return absl::InvalidArgumentError(absl::StrCat("flow batch size must be >= 2, got ", batch_size));
  if (!(valid_fraction > 0 && valid_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("valid_fraction must be in (0, 1), got ", valid_fraction));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RunFlowPretraining(const Dataset& dataset, const CnfFlowStageConfig& config,
                                               const std::atomic<bool>& stop) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (dataset.obs_dim != config.flow.obs_dim || dataset.action_dim != config.flow.action_dim) {
    return absl::InvalidArgumentError(absl::StrCat("cnf pre-training: the dataset has ", dataset.obs_dim, " and ",
                                                   dataset.action_dim, " dimensions, the flow ", config.flow.obs_dim,
                                                   " and ", config.flow.action_dim));
  }
  const fs::path dir = fs::path(config.run_dir) / "flow";
  const std::string best_path = (dir / "flow_best.safetensors").string();
  const std::string latest_path = (dir / "flow_latest.safetensors").string();
  const std::string state_path = (dir / "pretrain_state.safetensors").string();
  const std::string metrics_path = (dir / "metrics.csv").string();
  const std::string complete_path = (dir / "complete").string();
  std::error_code error;
  if (fs::exists(complete_path, error) && fs::exists(best_path, error)) {
    if (config.progress) absl::PrintF("flow pre-training: done before (%s)\n", best_path);
    return best_path;
  }
  fs::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat(dir.string(), ": ", error.message()));

  // The split: one permutation of the rows, the last valid_fraction of it for validation.
  std::vector<int64_t> order(static_cast<size_t>(dataset.rows));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(config.seed);
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t valid_rows = std::max<int64_t>(1, static_cast<int64_t>(dataset.rows * config.valid_fraction));
  if (dataset.rows - valid_rows < config.batch_size) {
    return absl::FailedPreconditionError(absl::StrCat("cnf pre-training: ", dataset.rows - valid_rows,
                                                      " training rows, fewer than one batch of ", config.batch_size));
  }
  std::vector<int64_t> train(order.begin(), order.end() - valid_rows);
  const std::vector<int64_t> valid(order.end() - valid_rows, order.end());
  const int64_t s = dataset.obs_dim, a = dataset.action_dim;
  const at::Tensor valid_obs = Rows(dataset.observations, s, valid);
  const at::Tensor valid_action = Rows(dataset.actions, a, valid);
  const int64_t metric_rows = std::min<int64_t>(config.metrics_rows, valid_rows);
  const at::Tensor metric_obs = valid_obs.slice(0, 0, metric_rows);
  const at::Tensor metric_action = valid_action.slice(0, 0, metric_rows);

  torch::manual_seed(config.seed);
  CnfFlow flow(config.flow);
  {
    const at::Tensor all_obs = at::from_blob(const_cast<float*>(dataset.observations.data()), {dataset.rows, s}, at::kFloat);
    if (absl::Status st = flow->SetStateNormalizer(all_obs.mean(0), all_obs.std(0, /*unbiased=*/false)); !st.ok()) {
      return st;
    }
  }
  absl::StatusOr<std::unique_ptr<CnfFlowPretrainer>> trainer = CnfFlowPretrainer::Create(flow, config.optimiser);
  if (!trainer.ok()) return trainer.status();

  // Resume: the newest epoch's flow and optimiser, and the metrics rows up to it.
  int64_t epoch = 0;
  double best_nll = INFINITY;
  if (fs::exists(state_path, error) && fs::exists(latest_path, error)) {
    absl::StatusOr<SafetensorsFile> latest = ReadSafetensors(latest_path);
    absl::StatusOr<SafetensorsFile> state = ReadSafetensors(state_path);
    if (!latest.ok()) return latest.status();
    if (!state.ok()) return state.status();
    if (absl::Status st = ImportFlowWeights(*flow, *latest); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat(latest_path, ": ", st.message()));
    }
    std::map<std::string, at::Tensor> tensors;
    for (const auto& [name, raw] : state->tensors) {
      absl::StatusOr<at::Tensor> t = FromRawFloat32(raw, name);
      if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(state_path, ": ", t.status().message()));
      tensors.emplace(name, *std::move(t));
    }
    if (absl::Status st = (*trainer)->RestoreState(tensors); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat(state_path, ": ", st.message()));
    }
    if (!absl::SimpleAtoi(state->metadata["meow.epoch"], &epoch) ||
        !absl::SimpleAtod(state->metadata["meow.best_valid_nll"], &best_nll)) {
      return absl::DataLossError(absl::StrCat(state_path, ": bad meow.epoch or meow.best_valid_nll"));
    }
    // The permutation of later epochs continues from the resumed epoch's.
    for (int64_t e = 0; e < epoch; ++e) std::shuffle(train.begin(), train.end(), rng);
    if (config.progress) absl::PrintF("flow pre-training: resumed after epoch %d of %d\n", epoch, config.epochs);
  } else {
    if (absl::Status st = WriteFileAtomically(metrics_path, kMetricsHeader); !st.ok()) return st;
  }

  const auto start = std::chrono::steady_clock::now();
  std::string metrics = ReadFile(metrics_path).value_or(kMetricsHeader);
  // Rows of epochs after the resumed one (a crash between the metrics and the state) go.
  {
    std::vector<std::string> lines = absl::StrSplit(metrics, '\n', absl::SkipEmpty());
    std::string kept = kMetricsHeader;
    for (size_t i = 1; i < lines.size(); ++i) {
      int64_t e = 0;
      if (absl::SimpleAtoi(std::string(lines[i].substr(0, lines[i].find(','))), &e) && e <= epoch) {
        absl::StrAppend(&kept, lines[i], "\n");
      }
    }
    metrics = kept;
  }
  for (++epoch; epoch <= config.epochs; ++epoch) {
    std::shuffle(train.begin(), train.end(), rng);
    double loss_sum = 0;
    int64_t batches = 0;
    for (size_t first = 0; first + config.batch_size <= train.size(); first += config.batch_size) {
      const std::vector<int64_t> rows(train.begin() + first, train.begin() + first + config.batch_size);
      absl::StatusOr<double> loss = (*trainer)->Step(Rows(dataset.observations, s, rows), Rows(dataset.actions, a, rows));
      if (!loss.ok()) return loss.status();
      if (std::isfinite(*loss)) {
        loss_sum += *loss;
        ++batches;
      }
    }
    absl::StatusOr<CnfValidationMetrics> sampled = (*trainer)->ValidationMetrics(metric_obs, metric_action);
    if (!sampled.ok()) return sampled.status();
    const double valid_nll = (*trainer)->ValidationNll(valid_obs, valid_action);
    const double train_nll = batches > 0 ? loss_sum / batches : NAN;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    absl::StrAppendFormat(&metrics, "%d,%d,%.6g,%.6g,%.6g,%.6g,%.3f\n", epoch, (*trainer)->steps(), train_nll,
                          valid_nll, sampled->mean_mae, sampled->sample_std, seconds);
    const SafetensorsFile weights = ExportFlowWeights(*flow);
    if (std::isfinite(valid_nll) && valid_nll < best_nll) {
      best_nll = valid_nll;
      if (absl::Status st = WriteSafetensors(best_path, weights); !st.ok()) return st;
    }
    // Metrics first, then the flow and its optimiser: a crash in between repeats this epoch.
    if (absl::Status st = WriteFileAtomically(metrics_path, metrics); !st.ok()) return st;
    if (absl::Status st = WriteSafetensors(latest_path, weights); !st.ok()) return st;
    if (absl::Status st = WriteSafetensors(state_path, StateFile((*trainer)->State(), epoch, best_nll)); !st.ok()) {
      return st;
    }
    if (config.progress) {
      absl::PrintF("flow pre-training: epoch %d/%d  train nll %.3f  valid nll %.3f (best %.3f)  sample mae %.3f  %.0f s\n",
                   epoch, config.epochs, train_nll, valid_nll, best_nll, sampled->mean_mae, seconds);
      std::fflush(stdout);
    }
    if (stop.load() && epoch < config.epochs) {
      return absl::CancelledError(absl::StrCat("flow pre-training stopped after epoch ", epoch, " of ", config.epochs,
                                               "; the same command resumes it"));
    }
  }
  if (!fs::exists(best_path, error)) {
    return absl::InternalError("flow pre-training: no epoch had a finite validation NLL");
  }
  if (absl::Status st = WriteFileAtomically(complete_path, absl::StrCat("epochs=", config.epochs, "\n")); !st.ok()) {
    return st;
  }
  return best_path;
}

}  // namespace meow
