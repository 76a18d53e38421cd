#include "replay/snapshot.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/tensor_codec.h"
#include "replay/record_io.h"

namespace meow {

absl::Status WriteSnapshot(const std::string& path, const TableState& state, int64_t generation, int64_t capacity,
                           int64_t chunk_rows) {
  const TransitionStore& store = state.store;
  absl::StatusOr<std::unique_ptr<AtomicFileWriter>> file = AtomicFileWriter::Create(path);
  if (!file.ok()) return file.status();
  std::string buffer;

  proto::SnapshotRecord record;
  proto::SnapshotHeader& header = *record.mutable_header();
  header.set_format_version(kStorageFormatVersion);
  header.set_generation(generation);
  header.set_obs_dim(store.obs_dim());
  header.set_action_dim(store.action_dim());
  header.set_capacity(capacity);
  header.set_rows(store.size());
  for (const auto& [actor_id, last] : state.last_sequence_numbers) {
    proto::ActorSequence& actor = *header.add_actors();
    actor.set_actor_id(actor_id);
    actor.set_last_sequence_number(last);
  }
  header.set_inserted_batches(state.counters.inserted_batches);
  header.set_inserted_transitions(state.counters.inserted_transitions);
  header.set_sampled_batches(state.counters.sampled_batches);
  header.set_sampled_transitions(state.counters.sampled_transitions);
  header.set_created_unix_micros(absl::ToUnixMicros(absl::Now()));
  AppendRecord(record, &buffer);

  // Chunks, oldest rows first; each is gathered straight into its message's tensors.
  const int obs_dim = store.obs_dim();
  const int action_dim = store.action_dim();
  std::vector<int64_t> slots;
  int64_t chunks = 0;
  for (int64_t first = 0; first < store.size(); first += chunk_rows) {
    const int64_t n = std::min(chunk_rows, store.size() - first);
    slots.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) slots[i] = store.SlotOfAge(first + i);
    record.Clear();
    proto::SnapshotChunk& chunk = *record.mutable_chunk();
    chunk.set_first_row(first);
    proto::TransitionBatch& rows = *chunk.mutable_rows();
    auto column = [n](proto::Tensor* tensor, proto::DType dtype, int64_t cols) {
      tensor->set_dtype(dtype);
      tensor->add_shape(n);
      if (cols > 0) tensor->add_shape(cols);
      std::string* data = tensor->mutable_data();
      data->resize(static_cast<size_t>(n * std::max<int64_t>(cols, 1) * DTypeSize(dtype)));
      return data->data();
    };
    char* obs = column(rows.mutable_obs(), proto::DTYPE_FLOAT32, obs_dim);
    char* action = column(rows.mutable_action(), proto::DTYPE_FLOAT32, action_dim);
    char* reward = column(rows.mutable_reward(), proto::DTYPE_FLOAT32, 0);
    char* next_obs = column(rows.mutable_next_obs(), proto::DTYPE_FLOAT32, obs_dim);
    auto* terminated = reinterpret_cast<uint8_t*>(column(rows.mutable_terminated(), proto::DTYPE_BOOL, 0));
    auto* truncated = reinterpret_cast<uint8_t*>(column(rows.mutable_truncated(), proto::DTYPE_BOOL, 0));
    char* versions = column(chunk.mutable_policy_version(), proto::DTYPE_INT64, 0);
    store.Gather(slots, obs, action, reward, next_obs, terminated, truncated, versions);
    AppendRecord(record, &buffer);
    ++chunks;
    if (buffer.size() >= (4u << 20)) {
      if (absl::Status s = (*file)->Append(buffer); !s.ok()) return s;
      buffer.clear();
    }
  }
  record.Clear();
  record.mutable_footer()->set_rows(store.size());
  record.mutable_footer()->set_chunks(chunks);
  AppendRecord(record, &buffer);
  if (absl::Status s = (*file)->Append(buffer); !s.ok()) return s;
  return (*file)->Commit();
}

absl::StatusOr<proto::SnapshotHeader> ReadSnapshotHeader(const std::string& path) {
  absl::StatusOr<std::unique_ptr<RecordReader>> reader = RecordReader::Open(path);
  if (!reader.ok()) return reader.status();
  absl::StatusOr<std::optional<std::string>> payload = (*reader)->Next();
  if (!payload.ok()) return payload.status();
  proto::SnapshotRecord record;
  if (!payload->has_value() || !record.ParseFromString(**payload) || !record.has_header()) {
    return absl::DataLossError(absl::StrCat(path, ": first record is not a snapshot header"));
  }
  return record.header();
}

absl::StatusOr<LoadedSnapshot> ReadSnapshot(const std::string& path) {
  absl::StatusOr<std::unique_ptr<RecordReader>> reader = RecordReader::Open(path);
  if (!reader.ok()) return reader.status();
  proto::SnapshotRecord record;
  auto next = [&]() -> absl::Status {
    absl::StatusOr<std::optional<std::string>> payload = (*reader)->Next();
    if (!payload.ok()) return payload.status();
    if (!payload->has_value()) {
      return absl::DataLossError(absl::StrCat(path, ": truncated at offset ", (*reader)->offset(), " (no footer)"));
    }
    if (!record.ParseFromString(**payload)) {
      return absl::DataLossError(absl::StrCat(path, ": unparsable record at offset ", (*reader)->offset()));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = next(); !s.ok()) return s;
  if (!record.has_header()) {
    return absl::DataLossError(absl::StrCat(path, ": first record is not a snapshot header"));
  }
  LoadedSnapshot loaded;
  loaded.header = record.header();
  const proto::SnapshotHeader& header = loaded.header;
  if (header.format_version() != kStorageFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": format_version ", header.format_version(), ", expected ", kStorageFormatVersion));
  }
  const BatchSignature signature{header.obs_dim(), header.action_dim()};
  for (;;) {
    if (absl::Status s = next(); !s.ok()) {
      loaded.error = s;
      return loaded;
    }
    if (record.has_footer()) {
      if (record.footer().rows() != loaded.rows || loaded.rows != header.rows()) {
        loaded.error =
            absl::DataLossError(absl::StrCat(path, ": footer says ", record.footer().rows(), " rows, header ",
                                             header.rows(), ", chunks hold ", loaded.rows));
        return loaded;
      }
      loaded.complete = true;
      return loaded;
    }
    if (!record.has_chunk()) {
      loaded.error = absl::DataLossError(absl::StrCat(path, ": unexpected record at offset ", (*reader)->offset()));
      return loaded;
    }
    // A chunk passes the same checks as a batch from the network.
    const proto::SnapshotChunk& chunk = record.chunk();
    absl::StatusOr<TransitionBatchView> view = ValidateTransitionBatch(chunk.rows(), signature);
    absl::Status status = view.status();
    if (status.ok()) {
      absl::StatusOr<TensorView> versions = DecodeTensor(chunk.policy_version(), "SnapshotChunk.policy_version");
      status = versions.ok() ? ExpectTensor(*versions, "SnapshotChunk.policy_version", proto::DTYPE_INT64, {view->rows})
                             : versions.status();
    }
    if (status.ok() && chunk.first_row() != loaded.rows) {
      status = absl::DataLossError(absl::StrCat("chunk starts at row ", chunk.first_row(), ", expected ", loaded.rows));
    }
    if (!status.ok()) {
      loaded.error = absl::DataLossError(
          absl::StrCat(path, ": bad chunk at offset ", (*reader)->offset(), ": ", status.message()));
      return loaded;
    }
    loaded.rows += view->rows;
    loaded.chunks.push_back(std::move(*record.mutable_chunk()));
  }
}

}  // namespace meow
