// The `meow` binary as a user runs it: bad flags and bad input give a non-zero exit and a message
// naming the problem; a short training run writes its run directory. Label: integration.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <torch/cuda.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/file_util.h"
#include "learner/report.h"

namespace meow {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

struct CliRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CliRun Meow(const std::string& args) {
  CliRun run;
  const std::string command = absl::StrCat(MEOW_BINARY, " ", args, " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) run.output.append(buf, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

TEST(MeowCliTest, NoSubcommandOrAnUnknownOnePrintsUsage) {
  CliRun none = Meow("");
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.output, HasSubstr("usage: meow <subcommand>"));
  CliRun unknown = Meow("fly");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.output, HasSubstr("unknown subcommand \"fly\""));
  CliRun help = Meow("help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.output, HasSubstr("train"));
}

TEST(MeowCliTest, EachSubcommandsHelpListsTheFlagsItReadsAndNoOthers) {
  struct Case {
    const char* command;
    std::vector<const char*> listed;
    std::vector<const char*> not_listed;
  };
  for (const Case& c :
       {Case{"train",
             {"--env", "--sync", "--actors", "--alpha", "--tls_ca", "--algo", "--autotune", "--reward_scale",
              "--kernel_bandwidth"},
             {"--streams", "--actor_id", "--replay_dir"}},
        Case{"learner", {"--replay", "--address", "--publish_interval"}, {"--sync", "--actor_id"}},
        Case{"replay", {"--replay_dir", "--min_replay_size", "--tls_key"}, {"--actor_id", "--alpha", "--tls_ca"}},
        Case{"actor", {"--actor_id", "--learner", "--refresh_interval"}, {"--replay_dir", "--streams", "--lr"}},
        Case{"eval", {"--policy", "--episodes", "--learner"}, {"--replay_dir", "--actor_id"}},
        Case{"load", {"--streams", "--duration"}, {"--alpha", "--replay_dir"}},
        Case{"report", {"--run_dirs", "--out"}, {"--env", "--seed"}},
        Case{"dataset", {"--out", "--replay_dir", "--policy", "--action_noise", "--dataset"}, {"--alpha", "--actors"}}}) {
    CliRun help = Meow(absl::StrCat(c.command, " --help"));
    EXPECT_EQ(help.exit_code, 0) << c.command;
    EXPECT_THAT(help.output, HasSubstr(absl::StrCat("meow ", c.command, ":"))) << c.command;
    for (const char* flag : c.listed) {
      EXPECT_THAT(help.output, HasSubstr(absl::StrCat(flag, "  "))) << c.command << " --help lacks " << flag;
    }
    for (const char* flag : c.not_listed) {
      EXPECT_THAT(help.output, Not(HasSubstr(absl::StrCat(flag, "  ")))) << c.command << " --help lists " << flag;
    }
    EXPECT_THAT(help.output, Not(HasSubstr("(undefined)"))) << c.command;
  }
  // Without a subcommand, --help is the usage text.
  CliRun usage = Meow("--help");
  EXPECT_EQ(usage.exit_code, 0);
  EXPECT_THAT(usage.output, HasSubstr("usage: meow <subcommand>"));
}

TEST(MeowCliTest, BadFlagValuesNameTheFlag) {
  CliRun env = Meow("train --env=Hoper-v4");
  EXPECT_EQ(env.exit_code, 2);
  EXPECT_THAT(env.output, HasSubstr("--env=Hoper-v4"));
  EXPECT_THAT(env.output, HasSubstr("Hopper-v4"));  // the known tasks are listed
  CliRun alpha = Meow("train --alpha=-1");
  EXPECT_EQ(alpha.exit_code, 2);
  EXPECT_THAT(alpha.output, HasSubstr("alpha must be a finite value > 0, got -1"));
  CliRun threads = Meow("train --threads=0");
  EXPECT_EQ(threads.exit_code, 2);
  EXPECT_THAT(threads.output, HasSubstr("--threads=0"));
  CliRun number = Meow("train --total_env_steps=many");
  EXPECT_NE(number.exit_code, 0);
  EXPECT_THAT(number.output, HasSubstr("total_env_steps"));
  CliRun device = Meow("train --device=tpu");
  EXPECT_EQ(device.exit_code, 2);
  EXPECT_THAT(device.output, HasSubstr("--device=tpu: expected cpu, cuda or auto"));
  CliRun video = Meow("eval --policy=/nonexistent/p.safetensors --env=Hopper-v4 --video=v.mp4 --video_width=481");
  EXPECT_EQ(video.exit_code, 2);
  EXPECT_THAT(video.output, HasSubstr("--video_width=481: expected an even number of pixels"));
  // The algorithms' own flags.
  CliRun algo = Meow("train --algo=dqn");
  EXPECT_EQ(algo.exit_code, 2);
  EXPECT_THAT(algo.output, HasSubstr("--algo=dqn: expected meow, sac, sql, cnf or bc"));
  CliRun scale = Meow("train --algo=sql --env=InvertedPendulum-v4");
  EXPECT_EQ(scale.exit_code, 2);
  EXPECT_THAT(scale.output, HasSubstr("no published reward scale for this task; pass --reward_scale"));
  CliRun meow_scale = Meow("train --reward_scale=30");
  EXPECT_EQ(meow_scale.exit_code, 2);
  EXPECT_THAT(meow_scale.output, HasSubstr("--reward_scale is for --algo=sql, not meow"));
  CliRun sac_lr = Meow("train --algo=meow --q_lr=1e-3");
  EXPECT_THAT(sac_lr.output, HasSubstr("--q_lr is for --algo=sac or --algo=sql, not meow"));
  CliRun meow_lr = Meow("train --algo=sac --lr=1e-3");
  EXPECT_EQ(meow_lr.exit_code, 2);
  EXPECT_THAT(meow_lr.output, HasSubstr("--lr is for --algo=meow, not sac"));
  CliRun autotune = Meow("train --algo=sql --autotune=true");
  EXPECT_EQ(autotune.exit_code, 2);
  EXPECT_THAT(autotune.output, HasSubstr("--autotune is for --algo=sac, not sql"));
  CliRun sql_alpha = Meow("train --algo=sql --alpha=0.1");
  EXPECT_THAT(sql_alpha.output, HasSubstr("its temperature is 1 / --reward_scale"));
  CliRun bandwidth = Meow("train --algo=sql --kernel_bandwidth=median");
  EXPECT_EQ(bandwidth.exit_code, 2);
  EXPECT_THAT(bandwidth.output, HasSubstr("kernel_bandwidth \"median\": expected log_batch or log_particles"));
  CliRun particles = Meow("train --algo=sql --svgd_particles=1");
  EXPECT_THAT(particles.output, HasSubstr("svgd_particles must be in [2, 4096], got 1"));
}

TEST(MeowCliTest, ProcessFlagsAreCheckedAndUnreachableAddressesEndTheProcess) {
  CliRun actors = Meow("train --actors=0");
  EXPECT_EQ(actors.exit_code, 2);
  EXPECT_THAT(actors.output, HasSubstr("--actors=0: expected 1 to 1024"));
  CliRun learner_threads = Meow("train --learner_threads=0");
  EXPECT_EQ(learner_threads.exit_code, 2);
  EXPECT_THAT(learner_threads.output, HasSubstr("--learner_threads=0: expected 1 to 256"));
  CliRun cuda_threads = Meow("train --learner_threads=2 --device=cuda");
  EXPECT_NE(cuda_threads.exit_code, 0);
  EXPECT_THAT(cuda_threads.output,
              HasSubstr(torch::cuda::is_available() ? "on cuda the update takes 1" : "--device=cuda: this LibTorch has no CUDA"));
  CliRun per_graph = Meow("train --updates_per_graph=0");
  EXPECT_EQ(per_graph.exit_code, 2);
  EXPECT_THAT(per_graph.output, HasSubstr("--updates_per_graph=0: expected 1 to 64"));
  CliRun envs = Meow("train --envs_per_actor=-3");
  EXPECT_EQ(envs.exit_code, 2);
  EXPECT_THAT(envs.output, HasSubstr("--envs_per_actor=-3: expected 1 to 4096"));
  CliRun ratio = Meow("train --samples_per_insert=0");
  EXPECT_EQ(ratio.exit_code, 2);
  EXPECT_THAT(ratio.output, HasSubstr("--samples_per_insert=0: expected > 0"));
  // A replay that could never sample.
  CliRun min_size = Meow("replay --env=MultiGoal-v0 --buffer_size=1000 --min_replay_size=1001");
  EXPECT_EQ(min_size.exit_code, 2);
  EXPECT_THAT(min_size.output, HasSubstr("--min_replay_size=1001: expected in [1, --buffer_size=1000]"));
  CliRun zero_ratio = Meow("replay --env=MultiGoal-v0 --samples_per_insert=0");
  EXPECT_EQ(zero_ratio.exit_code, 2);
  EXPECT_THAT(zero_ratio.output, HasSubstr("--samples_per_insert=0: expected a finite value > 0"));
  CliRun batch = Meow("train --env=MultiGoal-v0 --buffer_size=1000 --learning_starts=100 --batch_size=2000");
  EXPECT_EQ(batch.exit_code, 2);
  EXPECT_THAT(batch.output, HasSubstr("batch_size (2000) must not exceed buffer_size (1000)"));
  CliRun no_replay = Meow("learner");
  EXPECT_EQ(no_replay.exit_code, 2);
  EXPECT_THAT(no_replay.output, HasSubstr("meow learner needs --replay=HOST:PORT"));
  CliRun bad_address = Meow("actor --replay=replayhost --learner=127.0.0.1:2");
  EXPECT_EQ(bad_address.exit_code, 2);
  EXPECT_THAT(bad_address.output, HasSubstr("--replay=replayhost: expected HOST:PORT"));
  CliRun no_learner = Meow("actor --replay=127.0.0.1:1");
  EXPECT_EQ(no_learner.exit_code, 2);
  EXPECT_THAT(no_learner.output, HasSubstr("meow actor needs --learner=HOST:PORT"));
  // No shared default id: two actors left at one would drop each other's batches.
  CliRun no_id = Meow("actor --replay=127.0.0.1:1 --learner=127.0.0.1:2");
  EXPECT_EQ(no_id.exit_code, 2);
  EXPECT_THAT(no_id.output, HasSubstr("meow actor needs --actor_id=N"));

  const std::string dir = ::testing::TempDir() + "/meow_cli_unreachable_" + std::to_string(getpid());
  CliRun learner = Meow("learner --replay=127.0.0.1:1 --connect_timeout=1s --run_dir=" + dir);
  EXPECT_EQ(learner.exit_code, 1);
  EXPECT_THAT(learner.output, HasSubstr("cannot reach replay at 127.0.0.1:1 within 1s"));
  CliRun actor = Meow("actor --replay=127.0.0.1:1 --learner=127.0.0.1:2 --actor_id=0 --connect_timeout=1s");
  EXPECT_EQ(actor.exit_code, 1);
  EXPECT_THAT(actor.output, HasSubstr("cannot reach replay at 127.0.0.1:1"));
  CliRun eval = Meow("eval --learner=127.0.0.1:2 --connect_timeout=1s");
  EXPECT_EQ(eval.exit_code, 1);
  EXPECT_THAT(eval.output, HasSubstr("cannot reach the learner at 127.0.0.1:2"));
  std::filesystem::remove_all(dir);
}

TEST(MeowCliTest, LocalTrainingRunsWithTlsAndAToken) {
  const std::string dir = ::testing::TempDir() + "/meow_cli_tls_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ASSERT_EQ(std::system(absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=meow ",
                                     "-addext subjectAltName=IP:127.0.0.1 -keyout ", dir, "/key.pem -out ", dir,
                                     "/cert.pem 2>/dev/null")
                            .c_str()),
            0);
  std::ofstream(dir + "/token") << "t0ken\n";
  const std::string tls = absl::StrCat(" --tls_cert=", dir, "/cert.pem --tls_key=", dir, "/key.pem");
  CliRun no_ca = Meow("train" + tls);
  EXPECT_EQ(no_ca.exit_code, 2);
  EXPECT_THAT(no_ca.output, HasSubstr("--tls_cert without --tls_ca"));
  CliRun train = Meow(absl::StrCat("train --total_env_steps=1200 --learning_starts=1000 --eval_interval=1100 ",
                                   "--eval_episodes=2 --run_dir=", dir, "/run", tls, " --tls_ca=", dir,
                                   "/cert.pem --auth_token_file=", dir, "/token"));
  EXPECT_EQ(train.exit_code, 0) << train.output;
  EXPECT_THAT(train.output, HasSubstr("done: "));
  // The evaluation reached the learner over TLS (MultiGoal's: counted by goal).
  EXPECT_THAT(train.output, HasSubstr(", last eval: "));
  std::filesystem::remove_all(dir);
}

TEST(MeowCliTest, CudaWithoutADeviceIsAClearError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  CliRun run = Meow("train --device=cuda --total_env_steps=10");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("--device=cuda: this LibTorch has no CUDA support or no CUDA device"));
}

TEST(MeowCliTest, EvalRefusesMissingAndMismatchedPolicies) {
  CliRun missing = Meow("eval");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.output, HasSubstr("--policy=FILE"));
  CliRun absent = Meow("eval --policy=/nonexistent/p.safetensors");
  EXPECT_NE(absent.exit_code, 0);
  EXPECT_THAT(absent.output, HasSubstr("/nonexistent/p.safetensors"));
}

TEST(MeowCliTest, DatasetRefusesMissingSourcesAndFiles) {
  CliRun none = Meow("dataset");
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.output, HasSubstr("expected `meow dataset export ...` or `meow dataset info ...`"));
  CliRun unknown = Meow("dataset frob");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.output, HasSubstr("got \"frob\""));
  CliRun no_out = Meow("dataset export --env=Hopper-v4 --policy=random");
  EXPECT_EQ(no_out.exit_code, 2);
  EXPECT_THAT(no_out.output, HasSubstr("--out=FILE.hdf5"));
  CliRun both = Meow("dataset export --env=Hopper-v4 --policy=random --replay_dir=/tmp --out=/tmp/x.hdf5");
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_THAT(both.output, HasSubstr("needs one source"));
  CliRun noise = Meow("dataset export --env=Hopper-v4 --policy=random --action_noise=-1 --out=/tmp/x.hdf5");
  EXPECT_EQ(noise.exit_code, 2);
  EXPECT_THAT(noise.output, HasSubstr("bad flag: --action_noise: expected 0 to 10, got -1"));
  CliRun empty = Meow("dataset export --env=Hopper-v4 --replay_dir=/nonexistent --out=/tmp/x.hdf5");
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_THAT(empty.output, HasSubstr("/nonexistent"));
  CliRun info = Meow("dataset info --dataset=/nonexistent/d.hdf5");
  EXPECT_EQ(info.exit_code, 2);
  EXPECT_THAT(info.output, HasSubstr("/nonexistent/d.hdf5: no such dataset file"));
}

TEST(MeowCliTest, OfflineTrainingFlagsAreChecked) {
  CliRun no_dataset = Meow("train --offline --env=Hopper-v4");
  EXPECT_EQ(no_dataset.exit_code, 2);
  EXPECT_THAT(no_dataset.output, HasSubstr("--offline needs --dataset=FILE"));
  CliRun online_flag = Meow("train --offline --env=Hopper-v4 --dataset=/tmp/d.hdf5 --total_env_steps=5");
  EXPECT_EQ(online_flag.exit_code, 2);
  EXPECT_THAT(online_flag.output, HasSubstr("--total_env_steps is for training online"));
  CliRun cnf_online = Meow("train --algo=cnf --env=Hopper-v4");
  EXPECT_EQ(cnf_online.exit_code, 2);
  EXPECT_THAT(cnf_online.output, HasSubstr("--algo=cnf trains offline"));
  CliRun stray = Meow("train --env=Hopper-v4 --dataset=/tmp/d.hdf5");
  EXPECT_EQ(stray.exit_code, 2);
  EXPECT_THAT(stray.output, HasSubstr("are for --offline training"));
  CliRun epochs = Meow("train --offline --env=Hopper-v4 --dataset=/tmp/d.hdf5 --flow_epochs=3");
  EXPECT_EQ(epochs.exit_code, 2);
  EXPECT_THAT(epochs.output, HasSubstr("--flow_epochs is for --algo=cnf"));
  CliRun lambda = Meow("train --offline --algo=bc --env=Hopper-v4 --dataset=/tmp/d.hdf5 --awac_lambda=1");
  EXPECT_EQ(lambda.exit_code, 2);
  EXPECT_THAT(lambda.output, HasSubstr("--awac_lambda is for --algo=cnf"));
  CliRun bad_lambda = Meow("train --offline --algo=cnf --env=Hopper-v4 --dataset=/tmp/d.hdf5 --awac_lambda=0");
  EXPECT_EQ(bad_lambda.exit_code, 2);
  EXPECT_THAT(bad_lambda.output, HasSubstr("cnf.awac_lambda must be a finite value > 0, got 0"));
  CliRun bc_tau = Meow("train --offline --algo=bc --env=Hopper-v4 --dataset=/tmp/d.hdf5 --tau=0.01");
  EXPECT_EQ(bc_tau.exit_code, 2);
  EXPECT_THAT(bc_tau.output, HasSubstr("--tau is for algorithms with critics; --algo=bc has none"));
  CliRun bad_tau = Meow("train --offline --algo=cnf --env=Hopper-v4 --dataset=/tmp/d.hdf5 --tau=0");
  EXPECT_EQ(bad_tau.exit_code, 2);
  EXPECT_THAT(bad_tau.output, HasSubstr("cnf.tau must be in (0, 1], got 0"));
  CliRun missing = Meow("train --offline --env=Hopper-v4 --dataset=/nonexistent/d.hdf5 --run_dir=/tmp/meow_cli_missing_ds");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.output, HasSubstr("/nonexistent/d.hdf5: no such dataset file"));
  EXPECT_FALSE(std::filesystem::exists("/tmp/meow_cli_missing_ds"));  // no run dir for a run that cannot start
}

TEST(MeowCliTest, AShortTrainingRunWritesItsRunDirectoryAndEvalReadsThePolicy) {
  const std::string dir = ::testing::TempDir() + "/meow_cli_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  CliRun train = Meow(absl::StrCat("train --env=MultiGoal-v0 --total_env_steps=1200 --learning_starts=1000 ",
                                   "--eval_interval=1100 --eval_episodes=2 --log_interval=400 --run_dir=", dir));
  ASSERT_EQ(train.exit_code, 0) << train.output;
  EXPECT_THAT(train.output, HasSubstr("/1200"));
  EXPECT_THAT(train.output, HasSubstr("done: "));
  for (const char* file : {"config.txt", "metrics.csv", "policy_latest.safetensors", "policy_best.safetensors",
                           "multigoal_rollouts.csv"}) {
    EXPECT_TRUE(std::filesystem::exists(absl::StrCat(dir, "/", file))) << file;
  }
  // What was learned, in the papers' measure, and where its picture is.
  EXPECT_THAT(train.output,
              HasSubstr("what was learned: 100 stochastic rollouts from the origin (at most 50 steps) reached "));
  EXPECT_THAT(train.output, HasSubstr("picture: meow report --run_dir=" + dir));
  // MultiGoal's evaluations during training are the papers' measure too: stochastic rollouts of at
  // most 50 steps from the origin, shown as goals reached on the progress line and in metrics.csv.
  EXPECT_THAT(train.output, ContainsRegex("eval [0-4] goals [0-9]+/[0-9]+/[0-9]+/[0-9]+ "));
  // Where the time goes, once a window has closed; and the learner threads local mode chose.
  EXPECT_THAT(train.output, ContainsRegex("learner busy [0-9]+%  actors waiting [0-9]+%"));
  EXPECT_THAT(ReadFile(dir + "/config.txt").value_or(""), ContainsRegex("\nlearner_threads=[1-8]\n"));
  EXPECT_THAT(train.output, ContainsRegex(", last eval: [0-4] goals reached \\([0-9/]+ of 2 rollouts\\)"));
  auto metrics = ReadRunMetrics(dir);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  int counted = 0;
  for (size_t row = 0; row < metrics->rows; ++row) {
    const double goals = metrics->values["eval_goals"][row];
    if (!std::isfinite(goals)) continue;
    ++counted;
    double at_goals = 0;
    for (const char* c : {"eval_goal_e", "eval_goal_w", "eval_goal_n", "eval_goal_s"}) at_goals += metrics->values[c][row];
    EXPECT_LE(at_goals, 2) << "two rollouts per evaluation";
    EXPECT_DOUBLE_EQ(metrics->values["eval_at_goal"][row], at_goals / 2);
    EXPECT_TRUE(std::isfinite(metrics->values["eval_return_mean"][row]));
  }
  EXPECT_GE(counted, 1) << "every evaluation row of MultiGoal-v0 counts goals";
  // `meow eval` evaluates the way training does unless told otherwise.
  CliRun eval = Meow(absl::StrCat("eval --env=MultiGoal-v0 --episodes=2 --policy=", dir, "/policy_latest.safetensors"));
  EXPECT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_THAT(eval.output, HasSubstr("2 stochastic episodes of at most 50 steps"));
  EXPECT_THAT(eval.output, HasSubstr("what was learned: 2 stochastic rollouts from the origin reached "));
  CliRun deterministic = Meow(absl::StrCat("eval --env=MultiGoal-v0 --episodes=1 --stochastic=false --max_steps=0 ",
                                           "--policy=", dir, "/policy_latest.safetensors"));
  EXPECT_EQ(deterministic.exit_code, 0) << deterministic.output;
  EXPECT_THAT(deterministic.output, HasSubstr("1 deterministic episodes: return"));
  // The policy holds 2 observations and 2 actions: Hopper's 11 and 3 do not fit.
  CliRun wrong = Meow(absl::StrCat("eval --env=Hopper-v4 --policy=", dir, "/policy_latest.safetensors"));
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_THAT(wrong.output, HasSubstr("Hopper-v4 has 11 and 3"));
  CliRun report = Meow(absl::StrCat("report --run_dir=", dir));
  EXPECT_EQ(report.exit_code, 0) << report.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/report.html"));

  // The run's replay as a dataset (from the run directory; ActorLoopTest checks that its
  // truncated rows come out as timeouts), and the policy's own episodes as another.
  CliRun exported = Meow(absl::StrCat("dataset export --env=MultiGoal-v0 --replay_dir=", dir, " --out=", dir,
                                      "/replay.hdf5"));
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_THAT(exported.output, ContainsRegex("read 1[0-9][0-9][0-9] rows from .*/replay"));
  EXPECT_THAT(exported.output, HasSubstr("source: replay"));
  EXPECT_THAT(exported.output, ContainsRegex("terminals: [0-9]+, timeouts: [0-9]+\n"));
  CliRun rollouts = Meow(absl::StrCat("dataset export --env=MultiGoal-v0 --episodes=3 --stochastic --policy=", dir,
                                      "/policy_latest.safetensors --out=", dir, "/rollouts.hdf5"));
  ASSERT_EQ(rollouts.exit_code, 0) << rollouts.output;
  EXPECT_THAT(rollouts.output, HasSubstr("episodes: 3 finished"));
  CliRun info = Meow(absl::StrCat("dataset info --env=MultiGoal-v0 --dataset=", dir, "/rollouts.hdf5"));
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr("task: MultiGoal-v0"));
  EXPECT_THAT(info.output, HasSubstr("fits MultiGoal-v0"));
  CliRun mismatch = Meow(absl::StrCat("dataset info --env=Hopper-v4 --dataset=", dir, "/rollouts.hdf5"));
  EXPECT_EQ(mismatch.exit_code, 1);
  EXPECT_THAT(mismatch.output, HasSubstr("the dataset is of task MultiGoal-v0 (its metadata/task), not Hopper-v4"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace meow
