// Offscreen pictures and videos (actor/render/): MuJoCo's renderer on a headless EGL context
// draws a task's state with the robot where it stands; the ffmpeg-fed writer makes an H.264 MP4
// that ffprobe decodes back with the right frame count and size; a recorded evaluation episode
// has one frame per state; and bad options, a missing or failing ffmpeg, and tasks without a
// renderer give errors that name the problem, leaving no half-written file. Real EGL, MuJoCo
// and ffmpeg (Debian's packages, installed by deploy/setup.sh).
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actor/acting_policy.h"
#include "actor/env_registry.h"
#include "actor/mujoco/tasks.h"
#include "actor/render/record_episode.h"
#include "actor/render/renderer.h"
#include "actor/render/video_writer.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class RenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/render_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

// The robot's colour (Gymnasium's brown): red over green over blue by a clear margin.
bool Robot(const std::vector<uint8_t>& rgb, size_t pixel) {
  const int r = rgb[3 * pixel], g = rgb[3 * pixel + 1], b = rgb[3 * pixel + 2];
  return r > 60 && r > g + 12 && g > b + 12;
}

// Robot pixels by region: [0] the middle third of the columns, [1] the outer two thirds, [2] the
// top fifth of the rows.
std::array<int, 3> RobotPixels(const std::vector<uint8_t>& rgb, int width, int height) {
  std::array<int, 3> n{};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      if (!Robot(rgb, static_cast<size_t>(y) * width + x)) continue;
      ++n[x >= width / 3 && x < 2 * width / 3 ? 0 : 1];
      if (y < height / 5) ++n[2];
    }
  }
  return n;
}

// key=value lines of ffprobe about the first video stream (frames decoded and counted).
std::map<std::string, std::string> Probe(const std::string& path) {
  const std::string command = absl::StrCat(
      "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
      "stream=codec_name,width,height,pix_fmt,nb_read_frames -of default=noprint_wrappers=1 '",
      path, "' 2>&1");
  std::string out;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buf[512];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
    pclose(pipe);
  }
  std::map<std::string, std::string> fields;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.size() == 2) fields[kv[0]] = kv[1];
  }
  return fields;
}

// A task reset with `seed`, its renderer for width x height frames, and the first frame.
struct Scene {
  std::unique_ptr<MujocoEnv> env;
  std::unique_ptr<MujocoRenderer> renderer;
  std::vector<uint8_t> frame;
};
absl::StatusOr<Scene> Draw(const std::string& task, uint64_t seed, int width, int height) {
  Scene scene;
  MEOW_ASSIGN_OR_RETURN(scene.env, MakeMujocoEnv(task));
  MEOW_RETURN_IF_ERROR(scene.env->Reset(seed));
  RenderSettings settings;
  settings.width = width;
  settings.height = height;
  MEOW_ASSIGN_OR_RETURN(scene.renderer, MujocoRenderer::Create(*scene.env, settings));
  MEOW_RETURN_IF_ERROR(scene.renderer->Render(*scene.env, scene.frame));
  return scene;
}

TEST_F(RenderTest, HopperIsDrawnStandingInTheMiddleUnderTheSky) {
  auto scene = Draw("Hopper-v4", 0, 240, 240);
  ASSERT_TRUE(scene.ok()) << scene.status();
  auto& env = scene->env;
  auto& renderer = scene->renderer;
  const std::vector<uint8_t>& frame = scene->frame;
  ASSERT_EQ(frame.size(), 240u * 240 * 3);
  // Not blank: many colours, and the robot in the middle columns, none of it in the sky.
  std::map<int, int> colours;
  for (size_t p = 0; p < frame.size() / 3; ++p)
    ++colours[frame[3 * p] / 16 * 256 + frame[3 * p + 1] / 16 * 16 + frame[3 * p + 2] / 16];
  EXPECT_GT(colours.size(), 20u);
  const auto robot = RobotPixels(frame, 240, 240);
  EXPECT_GT(robot[0], 500) << "robot pixels in the middle third";
  EXPECT_LT(robot[1], robot[0] / 10) << "robot pixels outside it";
  EXPECT_EQ(robot[2], 0) << "robot pixels in the top fifth (the sky)";
  // The sky (top row) is bluish grey, the floor (bottom rows) has black and light squares.
  EXPECT_GE(frame[3 * 120 + 2], frame[3 * 120]);
  int dark = 0, light = 0;
  for (int x = 0; x < 240; ++x) {
    const uint8_t v = frame[3 * (235 * 240 + x) + 1];
    dark += v < 60;
    light += v > 150;
  }
  EXPECT_GT(dark, 10);
  EXPECT_GT(light, 10);

  // The tracking camera follows the robot: moved 5 m along x and fallen flat, it is still in the
  // middle columns, now lying low (no robot pixels above the middle).
  std::vector<double> qpos(env->model().nq, 0.0), qvel(env->model().nv, 0.0);
  qpos[0] = 5;     // rootx
  qpos[1] = -0.9;  // rootz relative to the rest height: the torso near the floor
  qpos[2] = 1.5;   // rooty: tipped over
  ASSERT_TRUE(env->SetState(qpos, qvel).ok());
  std::vector<uint8_t> fallen;
  ASSERT_TRUE(renderer->Render(*env, fallen).ok());
  const auto lying = RobotPixels(fallen, 240, 240);
  EXPECT_GT(lying[0] + lying[1], 200);
  int above_middle = 0;
  for (int y = 0; y < 100; ++y) {
    for (int x = 0; x < 240; ++x) above_middle += Robot(fallen, static_cast<size_t>(y) * 240 + x);
  }
  EXPECT_LT(above_middle, 20);
  EXPECT_NE(frame, fallen);
}

TEST_F(RenderTest, EveryMujocoTaskDrawsAPicture) {
  for (const std::string& task : MujocoTaskNames()) {
    SCOPED_TRACE(task);
    auto scene = Draw(task, 1, 96, 64);
    ASSERT_TRUE(scene.ok()) << scene.status();
    const auto robot = RobotPixels(scene->frame, 96, 64);
    EXPECT_GT(robot[0] + robot[1], 30) << "the robot is in the picture";
  }
}

TEST_F(RenderTest, BadSettingsAndAnotherTaskAreRefused) {
  auto hopper = MakeMujocoEnv("Hopper-v4");
  auto ant = MakeMujocoEnv("Ant-v4");
  ASSERT_TRUE(hopper.ok() && ant.ok());
  RenderSettings odd;
  odd.width = 481;
  auto refused = MujocoRenderer::Create(**hopper, odd);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("video width 481: expected an even number"));
  RenderSettings small;
  small.width = 32;
  small.height = 32;
  auto renderer = MujocoRenderer::Create(**hopper, small);
  ASSERT_TRUE(renderer.ok()) << renderer.status();
  std::vector<uint8_t> frame;
  auto wrong = (*renderer)->Render(**ant, frame);
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RenderTest, TheWriterMakesAnMp4ThatFfprobeDecodes) {
  VideoOptions options;
  options.path = dir_ + "/gradient.mp4";
  options.width = 64;
  options.height = 48;
  options.fps = 25;
  auto writer = VideoWriter::Open(options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::vector<uint8_t> frame(64 * 48 * 3);
  for (int t = 0; t < 37; ++t) {
    for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(i * 7 + t * 13);
    ASSERT_TRUE((*writer)->Write(frame).ok());
  }
  EXPECT_FALSE(fs::exists(options.path)) << "the file appears only when complete";
  ASSERT_TRUE((*writer)->Close().ok());
  const auto probe = Probe(options.path);
  EXPECT_EQ(probe.count("codec_name") ? probe.at("codec_name") : "", "h264");
  EXPECT_EQ(probe.count("width") ? probe.at("width") : "", "64");
  EXPECT_EQ(probe.count("height") ? probe.at("height") : "", "48");
  EXPECT_EQ(probe.count("pix_fmt") ? probe.at("pix_fmt") : "", "yuv420p");
  EXPECT_EQ(probe.count("nb_read_frames") ? probe.at("nb_read_frames") : "", "37");
  // Nothing else left in the folder (no partial file, no log).
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST_F(RenderTest, BadOptionsAndAMissingOrFailingFfmpegAreClearErrors) {
  VideoOptions options;
  options.path = dir_ + "/v.mp4";
  options.width = 63;
  EXPECT_THAT(std::string(VideoWriter::Open(options).status().message()), HasSubstr("even number of pixels"));
  options.width = 64;
  options.fps = 0;
  EXPECT_THAT(std::string(VideoWriter::Open(options).status().message()), HasSubstr("fps 0"));
  options.fps = 30;
  VideoOptions nowhere = options;
  nowhere.path = dir_ + "/absent/v.mp4";
  auto missing_folder = VideoWriter::Open(nowhere);
  EXPECT_EQ(missing_folder.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing_folder.status().message()), HasSubstr("absent does not exist"));
  VideoOptions no_ffmpeg = options;
  no_ffmpeg.ffmpeg = "/nonexistent/ffmpeg";
  auto absent = VideoWriter::Open(no_ffmpeg);
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(absent.status().message()), HasSubstr("ffmpeg not found"));
  EXPECT_THAT(std::string(absent.status().message()), HasSubstr("deploy/setup.sh"));

  // A frame of the wrong size is refused; an encoder that exits at once (here `true`) is an error
  // at the latest on Close, this process survives the broken pipe, and no file is left.
  VideoOptions quitter = options;
  quitter.ffmpeg = "/bin/true";
  auto writer = VideoWriter::Open(quitter);
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_EQ((*writer)->Write(std::vector<uint8_t>(10)).code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> frame(64 * 480 * 3, 100);
  absl::Status status;
  for (int i = 0; i < 400 && status.ok(); ++i) status = (*writer)->Write(frame);  // 36 MB: more than a pipe holds
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("ffmpeg stopped taking frames"));
  EXPECT_FALSE((*writer)->Close().ok());
  VideoOptions failing = options;
  failing.ffmpeg = "/bin/false";
  auto fails = VideoWriter::Open(failing);
  ASSERT_TRUE(fails.ok());
  absl::Status closed = (*fails)->Close();
  EXPECT_THAT(std::string(closed.message()), HasSubstr("ffmpeg failed (exit status 1)"));
  EXPECT_TRUE(fs::is_empty(dir_)) << "no partial video or log left";
}

TEST_F(RenderTest, ARecordedEpisodeHasOneFramePerStateAtTheTasksRate) {
  auto env = MakeEnv("Hopper-v4");
  ASSERT_TRUE(env.ok()) << env.status();
  FlowPolicyConfig config;
  config.obs_dim = (*env)->spec().obs_dim;
  config.action_dim = (*env)->spec().action_dim;
  FlowActingPolicy policy(config);
  EpisodeVideo video;
  video.path = dir_ + "/episode.mp4";
  video.render.width = 128;
  video.render.height = 96;
  auto recorded = RecordEpisode(policy, **env, /*seed=*/3, /*deterministic=*/true, video,
                                at::make_generator<at::CPUGeneratorImpl>(1), /*max_steps=*/30);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_EQ(recorded->frames, recorded->episode.length + 1);
  EXPECT_DOUBLE_EQ(recorded->fps, 125);  // Hopper: 4 steps of 2 ms per env step
  const auto probe = Probe(video.path);
  EXPECT_EQ(probe.count("nb_read_frames") ? probe.at("nb_read_frames") : "", absl::StrCat(recorded->frames));
  EXPECT_EQ(probe.count("width") ? probe.at("width") : "", "128");

  auto goals = MakeEnv("MultiGoal-v0");
  ASSERT_TRUE(goals.ok());
  FlowPolicyConfig toy;
  toy.obs_dim = 2;
  toy.action_dim = 2;
  FlowActingPolicy toy_policy(toy);
  EpisodeVideo nope = video;
  nope.path = dir_ + "/goals.mp4";
  auto refused = RecordEpisode(toy_policy, **goals, 0, true, nope);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("MultiGoal-v0 has no renderer"));
  EXPECT_FALSE(fs::exists(nope.path));
}

}  // namespace
}  // namespace meow
