#include "replay/dataset.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "replay/persistence.h"
#include "replay/snapshot.h"
#include "replay/table.h"

namespace meow {
namespace {

// HDF5's serial build keeps global state: one caller at a time.
absl::Mutex& Hdf5Mutex() {
  static absl::Mutex* mu = new absl::Mutex;
  return *mu;
}

// Errors are ours to report (naming the file and key); HDF5 would print its stack to stderr.
void SilenceHdf5() {
  static const bool silenced = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)silenced;
}

// An HDF5 handle closed with its own function.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(Handle&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// h5py's numpy-bool type: an int8 enum with FALSE = 0 and TRUE = 1.
Handle BoolType() {
  Handle type(H5Tenum_create(H5T_NATIVE_INT8), H5Tclose);
  int8_t value = 0;
  H5Tenum_insert(type.get(), "FALSE", &value);
  value = 1;
  H5Tenum_insert(type.get(), "TRUE", &value);
  return type;
}

absl::Status WriteColumn(hid_t file, const std::string& path, const char* key, hid_t file_type, hid_t memory_type,
                         std::vector<hsize_t> dims, const void* data) {
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle set(H5Dcreate2(file, key, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (!space.ok() || !set.ok() || H5Dwrite(set.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    return absl::InternalError(absl::StrCat(path, ": writing ", key, " failed (disk full?)"));
  }
  return absl::OkStatus();
}

absl::Status WriteString(hid_t group, const std::string& path, const std::string& key, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle set(H5Dcreate2(group, key.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             H5Dclose);
  const char* text = value.c_str();
  if (!set.ok() || H5Dwrite(set.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0) {
    return absl::InternalError(absl::StrCat(path, ": writing metadata/", key, " failed"));
  }
  return absl::OkStatus();
}

absl::Status WriteInt(hid_t group, const std::string& path, const std::string& key, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle set(H5Dcreate2(group, key.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             H5Dclose);
  if (!set.ok() || H5Dwrite(set.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) < 0) {
    return absl::InternalError(absl::StrCat(path, ": writing metadata/", key, " failed"));
  }
  return absl::OkStatus();
}

// The shape of dataset `key`; InvalidArgument naming it when it is missing or not a dataset.
absl::StatusOr<std::vector<hsize_t>> ShapeOf(hid_t set, const std::string& path, const std::string& key) {
  Handle space(H5Dget_space(set), H5Sclose);
  const int rank = space.ok() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0) return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, ": unreadable shape"));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

std::string ShapeString(const std::vector<hsize_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) absl::StrAppend(&out, i == 0 ? "" : ", ", dims[i]);
  return out + "]";
}

// Opens `key`, checks its shape against `expected` (-1: any) and returns the handle.
absl::StatusOr<std::vector<hsize_t>> OpenColumn(hid_t file, const std::string& path, const std::string& key,
                                                std::vector<int64_t> expected, std::unique_ptr<Handle>* set) {
  if (H5Lexists(file, key.c_str(), H5P_DEFAULT) <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": missing key \"", key, "\" (the D4RL layout has ",
                                                   "observations, actions, rewards, next_observations, terminals, ",
                                                   "timeouts)"));
  }
  *set = std::make_unique<Handle>(H5Dopen2(file, key.c_str(), H5P_DEFAULT), H5Dclose);
  if (!(*set)->ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" is not a dataset"));
  absl::StatusOr<std::vector<hsize_t>> dims = ShapeOf((*set)->get(), path, key);
  if (!dims.ok()) return dims.status();
  bool fits = dims->size() == expected.size();
  for (size_t i = 0; fits && i < expected.size(); ++i) {
    fits = expected[i] < 0 || static_cast<int64_t>((*dims)[i]) == expected[i];
  }
  if (!fits) {
    std::string want = "[";
    for (size_t i = 0; i < expected.size(); ++i) {
      absl::StrAppend(&want, i == 0 ? "" : ", ", expected[i] < 0 ? std::string("*") : absl::StrCat(expected[i]));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": \"", key, "\" has shape ", ShapeString(*dims), ", expected ", want, "]"));
  }
  return dims;
}

absl::Status ReadFloats(hid_t set, const std::string& path, const std::string& key, std::vector<float>* out,
                        size_t count) {
  Handle type(H5Dget_type(set), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" is not numeric"));
  }
  out->resize(count);
  if (count > 0 && H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data()) < 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": reading \"", key, "\" failed"));
  }
  return absl::OkStatus();
}

// Flags stored as h5py bools (int8 enums), integers or floats; each must be 0 or 1.
absl::Status ReadFlags(hid_t set, const std::string& path, const std::string& key, std::vector<uint8_t>* out,
                       size_t count) {
  Handle type(H5Dget_type(set), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  std::vector<double> values(count);
  if (cls == H5T_ENUM) {
    Handle base(H5Tget_super(type.get()), H5Tclose);
    if (H5Tget_size(base.get()) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" is an enum of ", H5Tget_size(base.get()),
                                                     "-byte values; expected a bool (1 byte)"));
    }
    Handle memory(H5Tget_native_type(type.get(), H5T_DIR_ASCEND), H5Tclose);
    std::vector<int8_t> raw(count);
    if (count > 0 && H5Dread(set, memory.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": reading \"", key, "\" failed"));
    }
    for (size_t i = 0; i < count; ++i) values[i] = raw[i];
  } else if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
    if (count > 0 && H5Dread(set, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": reading \"", key, "\" failed"));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" is not a bool or number"));
  }
  out->resize(count);
  for (size_t i = 0; i < count; ++i) {
    if (values[i] != 0.0 && values[i] != 1.0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", key, "[", i, "] is ", values[i], ", expected 0 or 1"));
    }
    (*out)[i] = values[i] != 0.0 ? 1 : 0;
  }
  return absl::OkStatus();
}

// A scalar metadata value as text (strings as they are, numbers printed); nullopt for others.
std::optional<std::string> ReadScalar(hid_t group, const char* name) {
  Handle set(H5Dopen2(group, name, H5P_DEFAULT), H5Dclose);
  if (!set.ok()) return std::nullopt;
  Handle space(H5Dget_space(set.get()), H5Sclose);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) return std::nullopt;
  Handle type(H5Dget_type(set.get()), H5Tclose);
  switch (H5Tget_class(type.get())) {
    case H5T_STRING: {
      if (H5Tis_variable_str(type.get()) > 0) {
        Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
        H5Tset_size(memory.get(), H5T_VARIABLE);
        H5Tset_cset(memory.get(), H5Tget_cset(type.get()));
        char* text = nullptr;
        if (H5Dread(set.get(), memory.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0 || text == nullptr) {
          return std::nullopt;
        }
        std::string value(text);
        H5free_memory(text);
        return value;
      }
      const size_t size = H5Tget_size(type.get());
      std::string value(size, '\0');
      if (H5Dread(set.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, value.data()) < 0) return std::nullopt;
      value.resize(std::strlen(value.c_str()));
      return value;
    }
    case H5T_INTEGER: {
      int64_t value = 0;
      if (H5Dread(set.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) < 0) return std::nullopt;
      return absl::StrCat(value);
    }
    case H5T_FLOAT: {
      double value = 0;
      if (H5Dread(set.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) < 0) return std::nullopt;
      return absl::StrCat(value);
    }
    default:
      return std::nullopt;
  }
}

bool ParseInt(const std::string& text, int64_t* out) {
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0') return false;
  *out = value;
  return true;
}

// Scalars under metadata/ (D4RL's place for them); nested groups are skipped.
DatasetMetadata ReadMetadata(hid_t file) {
  DatasetMetadata metadata;
  if (H5Lexists(file, "metadata", H5P_DEFAULT) <= 0) return metadata;
  Handle group(H5Gopen2(file, "metadata", H5P_DEFAULT), H5Gclose);
  if (!group.ok()) return metadata;
  H5G_info_t info;
  if (H5Gget_info(group.get(), &info) < 0) return metadata;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char name[256];
    if (H5Lget_name_by_idx(group.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof(name), H5P_DEFAULT) < 0) {
      continue;
    }
    H5O_info_t object;
    if (H5Oget_info_by_name(group.get(), name, &object, H5P_DEFAULT) < 0 || object.type != H5O_TYPE_DATASET) continue;
    std::optional<std::string> value = ReadScalar(group.get(), name);
    if (!value.has_value()) continue;
    const std::string key = name;
    if (key == "task") {
      metadata.task = *value;
    } else if (key == "source") {
      metadata.source = *value;
    } else if (key == "policy") {
      metadata.policy = *value;
    } else if (key == "env_steps" && ParseInt(*value, &metadata.env_steps)) {
    } else if (key == "episodes" && ParseInt(*value, &metadata.episodes)) {
    } else {
      metadata.extra[key] = *value;
    }
  }
  return metadata;
}

// D4RL's raw layout has no next_observations: pair each row with the next one of its episode and
// drop rows whose successor is unknown (an episode's last row ended by timeout, and the file's
// last row unless it is terminal).
void PairConsecutiveRows(Dataset* dataset) {
  const int s = dataset->obs_dim;
  const int a = dataset->action_dim;
  Dataset paired;
  paired.obs_dim = s;
  paired.action_dim = a;
  paired.metadata = dataset->metadata;
  for (int64_t i = 0; i < dataset->rows; ++i) {
    const bool terminal = dataset->terminals[i] != 0;
    const bool last = i + 1 == dataset->rows;
    if (!terminal && (dataset->timeouts[i] != 0 || last)) {
      // Successor unknown: drop the row, and let the episode end at the row before it.
      const bool previous_kept = i > 0 && dataset->terminals[i - 1] == 0 && dataset->timeouts[i - 1] == 0;
      if (dataset->timeouts[i] != 0 && previous_kept && paired.rows > 0) paired.timeouts.back() = 1;
      continue;
    }
    // A terminal row's successor does not enter the target; the next row (or itself) stands in.
    const float* next = &dataset->observations[(last ? i : i + 1) * s];
    paired.Add(&dataset->observations[i * s], &dataset->actions[i * a], dataset->rewards[i], next, terminal,
               /*timeout=*/dataset->timeouts[i] != 0);
  }
  *dataset = std::move(paired);
}

}  // namespace

void Dataset::Add(const float* obs, const float* action, float reward, const float* next_obs, bool terminal,
                  bool timeout) {
  observations.insert(observations.end(), obs, obs + obs_dim);
  actions.insert(actions.end(), action, action + action_dim);
  rewards.push_back(reward);
  next_observations.insert(next_observations.end(), next_obs, next_obs + obs_dim);
  terminals.push_back(terminal ? 1 : 0);
  timeouts.push_back(timeout ? 1 : 0);
  ++rows;
}

absl::Status ValidateDataset(const Dataset& d) {
  if (d.obs_dim <= 0 || d.action_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset: observation and action sizes must be positive, got ", d.obs_dim, " and ", d.action_dim));
  }
  if (d.rows <= 0) return absl::InvalidArgumentError("dataset: no rows");
  const size_t rows = static_cast<size_t>(d.rows);
  struct Column {
    const char* name;
    size_t size, expected;
  };
  const Column columns[] = {
      {"observations", d.observations.size(), rows * d.obs_dim},
      {"actions", d.actions.size(), rows * d.action_dim},
      {"rewards", d.rewards.size(), rows},
      {"next_observations", d.next_observations.size(), rows * d.obs_dim},
      {"terminals", d.terminals.size(), rows},
      {"timeouts", d.timeouts.size(), rows},
  };
  for (const Column& c : columns) {
    if (c.size != c.expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset: ", c.name, " holds ", c.size, " values, expected ", c.expected));
    }
  }
  auto check_finite = [](const std::vector<float>& values, int width, const char* name) -> absl::Status {
    for (size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i])) {
        return absl::InvalidArgumentError(absl::StrCat(name, "[", i / width, "]: not finite (", values[i], ")"));
      }
    }
    return absl::OkStatus();
  };
  if (absl::Status s = check_finite(d.observations, d.obs_dim, "observations"); !s.ok()) return s;
  if (absl::Status s = check_finite(d.actions, d.action_dim, "actions"); !s.ok()) return s;
  if (absl::Status s = check_finite(d.rewards, 1, "rewards"); !s.ok()) return s;
  if (absl::Status s = check_finite(d.next_observations, d.obs_dim, "next_observations"); !s.ok()) return s;
  for (size_t i = 0; i < d.actions.size(); ++i) {
    if (d.actions[i] < -1.0f || d.actions[i] > 1.0f) {
      return absl::InvalidArgumentError(absl::StrCat("actions[", i / d.action_dim, "]: ", d.actions[i],
                                                     " is outside [-1, 1] (actions are normalised to the task's ",
                                                     "bounds)"));
    }
  }
  for (size_t i = 0; i < rows; ++i) {
    if (d.terminals[i] > 1) return absl::InvalidArgumentError(absl::StrCat("terminals[", i, "]: expected 0 or 1"));
    if (d.timeouts[i] > 1) return absl::InvalidArgumentError(absl::StrCat("timeouts[", i, "]: expected 0 or 1"));
  }
  return absl::OkStatus();
}

absl::Status WriteDataset(const std::string& path, const Dataset& d) {
  if (absl::Status s = ValidateDataset(d); !s.ok()) return s;
  absl::MutexLock lock(&Hdf5Mutex());
  SilenceHdf5();
  const std::string tmp = absl::StrCat(path, ".tmp-", ::getpid());
  {
    Handle file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!file.ok()) return absl::InternalError(absl::StrCat(path, ": cannot create ", tmp));
    const hsize_t n = static_cast<hsize_t>(d.rows);
    const hsize_t s = static_cast<hsize_t>(d.obs_dim);
    const hsize_t a = static_cast<hsize_t>(d.action_dim);
    Handle bools = BoolType();
    absl::Status status = WriteColumn(file.get(), path, "observations", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n, s},
                                      d.observations.data());
    if (status.ok()) {
      status = WriteColumn(file.get(), path, "actions", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n, a}, d.actions.data());
    }
    if (status.ok()) {
      status = WriteColumn(file.get(), path, "rewards", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n}, d.rewards.data());
    }
    if (status.ok()) {
      status = WriteColumn(file.get(), path, "next_observations", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n, s},
                           d.next_observations.data());
    }
    if (status.ok()) {
      status = WriteColumn(file.get(), path, "terminals", bools.get(), bools.get(), {n}, d.terminals.data());
    }
    if (status.ok()) {
      status = WriteColumn(file.get(), path, "timeouts", bools.get(), bools.get(), {n}, d.timeouts.data());
    }
    if (status.ok()) {
      Handle group(H5Gcreate2(file.get(), "metadata", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
      const DatasetMetadata& m = d.metadata;
      status = group.ok() ? absl::OkStatus() : absl::InternalError(absl::StrCat(path, ": cannot create metadata/"));
      if (status.ok()) status = WriteString(group.get(), path, "created_by", "meow-rl");
      if (status.ok() && !m.task.empty()) status = WriteString(group.get(), path, "task", m.task);
      if (status.ok() && !m.source.empty()) status = WriteString(group.get(), path, "source", m.source);
      if (status.ok() && !m.policy.empty()) status = WriteString(group.get(), path, "policy", m.policy);
      if (status.ok() && m.env_steps >= 0) status = WriteInt(group.get(), path, "env_steps", m.env_steps);
      if (status.ok() && m.episodes >= 0) status = WriteInt(group.get(), path, "episodes", m.episodes);
      for (const auto& [key, value] : m.extra) {
        if (status.ok() && key != "created_by") status = WriteString(group.get(), path, key, value);
      }
    }
    if (status.ok() && H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) {
      status = absl::InternalError(absl::StrCat(path, ": flushing failed"));
    }
    if (!status.ok()) {
      std::remove(tmp.c_str());
      return status;
    }
  }
  // Durable before it replaces anything: sync the file, rename, sync the directory.
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat(path, ": cannot sync ", tmp, ": ", std::strerror(errno)));
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat(path, ": rename from ", tmp, " failed: ", reason));
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  return SyncDirectory(dir.empty() ? "." : dir);
}

absl::StatusOr<Dataset> ReadDataset(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such dataset file"));
  }
  absl::MutexLock lock(&Hdf5Mutex());
  SilenceHdf5();
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not an HDF5 file"));
  }
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open it as HDF5"));

  Dataset d;
  std::unique_ptr<Handle> set;
  absl::StatusOr<std::vector<hsize_t>> dims = OpenColumn(file.get(), path, "observations", {-1, -1}, &set);
  if (!dims.ok()) return dims.status();
  d.rows = static_cast<int64_t>((*dims)[0]);
  d.obs_dim = static_cast<int>((*dims)[1]);
  if (absl::Status s = ReadFloats(set->get(), path, "observations", &d.observations, d.rows * d.obs_dim); !s.ok()) {
    return s;
  }
  if (dims = OpenColumn(file.get(), path, "actions", {d.rows, -1}, &set); !dims.ok()) return dims.status();
  d.action_dim = static_cast<int>((*dims)[1]);
  if (absl::Status s = ReadFloats(set->get(), path, "actions", &d.actions, d.rows * d.action_dim); !s.ok()) return s;
  if (dims = OpenColumn(file.get(), path, "rewards", {d.rows}, &set); !dims.ok()) return dims.status();
  if (absl::Status s = ReadFloats(set->get(), path, "rewards", &d.rewards, d.rows); !s.ok()) return s;
  if (dims = OpenColumn(file.get(), path, "terminals", {d.rows}, &set); !dims.ok()) return dims.status();
  if (absl::Status s = ReadFlags(set->get(), path, "terminals", &d.terminals, d.rows); !s.ok()) return s;
  if (dims = OpenColumn(file.get(), path, "timeouts", {d.rows}, &set); !dims.ok()) return dims.status();
  if (absl::Status s = ReadFlags(set->get(), path, "timeouts", &d.timeouts, d.rows); !s.ok()) return s;
  d.metadata = ReadMetadata(file.get());
  if (H5Lexists(file.get(), "next_observations", H5P_DEFAULT) > 0) {
    if (dims = OpenColumn(file.get(), path, "next_observations", {d.rows, d.obs_dim}, &set); !dims.ok()) {
      return dims.status();
    }
    if (absl::Status s = ReadFloats(set->get(), path, "next_observations", &d.next_observations, d.rows * d.obs_dim);
        !s.ok()) {
      return s;
    }
  } else {
    d.next_observations.assign(d.observations.size(), 0.0f);  // sized for validation; paired below
    if (absl::Status s = ValidateDataset(d); !s.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
    PairConsecutiveRows(&d);
    d.metadata.extra["next_observations"] = "paired from consecutive rows (the file had none)";
  }
  if (absl::Status s = ValidateDataset(d); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return d;
}

absl::Status CheckDatasetTask(const Dataset& dataset, const std::string& task, int obs_dim, int action_dim) {
  if (!dataset.metadata.task.empty() && dataset.metadata.task != task) {
    return absl::FailedPreconditionError(
        absl::StrCat("the dataset is of task ", dataset.metadata.task, " (its metadata/task), not ", task));
  }
  if (dataset.obs_dim != obs_dim || dataset.action_dim != action_dim) {
    return absl::FailedPreconditionError(absl::StrCat("the dataset's observations and actions have ", dataset.obs_dim,
                                                      " and ", dataset.action_dim, " dimensions; ", task, " has ",
                                                      obs_dim, " and ", action_dim));
  }
  return absl::OkStatus();
}

DatasetSummary SummarizeDataset(const Dataset& d) {
  DatasetSummary summary;
  summary.rows = d.rows;
  std::vector<double> returns;
  double episode = 0;
  int64_t since_end = 0;
  double reward_sum = 0, action_abs = 0;
  for (int64_t i = 0; i < d.rows; ++i) {
    episode += d.rewards[i];
    reward_sum += d.rewards[i];
    ++since_end;
    summary.terminals += d.terminals[i];
    summary.timeouts += d.timeouts[i];
    if (d.terminals[i] != 0 || d.timeouts[i] != 0) {
      returns.push_back(episode);
      episode = 0;
      since_end = 0;
    }
  }
  for (float x : d.actions) action_abs += std::fabs(x);
  summary.episodes = static_cast<int64_t>(returns.size());
  summary.unfinished_rows = since_end;
  if (d.rows > 0) summary.reward_mean = reward_sum / static_cast<double>(d.rows);
  if (!d.actions.empty()) summary.action_abs_mean = action_abs / static_cast<double>(d.actions.size());
  if (!returns.empty()) {
    double sum = 0, sq = 0;
    summary.return_min = *std::min_element(returns.begin(), returns.end());
    summary.return_max = *std::max_element(returns.begin(), returns.end());
    for (double r : returns) sum += r;
    summary.return_mean = sum / static_cast<double>(returns.size());
    for (double r : returns) sq += (r - summary.return_mean) * (r - summary.return_mean);
    summary.return_std = std::sqrt(sq / static_cast<double>(returns.size()));
  }
  return summary;
}

Dataset DatasetFromStore(const TransitionStore& store) {
  Dataset d;
  d.obs_dim = store.obs_dim();
  d.action_dim = store.action_dim();
  d.rows = store.size();
  const size_t n = static_cast<size_t>(d.rows);
  d.observations.resize(n * d.obs_dim);
  d.actions.resize(n * d.action_dim);
  d.rewards.resize(n);
  d.next_observations.resize(n * d.obs_dim);
  d.terminals.resize(n);
  d.timeouts.resize(n);
  std::vector<int64_t> slots(n), versions(n);
  for (size_t i = 0; i < n; ++i) slots[i] = store.SlotOfAge(static_cast<int64_t>(i));
  store.Gather(slots, d.observations.data(), d.actions.data(), d.rewards.data(), d.next_observations.data(),
               d.terminals.data(), d.timeouts.data(), versions.data());
  return d;
}

absl::StatusOr<ReplayExport> DatasetFromReplayDirectory(const std::string& directory, int obs_dim, int action_dim,
                                                        int64_t default_capacity) {
  std::error_code error;
  if (!std::filesystem::is_directory(directory, error)) {
    return absl::NotFoundError(absl::StrCat(directory, ": no such replay directory"));
  }
  // The capacity the replay ran with (its newest readable snapshot says), and an upper bound on
  // the rows its files can hold (every row takes at least its floats in a record), so that a
  // short run's export does not allocate the whole capacity.
  int64_t capacity = -1;
  int64_t newest = -1;
  int64_t file_bytes = 0;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    const bool snapshot = name.rfind("snapshot-", 0) == 0;
    const bool log = name.rfind("log-", 0) == 0;
    if ((!snapshot && !log) || entry.path().extension() != ".meow") continue;
    ++files;
    file_bytes += static_cast<int64_t>(entry.file_size(error));
    if (!snapshot) continue;
    absl::StatusOr<proto::SnapshotHeader> header = ReadSnapshotHeader(entry.path().string());
    if (header.ok() && header->generation() > newest) {
      newest = header->generation();
      capacity = header->capacity();
    }
  }
  if (files == 0) {
    return absl::NotFoundError(absl::StrCat(directory, ": no replay files (snapshot-*.meow, log-*.meow) in it"));
  }
  if (capacity <= 0) capacity = default_capacity;
  const int64_t row_bytes = static_cast<int64_t>(sizeof(float)) * (2 * obs_dim + action_dim + 1);
  TableConfig config;
  config.obs_dim = obs_dim;
  config.action_dim = action_dim;
  config.capacity = std::max<int64_t>(1, std::min(capacity, file_bytes / row_bytes + 1));
  config.max_batch_rows = std::min<int64_t>(config.capacity, config.max_batch_rows);
  absl::StatusOr<std::unique_ptr<Table>> table = Table::Create(config);
  if (!table.ok()) return table.status();
  absl::StatusOr<RecoveryReport> report = RecoverTable(directory, table->get());
  if (!report.ok()) return report.status();
  ReplayExport out;
  out.dataset = DatasetFromStore((*table)->Copy([] {}).store);
  out.snapshot_generation = report->snapshot_generation;
  out.log_batches = report->log_batches;
  out.errors = report->errors;
  out.dataset.metadata.source = "replay";
  out.dataset.metadata.policy = "the run's policies as it trained";
  out.dataset.metadata.extra["row_order"] =
      "replay's storage order: rows of several actors and environments interleave, so episodes are not contiguous";
  return out;
}

std::optional<ReferenceReturns> D4rlReferenceReturns(const std::string& task) {
  if (task == "Hopper-v4") return ReferenceReturns{-20.272305, 3234.3};
  if (task == "HalfCheetah-v4") return ReferenceReturns{-280.178953, 12135.0};
  if (task == "Walker2d-v4") return ReferenceReturns{1.629008, 4592.3};
  if (task == "Ant-v4") return ReferenceReturns{-325.6, 3879.7};
  return std::nullopt;
}

double NormalizedScore(const ReferenceReturns& reference, double episode_return) {
  return 100.0 * (episode_return - reference.random) / (reference.expert - reference.random);
}

TransitionBatchView DatasetView(const Dataset& d) {
  TransitionBatchView view;
  view.rows = d.rows;
  view.obs_dim = d.obs_dim;
  view.action_dim = d.action_dim;
  view.obs = reinterpret_cast<const char*>(d.observations.data());
  view.action = reinterpret_cast<const char*>(d.actions.data());
  view.reward = reinterpret_cast<const char*>(d.rewards.data());
  view.next_obs = reinterpret_cast<const char*>(d.next_observations.data());
  view.terminated = d.terminals.data();
  view.truncated = d.timeouts.data();
  view.policy_version = 0;
  return view;
}

}  // namespace meow
