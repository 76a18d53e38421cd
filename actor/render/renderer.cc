#include "actor/render/renderer.h"

#include <EGL/egl.h>
#include <EGL/eglext.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/mujoco/tasks.h"
#include "actor/render/video_writer.h"
#include "common/status.h"

namespace meow {
namespace {

constexpr char kNoEgl[] =
    " (headless rendering needs EGL and an OpenGL driver: Debian's libegl1, libegl-mesa0 and "
    "libgl1-mesa-dri, installed by deploy/setup.sh)";

// Where the task's tracking camera sits relative to the robot's centre of mass (Gymnasium's v4
// assets); empty for the pendulums, which have none.
const char* TrackingCameraPos(std::string_view task) {
  if (task == "Hopper-v4" || task == "Walker2d-v4") return "0 -3 -0.25";
  if (task == "HalfCheetah-v4" || task == "Ant-v4") return "0 -3 0.3";
  if (task == "Humanoid-v4") return "0 -4 0";
  return "";
}

// Inserts `text` at `pos`; InvalidArgument naming what was looked for when pos is npos.
absl::Status InsertAt(std::string& xml, size_t pos, const std::string& text, const char* what) {
  if (pos == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("picture model: no ", what));
  xml.insert(pos, text);
  return absl::OkStatus();
}

// An EGL display: a GPU device when EGL lists one (NVIDIA), else Mesa's surfaceless platform, else
// the default display.
EGLDisplay OpenDisplay() {
  auto query_devices = reinterpret_cast<PFNEGLQUERYDEVICESEXTPROC>(eglGetProcAddress("eglQueryDevicesEXT"));
  auto platform_display =
      reinterpret_cast<PFNEGLGETPLATFORMDISPLAYEXTPROC>(eglGetProcAddress("eglGetPlatformDisplayEXT"));
  EGLint major = 0, minor = 0;
  if (query_devices != nullptr && platform_display != nullptr) {
    EGLDeviceEXT devices[8];
    EGLint n = 0;
    if (query_devices(8, devices, &n) && n > 0) {
      for (EGLint i = 0; i < n; ++i) {
        EGLDisplay display = platform_display(EGL_PLATFORM_DEVICE_EXT, devices[i], nullptr);
        if (display != EGL_NO_DISPLAY && eglInitialize(display, &major, &minor)) return display;
      }
    }
  }
  if (platform_display != nullptr) {
    EGLDisplay display = platform_display(EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, nullptr);
    if (display != EGL_NO_DISPLAY && eglInitialize(display, &major, &minor)) return display;
  }
  EGLDisplay display = eglGetDisplay(EGL_DEFAULT_DISPLAY);
  if (display != EGL_NO_DISPLAY && eglInitialize(display, &major, &minor)) return display;
  return EGL_NO_DISPLAY;
}

}  // namespace

absl::Status RenderSettings::Validate() const {
  MEOW_RETURN_IF_ERROR(CheckFrameSize("video width ", width));
  MEOW_RETURN_IF_ERROR(CheckFrameSize("video height ", height));
  if (multisamples < 0 || multisamples > 16) {
    return absl::InvalidArgumentError(absl::StrCat("multisamples ", multisamples, ": expected 0 to 16"));
  }
  if (shadow_size < 0 || shadow_size > 16384) {
    return absl::InvalidArgumentError(absl::StrCat("shadow_size ", shadow_size, ": expected 0 to 16384"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PictureModelXml(std::string_view task) {
  auto embedded = EmbeddedTaskModel(task);
  if (!embedded.ok()) return embedded.status();
  std::string xml(*embedded);
  // Sky, a checkered floor, a light; the robot's colour is set after compiling.
  const size_t root = xml.find("<mujoco");
  MEOW_RETURN_IF_ERROR(
      InsertAt(xml, root == std::string::npos ? root : xml.find('>', root) + 1,
               "\n  <visual><map znear=\"0.02\"/></visual>\n"
               "  <asset>\n"
               "    <texture type=\"skybox\" builtin=\"gradient\" rgb1=\".4 .5 .6\" rgb2=\"0 0 0\" width=\"100\" "
               "height=\"100\"/>\n"
               "    <texture name=\"meow_floor\" type=\"2d\" builtin=\"checker\" rgb1=\"0 0 0\" rgb2=\"0.8 0.8 0.8\" "
               "width=\"100\" height=\"100\"/>\n"
               "    <material name=\"meow_floor\" texture=\"meow_floor\" texrepeat=\"60 60\" reflectance=\"0.5\" "
               "shininess=\"1\" specular=\"1\"/>\n"
               "  </asset>\n",
               "<mujoco> element"));
  const size_t floor = xml.find("name=\"floor\"");
  if (floor != std::string::npos) {
    const size_t geom = xml.rfind("<geom", floor);
    MEOW_RETURN_IF_ERROR(InsertAt(xml, geom == std::string::npos ? geom : geom + 5,
                                  " material=\"meow_floor\" rgba=\"0.8 0.9 0.8 1\"", "<geom> of the floor"));
  }
  const size_t world = xml.find("<worldbody>");
  MEOW_RETURN_IF_ERROR(InsertAt(xml, world == std::string::npos ? world : world + 11,
                                "\n    <light directional=\"true\" diffuse=\"1 1 1\" specular=\".1 .1 .1\" "
                                "pos=\"0 0 1.3\" dir=\"0 0 -1.3\"/>",
                                "<worldbody>"));
  if (const char* pos = TrackingCameraPos(task); *pos != '\0') {
    const size_t body = xml.find("<body", world);
    MEOW_RETURN_IF_ERROR(InsertAt(
        xml, body == std::string::npos ? body : xml.find('>', body) + 1,
        absl::StrCat("\n      <camera name=\"track\" mode=\"trackcom\" pos=\"", pos, "\" xyaxes=\"1 0 0 0 0 1\"/>"),
        "robot <body> in <worldbody>"));
  }
  return xml;
}

struct MujocoRenderer::Gl {
  EGLDisplay display = EGL_NO_DISPLAY;
  EGLContext context = EGL_NO_CONTEXT;
  mjvScene scene;
  mjvCamera camera;
  mjvOption option;
  mjrContext context_mjr;
  bool made = false;
};

absl::StatusOr<std::unique_ptr<MujocoRenderer>> MujocoRenderer::Create(const MujocoEnv& env,
                                                                       const RenderSettings& settings) {
  if (absl::Status s = settings.Validate(); !s.ok()) return s;
  const std::string& task = env.spec().name;
  auto xml = PictureModelXml(task);
  if (!xml.ok()) return xml.status();
  auto model = LoadModelFromXml(absl::StrCat(task, "-picture.xml"), *xml);
  if (!model.ok()) return model.status();
  mjModel* m = model->get();
  const mjModel& physics = env.model();
  if (m->nq != physics.nq || m->nv != physics.nv || m->na != physics.na) {
    return absl::InternalError(absl::StrCat("picture model of ", task, " does not match the task's state sizes"));
  }
  // The robot in Gymnasium's brown, a floor 2 km wide (a fast runner leaves Gymnasium's 40 m plane
  // behind within seconds; planes are infinite to the physics anyway) with its squares kept at
  // Gymnasium's 0.67 m, the frame buffer as large as the picture.
  constexpr double kFloorHalfSize = 1000;
  for (int g = 0; g < m->ngeom; ++g) {
    if (m->geom_type[g] == mjGEOM_PLANE) {
      m->geom_size[3 * g] = kFloorHalfSize;
      m->geom_size[3 * g + 1] = kFloorHalfSize;
    }
    if (m->geom_matid[g] >= 0) continue;
    const float brown[4] = {0.8f, 0.6f, 0.4f, 1.0f};
    std::memcpy(m->geom_rgba + 4 * g, brown, sizeof(brown));
  }
  if (const int floor_material = mj_name2id(m, mjOBJ_MATERIAL, "meow_floor"); floor_material >= 0) {
    m->mat_texrepeat[2 * floor_material] = static_cast<float>(1.5 * kFloorHalfSize);
    m->mat_texrepeat[2 * floor_material + 1] = static_cast<float>(1.5 * kFloorHalfSize);
  }
  m->vis.global.offwidth = std::max(m->vis.global.offwidth, settings.width);
  m->vis.global.offheight = std::max(m->vis.global.offheight, settings.height);
  m->vis.quality.offsamples = settings.multisamples;
  m->vis.quality.shadowsize = settings.shadow_size;
  MjDataPtr data(mj_makeData(m));
  if (data == nullptr) return absl::ResourceExhaustedError("cannot allocate MuJoCo data for the picture model");

  std::unique_ptr<MujocoRenderer> renderer(new MujocoRenderer(settings, *std::move(model), std::move(data)));
  auto gl = std::make_unique<Gl>();
  gl->display = OpenDisplay();
  if (gl->display == EGL_NO_DISPLAY) return absl::UnavailableError(absl::StrCat("no EGL display", kNoEgl));
  const EGLint config_attributes[] = {EGL_RED_SIZE,
                                      8,
                                      EGL_GREEN_SIZE,
                                      8,
                                      EGL_BLUE_SIZE,
                                      8,
                                      EGL_ALPHA_SIZE,
                                      8,
                                      EGL_DEPTH_SIZE,
                                      24,
                                      EGL_STENCIL_SIZE,
                                      8,
                                      EGL_COLOR_BUFFER_TYPE,
                                      EGL_RGB_BUFFER,
                                      EGL_SURFACE_TYPE,
                                      EGL_PBUFFER_BIT,
                                      EGL_RENDERABLE_TYPE,
                                      EGL_OPENGL_BIT,
                                      EGL_NONE};
  EGLConfig config;
  EGLint configs = 0;
  if (!eglChooseConfig(gl->display, config_attributes, &config, 1, &configs) || configs < 1) {
    return absl::UnavailableError(absl::StrCat("no EGL configuration for OpenGL with a depth buffer", kNoEgl));
  }
  if (!eglBindAPI(EGL_OPENGL_API)) return absl::UnavailableError(absl::StrCat("EGL cannot bind OpenGL", kNoEgl));
  gl->context = eglCreateContext(gl->display, config, EGL_NO_CONTEXT, nullptr);
  if (gl->context == EGL_NO_CONTEXT || !eglMakeCurrent(gl->display, EGL_NO_SURFACE, EGL_NO_SURFACE, gl->context)) {
    return absl::UnavailableError(absl::StrCat("cannot make a surfaceless OpenGL context current (EGL error 0x",
                                               absl::Hex(eglGetError()), ")", kNoEgl));
  }
  mjv_defaultScene(&gl->scene);
  mjv_defaultCamera(&gl->camera);
  mjv_defaultOption(&gl->option);
  mjr_defaultContext(&gl->context_mjr);
  mjv_makeScene(m, &gl->scene, 2000);
  mjr_makeContext(m, &gl->context_mjr, mjFONTSCALE_100);
  gl->made = true;
  mjr_setBuffer(mjFB_OFFSCREEN, &gl->context_mjr);
  if (gl->context_mjr.currentBuffer != mjFB_OFFSCREEN || gl->context_mjr.offWidth < settings.width ||
      gl->context_mjr.offHeight < settings.height) {
    return absl::UnavailableError(
        absl::StrCat("MuJoCo could not make a ", settings.width, "x", settings.height, " offscreen buffer", kNoEgl));
  }
  const int track = mj_name2id(m, mjOBJ_CAMERA, "track");
  if (track >= 0) {
    gl->camera.type = mjCAMERA_FIXED;
    gl->camera.fixedcamid = track;
  } else {
    // The pendulums: the rail from the front, slightly above.
    mjv_defaultFreeCamera(m, &gl->camera);
    gl->camera.lookat[0] = 0;
    gl->camera.lookat[1] = 0;
    gl->camera.lookat[2] = 0.5;
    gl->camera.distance = 3.5;
    gl->camera.azimuth = 90;
    gl->camera.elevation = -10;
  }
  renderer->gl_ = std::move(gl);
  return renderer;
}

MujocoRenderer::MujocoRenderer(RenderSettings settings, MjModelPtr model, MjDataPtr data)
    : settings_(settings), model_(std::move(model)), data_(std::move(data)) {}

MujocoRenderer::~MujocoRenderer() {
  if (gl_ == nullptr) return;
  if (gl_->context != EGL_NO_CONTEXT) {
    eglMakeCurrent(gl_->display, EGL_NO_SURFACE, EGL_NO_SURFACE, gl_->context);
    if (gl_->made) {
      mjr_freeContext(&gl_->context_mjr);
      mjv_freeScene(&gl_->scene);
    }
    eglMakeCurrent(gl_->display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
    eglDestroyContext(gl_->display, gl_->context);
  }
  // The display stays initialised: other renderers of the process may use it.
}

absl::Status MujocoRenderer::Render(const MujocoEnv& env, std::vector<uint8_t>& rgb) {
  const mjModel& physics = env.model();
  if (physics.nq != model_->nq || physics.nv != model_->nv || physics.na != model_->na) {
    return absl::InvalidArgumentError(absl::StrCat("renderer made for another task than ", env.spec().name));
  }
  const mjData& state = env.data();
  mjData* d = data_.get();
  std::copy_n(state.qpos, model_->nq, d->qpos);
  std::copy_n(state.qvel, model_->nv, d->qvel);
  if (model_->na > 0) std::copy_n(state.act, model_->na, d->act);
  d->time = state.time;
  mj_forward(model_.get(), d);
  if (!eglMakeCurrent(gl_->display, EGL_NO_SURFACE, EGL_NO_SURFACE, gl_->context)) {
    return absl::UnavailableError(
        absl::StrCat("cannot make the renderer's context current (EGL error 0x", absl::Hex(eglGetError()), ")"));
  }
  const mjrRect viewport = {0, 0, settings_.width, settings_.height};
  mjv_updateScene(model_.get(), d, &gl_->option, nullptr, &gl_->camera, mjCAT_ALL, &gl_->scene);
  mjr_render(viewport, &gl_->scene, &gl_->context_mjr);
  const size_t row = static_cast<size_t>(settings_.width) * 3;
  std::vector<uint8_t> bottom_up(row * settings_.height);
  mjr_readPixels(bottom_up.data(), nullptr, viewport, &gl_->context_mjr);
  rgb.resize(bottom_up.size());
  for (int y = 0; y < settings_.height; ++y) {
    std::memcpy(rgb.data() + row * y, bottom_up.data() + row * (settings_.height - 1 - y), row);
  }
  return absl::OkStatus();
}

}  // namespace meow
