// `meow eval`: runs a saved policy (--policy=FILE), or follows a running learner and evaluates its
// weights every --eval_interval environment steps (--learner=HOST:PORT, the evaluator process).
#include <algorithm>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/flags/flag.h"
#include "absl/flags/internal/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/env_registry.h"
#include "actor/evaluate.h"
#include "actor/multi_goal.h"
#include "actor/processes.h"
#include "actor/render/record_episode.h"
#include "actor/render/video_writer.h"
#include "common/flow_policy.h"
#include "common/presets.h"
#include "common/runtime.h"
#include "common/safetensors.h"
#include "learner/cli/cli.h"

ABSL_FLAG(std::string, policy, "", "Policy file (safetensors, from meow train or the reference code).");
ABSL_FLAG(int64_t, episodes, 10,
          "Number of episodes (resets seeded seed, seed+1, ...). Default: the task's evaluation, 10 "
          "(MultiGoal-v0: 100).");
ABSL_FLAG(bool, stochastic, false,
          "Sample actions instead of the deterministic rule. Default: the task's evaluation (MultiGoal-v0 samples).");
ABSL_FLAG(int64_t, max_steps, 0,
          "Steps per episode at most (0: the task's limit). Default: the task's evaluation (MultiGoal-v0: 50).");
ABSL_FLAG(std::string, video, "",
          "With --policy on a MuJoCo task: also write the first episode (reset seeded --seed) as an H.264 "
          "MP4 to this file, drawn offscreen at the task's real-time rate (needs ffmpeg).");
ABSL_FLAG(std::string, video_dir, "",
          "With --learner and --video_every: the folder for the evaluator's videos (step-<env steps>.mp4).");

namespace meow::cli {
namespace {

int RunEvaluator(const GrpcSecurity& security) {
  auto training = TrainConfigFromFlags();
  if (!training.ok()) return Fail(training.status());
  EvaluatorProcessConfig p;
  p.evaluator.security = security;
  EvaluatorConfig& c = p.evaluator;
  c.env = training->env;
  c.algo = training->algo;
  c.policy = training->policy;
  c.learner_address = absl::GetFlag(FLAGS_learner);
  if (absl::Status s = CheckAddress("learner", c.learner_address); !s.ok()) return Fail(s);
  c.interval = training->eval_interval;
  c.episodes = training->eval_episodes;
  if (absl::Status s = CheckRange("eval_episodes", c.episodes, 1, 1'000'000); !s.ok()) return Fail(s);
  c.deterministic = !absl::GetFlag(FLAGS_stochastic) && training->deterministic_eval;
  c.max_steps = training->eval_max_steps;
  c.video_every = absl::GetFlag(FLAGS_video_every);
  if (absl::Status s = CheckRange("video_every", c.video_every, 0, 1'000'000); !s.ok()) return Fail(s);
  if (absl::Status s = CheckVideoSizeFlags(c.video_every > 0); !s.ok()) return Fail(s);
  c.video_dir = absl::GetFlag(FLAGS_video_dir);
  if (c.video_every > 0 && c.video_dir.empty()) {
    return Fail(absl::InvalidArgumentError("meow eval --learner with --video_every needs --video_dir=FOLDER"));
  }
  c.video.width = absl::GetFlag(FLAGS_video_width);
  c.video.height = absl::GetFlag(FLAGS_video_height);
  p.connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
  p.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (!p.metrics_address.empty()) {
    if (absl::Status s = CheckAddress("metrics_address", p.metrics_address); !s.ok()) return Fail(s);
  }
  if (absl::Status s = SetThreadsFromFlag(); !s.ok()) return Fail(s);
  const std::atomic<bool>& stop = InstallStopHandlers();
  if (absl::Status s = RunEvaluatorProcess(p, stop); !s.ok()) return Fail(s);
  return 0;
}

int RunEval(const GrpcSecurity& security) {
  const std::string path = absl::GetFlag(FLAGS_policy);
  if (path.empty() && !absl::GetFlag(FLAGS_learner).empty()) return RunEvaluator(security);
  if (path.empty()) {
    return Fail(absl::InvalidArgumentError("meow eval needs --policy=FILE, or --learner=HOST:PORT to follow a run"));
  }
  // Unless told otherwise, a policy is evaluated the way training evaluates its task (the preset):
  // on MultiGoal-v0 that is the papers' measure, 100 stochastic rollouts of 50 steps from the origin.
  auto preset = GetPreset(absl::GetFlag(FLAGS_env));
  if (!preset.ok()) return Fail(absl::NotFoundError(absl::StrCat("--env=", absl::GetFlag(FLAGS_env), ": ",
                                                                 preset.status().message())));
  // (Debian's Abseil keeps CommandLineFlag::IsSpecifiedOnCommandLine private; this is the same
  // record of what absl::ParseCommandLine saw.)
  auto given = [](absl::string_view flag) { return absl::flags_internal::WasPresentOnCommandLine(flag); };
  const int64_t episodes = given("episodes") ? absl::GetFlag(FLAGS_episodes) : preset->eval_episodes;
  if (episodes < 1) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: --episodes=", episodes, ": expected >= 1")));
  }
  const int64_t max_steps = given("max_steps") ? absl::GetFlag(FLAGS_max_steps) : preset->eval_max_steps;
  if (max_steps < 0) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: --max_steps=", max_steps, ": expected >= 0")));
  }
  const bool deterministic = given("stochastic") ? !absl::GetFlag(FLAGS_stochastic) : preset->deterministic_eval;
  EpisodeVideo video;
  video.path = absl::GetFlag(FLAGS_video);
  video.render.width = absl::GetFlag(FLAGS_video_width);
  video.render.height = absl::GetFlag(FLAGS_video_height);
  if (absl::Status s = CheckVideoSizeFlags(!video.path.empty()); !s.ok()) return Fail(s);
  SetComputeThreads(std::max(1, absl::GetFlag(FLAGS_threads)));
  auto env = MakeEnv(absl::GetFlag(FLAGS_env));
  if (!env.ok()) return Fail(env.status());
  auto policy = LoadActingPolicy(path, (*env)->spec());
  if (!policy.ok()) return Fail(policy.status());
  if (!video.path.empty()) {
    // Its own action stream, so that the evaluation below is the same with or without a video.
    at::Generator video_generator = at::make_generator<at::CPUGeneratorImpl>(absl::GetFlag(FLAGS_seed) + 100);
    auto recorded =
        RecordEpisode(**policy, **env, absl::GetFlag(FLAGS_seed), deterministic, video, video_generator, max_steps);
    if (!recorded.ok()) return Fail(recorded.status());
    absl::PrintF("video: %s (%d frames, %dx%d at %g frames/s; episode return %.2f; drawn and encoded in %.1f s)\n",
                 video.path, recorded->frames, video.render.width, video.render.height, recorded->fps,
                 recorded->episode.episode_return, recorded->render_seconds);
  }
  // Actions are sampled from a stream seeded by --seed, so a stochastic evaluation repeats.
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(absl::GetFlag(FLAGS_seed) + 100);
  auto summary = Evaluate(**policy, **env, episodes, deterministic, absl::GetFlag(FLAGS_seed), generator, max_steps);
  if (!summary.ok()) return Fail(summary.status());
  for (size_t i = 0; i < summary->episodes.size(); ++i) {
    const EpisodeResult& e = summary->episodes[i];
    absl::PrintF("episode %d: return %.2f, %d steps, %s\n", i, e.episode_return, e.length,
                 e.terminated ? "terminated" : "truncated or step limit");
  }
  absl::PrintF("%s, %d %s episodes%s: return %.2f +- %.2f\n", (*env)->spec().name, episodes,
               deterministic ? "deterministic" : "stochastic",
               max_steps > 0 ? absl::StrCat(" of at most ", max_steps, " steps") : "", summary->mean, summary->std);
  if (summary->goals.has_value()) {
    // Which goal each episode ended at: a multi-modal policy reaches all four.
    const MultiGoalCounts& goals = *summary->goals;
    absl::PrintF("goals reached: (+5,0) %d, (-5,0) %d, (0,+5) %d, (0,-5) %d; unfinished %d of %d\n", goals.reached[0],
                 goals.reached[1], goals.reached[2], goals.reached[3], goals.unfinished, episodes);
    absl::PrintF("what was learned: %d %s rollouts from the origin %s\n", episodes,
                 deterministic ? "deterministic" : "stochastic", DescribeGoals(goals));
  }
  return 0;
}

}  // namespace

const Subcommand& EvalCommand() {
  static const Subcommand command{
      "eval",
      "meow eval --policy=FILE --env=TASK [--episodes=N]   or   meow eval --env=TASK --learner=HOST:PORT",
      "runs a saved policy and prints each episode's return (on MultiGoal-v0 also the goals reached); "
      "with --learner, the evaluator process of a run: evaluates the learner's weights every "
      "--eval_interval environment steps and reports to it.",
      Concat({{"policy",         "env",       "algo",          "episodes",      "stochastic",
               "max_steps",      "video",     "video_width",   "video_height",
               "seed",           "threads",   "learner",       "eval_interval",
               "video_every",    "video_dir", "eval_episodes", "deterministic_eval",
               "alpha",          "sigma_max", "sigma_min",     "connect_timeout",
               "metrics_address"},
              kClientSecurityFlags}),
      /*speaks_grpc=*/true,
      RunEval};
  return command;
}

}  // namespace meow::cli
