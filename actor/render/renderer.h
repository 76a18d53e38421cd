// Pictures of a MuJoCo task's state, drawn offscreen by MuJoCo's own renderer on a headless EGL
// context (Mesa's software renderer on a plain machine, the GPU's EGL where there is one): no
// display, no window system.
//
// The task models carry only what the physics reads (actor/mujoco/README.md), so the renderer
// compiles a picture model of its own: the task's embedded MJCF plus the look of Gymnasium's v4
// assets (checkered floor, gradient sky, a directional light, the task's tracking camera "track",
// which follows the robot's centre of mass; the pendulums get a fixed view of the rail). For
// each frame it copies the environment's state (qpos, qvel, time) into its own data and runs
// mj_forward there, so the environment is never touched.
//
// Frames: width x height RGB bytes, top row first. On 2 cores without a GPU, 480x480 with
// multisampling off and a 1024 shadow map draws 50-70 frames/s on an idle machine and about 30
// beside two training runs (README, "Videos").
// Not thread-safe: one thread uses an instance at a time (its EGL context is made current on
// that thread for each frame). Instances share nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "actor/mujoco/mujoco_env.h"

namespace meow {

struct RenderSettings {
  int width = 480;  // pixels; both even and within [16, 4096] (H.264 in yuv420p needs even sizes)
  int height = 480;
  int multisamples = 0;    // MSAA samples per pixel; 0 keeps software rendering ~3x faster
  int shadow_size = 1024;  // shadow map texture size
  absl::Status Validate() const;
};

class MujocoRenderer {
 public:
  // For the task `env` runs. InvalidArgument for bad settings; Unavailable when no EGL display or
  // OpenGL context can be made (the message says which packages provide them).
  static absl::StatusOr<std::unique_ptr<MujocoRenderer>> Create(const MujocoEnv& env, const RenderSettings& settings);
  ~MujocoRenderer();
  MujocoRenderer(const MujocoRenderer&) = delete;
  MujocoRenderer& operator=(const MujocoRenderer&) = delete;

  // Draws `env`'s current state into `rgb` (resized to width x height x 3). InvalidArgument when
  // `env` runs another task than the one the renderer was made for.
  absl::Status Render(const MujocoEnv& env, std::vector<uint8_t>& rgb);

  int width() const { return settings_.width; }
  int height() const { return settings_.height; }

 private:
  struct Gl;  // EGL display and context, MuJoCo's scene and GPU context
  MujocoRenderer(RenderSettings settings, MjModelPtr model, MjDataPtr data);

  RenderSettings settings_;
  MjModelPtr model_;
  MjDataPtr data_;
  std::unique_ptr<Gl> gl_;
};

// The task's embedded MJCF with the look described above (exposed for tests).
absl::StatusOr<std::string> PictureModelXml(std::string_view task);

}  // namespace meow
