// CNF's latent controller (learner/cnf_update.h), behaviour cloning (learner/bc_update.h) and the
// flow's pre-training stage as a run does it (learner/cnf_training.h): the flow stays frozen while
// the actor and critics learn; with gamma 0 the critics regress onto the reward; the decoded
// action moves toward the dataset's where the advantage favours it; state round trips exactly;
// bad input is refused. The stage writes its curve and best flow, stops after an epoch and
// resumes, and is skipped once complete.
#include "learner/cnf_update.h"

#include <atomic>
#include <filesystem>
#include <string>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actor/acting_policy.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/bc_update.h"
#include "learner/cnf_training.h"

namespace meow {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr int64_t kObs = 3, kAction = 3;  // odd: the flow pads to 4

CnfPolicyConfig SmallPolicy() {
  CnfPolicyConfig c;
  c.flow.obs_dim = kObs;
  c.flow.action_dim = kAction;
  c.flow.layers = 2;
  c.flow.hidden = 16;
  c.actor_hidden = 32;
  return c;
}

// A flow as pre-training leaves it: ActNorms initialised from data, a state normaliser set.
SafetensorsFile PretrainedFlow(const CnfFlowConfig& config) {
  torch::manual_seed(3);
  CnfFlow flow(config);
  const at::Tensor obs = at::randn({256, config.obs_dim});
  const at::Tensor action = at::rand({256, config.action_dim}) * 1.6 - 0.8;
  EXPECT_TRUE(flow->SetStateNormalizer(obs.mean(0), obs.std(0)).ok());
  flow->InitializeActNorm(action, obs);
  return ExportFlowWeights(*flow);
}

CnfUpdateConfig SmallUpdate() {
  CnfUpdateConfig c;
  c.critic_hidden = 32;
  c.critic_layers = 3;
  c.lr = 1e-3;
  return c;
}

Batch RandomBatch(int64_t rows) {
  return Batch{at::randn({rows, kObs}), at::rand({rows, kAction}) * 1.8 - 0.9, at::randn({rows}),
               at::randn({rows, kObs}), (at::rand({rows}) < 0.2).to(at::kFloat)};
}

std::unique_ptr<CnfUpdater> NewUpdater(const CnfUpdateConfig& config = SmallUpdate()) {
  torch::manual_seed(5);
  auto updater = CnfUpdater::Create(SmallPolicy(), config, PretrainedFlow(SmallPolicy().flow), at::kCPU);
  EXPECT_TRUE(updater.ok()) << updater.status();
  return updater.ok() ? *std::move(updater) : nullptr;
}

std::map<std::string, at::Tensor> Copy(const std::map<std::string, at::Tensor>& state) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, v] : state) out[k] = v.clone();
  return out;
}

TEST(CnfUpdateTest, TheFlowStaysFrozenWhileTheActorAndCriticsLearn) {
  std::unique_ptr<CnfUpdater> u = NewUpdater();
  ASSERT_NE(u, nullptr);
  const auto before = Copy(u->State());
  torch::manual_seed(7);
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<UpdateStats> stats = u->Update(RandomBatch(64));
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_FALSE(stats->skipped);
    EXPECT_TRUE(std::isfinite(stats->loss));
  }
  EXPECT_EQ(u->updates(), 3);
  const auto after = u->State();
  int flow_tensors = 0;
  for (const auto& [name, tensor] : before) {
    const bool same = at::equal(tensor, after.at(name));
    if (name.rfind("flow.", 0) == 0) {
      ++flow_tensors;
      EXPECT_TRUE(same) << name << " changed: the flow is frozen";
    }
  }
  EXPECT_GT(flow_tensors, 10);
  for (const char* name : {"actor.net.0.weight", "qf1.net.0.weight", "qf2.net.4.bias", "qf1_target.net.0.weight"}) {
    ASSERT_TRUE(after.count(name)) << name;
    EXPECT_FALSE(at::equal(before.at(name), after.at(name))) << name << " did not change";
  }
  // The targets trail the critics by polyak averaging: closer to their start than the critics.
  const at::Tensor moved = (after.at("qf1.net.0.weight") - before.at("qf1.net.0.weight")).abs().sum();
  const at::Tensor trailed = (after.at("qf1_target.net.0.weight") - before.at("qf1_target.net.0.weight")).abs().sum();
  EXPECT_LT(trailed.item<double>(), 0.1 * moved.item<double>());
}

TEST(CnfUpdateTest, WithGammaZeroTheCriticsLearnTheReward) {
  CnfUpdateConfig config = SmallUpdate();
  config.gamma = 0;
  std::unique_ptr<CnfUpdater> u = NewUpdater(config);
  ASSERT_NE(u, nullptr);
  torch::manual_seed(11);
  Batch batch = RandomBatch(32);
  batch.reward = batch.obs.select(1, 0) * 2.0 + batch.action.select(1, 1);  // a function of (s, a)
  double first = 0, last = 0;
  for (int i = 0; i < 400; ++i) {
    absl::StatusOr<UpdateStats> stats = u->Update(batch);
    ASSERT_TRUE(stats.ok());
    if (i == 0) first = stats->loss;
    last = stats->loss;
  }
  // The loss is the critics' mse (twice) plus the actor's weighted L1; the critics' part falls to
  // near zero and their mean Q reaches the mean reward.
  EXPECT_LT(last, 0.25 * first);
  absl::StatusOr<UpdateStats> stats = u->Update(batch);
  ASSERT_TRUE(stats.ok());
  EXPECT_NEAR(stats->q_mean, batch.reward.mean().item<double>(), 0.1);
  EXPECT_NEAR(stats->target_mean, batch.reward.mean().item<double>(), 1e-5);
}

TEST(CnfUpdateTest, TheDecodedActionMovesTowardTheDatasetsAction) {
  std::unique_ptr<CnfUpdater> u = NewUpdater();
  ASSERT_NE(u, nullptr);
  // One state, one action: the weighted L1 pulls the decoded action onto it.
  const at::Tensor s = at::tensor({0.2f, -0.4f, 0.9f}).repeat({64, 1});
  const at::Tensor a = at::tensor({0.6f, -0.5f, 0.3f}).repeat({64, 1});
  Batch batch{s, a, at::zeros({64}), s, at::ones({64})};
  auto distance = [&] {
    return (u->policy()->Act(s.slice(0, 0, 1), /*deterministic=*/true) - a.slice(0, 0, 1)).abs().sum().item<double>();
  };
  const double before = distance();
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(u->Update(batch).ok());
  const double after = distance();
  EXPECT_LT(after, 0.5 * before) << "before " << before << ", after " << after;
  EXPECT_LT(after, 0.3);
}

TEST(CnfUpdateTest, StateRoundTripsAndTheNextUpdateIsTheSame) {
  std::unique_ptr<CnfUpdater> a = NewUpdater();
  ASSERT_NE(a, nullptr);
  torch::manual_seed(13);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(a->Update(RandomBatch(32)).ok());
  std::unique_ptr<CnfUpdater> b = NewUpdater();
  ASSERT_TRUE(b->RestoreState(Copy(a->State()), a->updates(), a->skipped_updates()).ok());
  const Batch batch = RandomBatch(32);
  torch::manual_seed(17);
  ASSERT_TRUE(a->Update(batch).ok());
  torch::manual_seed(17);
  ASSERT_TRUE(b->Update(batch).ok());
  const auto sa = a->State(), sb = b->State();
  for (const auto& [name, tensor] : sa) EXPECT_TRUE(at::equal(tensor, sb.at(name))) << name;
  // A missing tensor is named, and nothing changes.
  auto missing = Copy(sa);
  missing.erase("qf2.net.0.weight");
  const absl::Status refused = b->RestoreState(missing, 9, 0);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("qf2.net.0.weight"));
  EXPECT_EQ(b->updates(), a->updates());
}

// The two decodes without gradient batched as one (the default) are the reference's separate
// decodes: the same draws in the same order (B x D = 32 x 4, a multiple of the CPU normal's block of
// 16), so the same update up to the matrix products' blocking over 2B rows.
TEST(CnfUpdateTest, BatchedNoGradDecodesGiveTheSeparateDecodesUpdate) {
  CnfUpdateConfig separate_config = SmallUpdate();
  separate_config.batch_no_grad_decodes = false;
  std::unique_ptr<CnfUpdater> batched = NewUpdater(), separate = NewUpdater(separate_config);
  ASSERT_NE(batched, nullptr);
  ASSERT_NE(separate, nullptr);
  torch::manual_seed(23);
  for (int i = 0; i < 3; ++i) {
    const Batch batch = RandomBatch(32);
    torch::manual_seed(29 + i);
    absl::StatusOr<UpdateStats> a = batched->Update(batch);
    torch::manual_seed(29 + i);
    absl::StatusOr<UpdateStats> b = separate->Update(batch);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_NEAR(a->loss, b->loss, 1e-4 * std::abs(b->loss) + 1e-6);
    EXPECT_NEAR(a->v_mean, b->v_mean, 1e-4 * std::abs(b->v_mean) + 1e-6);
  }
  const auto sa = batched->State(), sb = separate->State();
  for (const auto& [name, tensor] : sa) {
    EXPECT_TRUE(at::allclose(tensor, sb.at(name), /*rtol=*/1e-4, /*atol=*/1e-5)) << name;
  }
  // Other draws give another update, so the agreement above is not the draws' doing.
  std::unique_ptr<CnfUpdater> other = NewUpdater(separate_config), other2 = NewUpdater(separate_config);
  const Batch batch = RandomBatch(32);
  torch::manual_seed(37);
  ASSERT_TRUE(other->Update(batch).ok());
  torch::manual_seed(39);
  ASSERT_TRUE(other2->Update(batch).ok());
  EXPECT_FALSE(at::allclose(other->State().at("actor.net.0.weight"), other2->State().at("actor.net.0.weight"),
                            /*rtol=*/1e-4, /*atol=*/1e-5));
}

TEST(CnfUpdateTest, BadBatchesAndUntrainedFlowsAreRefused) {
  std::unique_ptr<CnfUpdater> u = NewUpdater();
  ASSERT_NE(u, nullptr);
  Batch wrong = RandomBatch(8);
  wrong.action = at::zeros({8, 2});
  EXPECT_THAT(std::string(u->Update(wrong).status().message()), HasSubstr("action (B, 3)"));
  EXPECT_EQ(u->updates(), 0);
  // A flow whose ActNorms were never initialised was never pre-trained.
  CnfFlow fresh(SmallPolicy().flow);
  auto refused = CnfUpdater::Create(SmallPolicy(), SmallUpdate(), ExportFlowWeights(*fresh), at::kCPU);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("never initialised"));
  // The acting weights are a CNF policy the evaluator loads.
  EnvSpec spec{"Toy", kObs, kAction, 100};
  auto policy = MakeActingPolicy(u->ActingWeights(), spec, "published");
  ASSERT_TRUE(policy.ok()) << policy.status();
}

TEST(BcUpdateTest, TheDeterministicActionLearnsTheDatasetsAndActsAsSac) {
  SacPolicyConfig sizes;
  sizes.obs_dim = kObs;
  sizes.action_dim = kAction;
  sizes.hidden = 32;
  torch::manual_seed(19);
  auto bc = BcUpdater::Create(sizes, BcUpdateConfig(), at::kCPU);
  ASSERT_TRUE(bc.ok());
  const at::Tensor s = at::randn({16, kObs});
  const at::Tensor a = at::tanh(s.matmul(at::randn({kObs, kAction})));  // a function of the state
  const Batch batch{s, a, at::zeros({16}), s, at::zeros({16})};
  double first = 0, last = 0;
  for (int i = 0; i < 600; ++i) {
    absl::StatusOr<UpdateStats> stats = (*bc)->Update(batch);
    ASSERT_TRUE(stats.ok());
    if (i == 0) first = stats->loss;
    last = stats->loss;
  }
  EXPECT_LT(last, 0.05 * first);
  const SafetensorsFile weights = (*bc)->ActingWeights();
  EXPECT_EQ(weights.metadata.at("meow.trained_by"), "bc");
  auto policy = MakeActingPolicy(weights, EnvSpec{"Toy", kObs, kAction, 100}, "published");
  ASSERT_TRUE(policy.ok()) << policy.status();
  const at::Tensor acted = (*policy)->Act(s, /*deterministic=*/true, std::nullopt);
  EXPECT_LT((acted - a).abs().max().item<double>(), 0.15);
  Batch wrong = batch;
  wrong.obs = at::zeros({16, 2});
  EXPECT_FALSE((*bc)->Update(wrong).ok());
}

// A dataset of a state-dependent action: a = tanh(W s) plus a little noise.
Dataset StageDataset(int64_t rows) {
  torch::manual_seed(23);
  const at::Tensor s = at::randn({rows, kObs});
  const at::Tensor a = at::clamp(at::tanh(s.matmul(at::randn({kObs, kAction}))) + 0.05 * at::randn({rows, kAction}),
                                 -1.0, 1.0)
                           .contiguous();
  Dataset d;
  d.obs_dim = kObs;
  d.action_dim = kAction;
  for (int64_t i = 0; i < rows; ++i) {
    d.Add(s[i].data_ptr<float>(), a[i].data_ptr<float>(), 0.0f, s[i].data_ptr<float>(), false, false);
  }
  return d;
}

TEST(CnfTrainingTest, TheStageWritesItsCurveAndBestFlowStopsAfterAnEpochAndResumes) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/cnf_stage_", getpid());
  fs::remove_all(dir);
  const Dataset dataset = StageDataset(2200);
  CnfFlowStageConfig config;
  config.run_dir = dir;
  config.flow = SmallPolicy().flow;
  config.epochs = 6;
  config.batch_size = 256;
  config.metrics_rows = 50;
  config.progress = false;
  config.optimiser.validation_samples = 10;
  std::atomic<bool> stop{true};  // stops after the first epoch
  absl::StatusOr<std::string> stopped = RunFlowPretraining(dataset, config, stop);
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(std::string(stopped.status().message()), HasSubstr("after epoch 1 of 6"));
  EXPECT_FALSE(fs::exists(dir + "/flow/complete"));
  stop = false;
  absl::StatusOr<std::string> best = RunFlowPretraining(dataset, config, stop);
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(*best, dir + "/flow/flow_best.safetensors");
  EXPECT_TRUE(fs::exists(dir + "/flow/complete"));
  const std::string metrics = ReadFile(dir + "/flow/metrics.csv").value_or("");
  const std::vector<std::string> lines = absl::StrSplit(metrics, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 7u) << metrics;  // header and epochs 1-6, once each across the resume
  EXPECT_EQ(lines[0], "epoch,steps,train_nll,valid_nll,valid_mean_mae,valid_sample_std,seconds");
  auto valid_nll = [&](size_t line) {
    const std::vector<std::string> cells = absl::StrSplit(lines[line], ',');
    return std::stod(cells[3]);
  };
  for (size_t i = 1; i < lines.size(); ++i) EXPECT_EQ(lines[i].substr(0, lines[i].find(',')), std::to_string(i));
  EXPECT_LT(valid_nll(6), valid_nll(1)) << metrics;  // pre-training lowers the validation NLL
  // The best flow loads, initialised, with the dataset's state statistics.
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(*best);
  ASSERT_TRUE(file.ok());
  CnfFlow flow(config.flow);
  ASSERT_TRUE(ImportFlowWeights(*flow, *file).ok());
  EXPECT_TRUE(flow->actnorm_initialized());
  // Complete: a second call skips the stage and changes nothing.
  const std::string before = metrics;
  ASSERT_TRUE(RunFlowPretraining(dataset, config, stop).ok());
  EXPECT_EQ(ReadFile(dir + "/flow/metrics.csv").value_or(""), before);
  // A dataset of other sizes is refused.
  CnfFlowStageConfig other = config;
  other.flow.action_dim = 2;
  EXPECT_FALSE(RunFlowPretraining(dataset, other, stop).ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace meow
