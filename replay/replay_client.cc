#include "replay/replay_client.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"

namespace meow {

// ---------------------------------------------------------------------------------------------
// ReplayInserter

absl::Status ReplayInserterConfig::Validate() const {
  if (addresses.empty()) {
    return absl::InvalidArgumentError("inserter.addresses: expected at least one replay address");
  }
  for (const std::string& address : addresses) {
    if (address.empty()) return absl::InvalidArgumentError("inserter.addresses: empty address");
  }
  if (max_unacked_batches < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("inserter.max_unacked_batches: expected >= 1, got ", max_unacked_batches));
  }
  if (stream_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("inserter.stream_deadline: expected > 0");
  }
  if (id_conflict_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("inserter.id_conflict_grace: expected >= 0");
  }
  if (max_message_bytes < 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("inserter.max_message_bytes: expected >= 1024, got ", max_message_bytes));
  }
  return backoff.Validate();
}

absl::StatusOr<std::unique_ptr<ReplayInserter>> ReplayInserter::Create(const ReplayInserterConfig& config) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<ReplayInserter> inserter(new ReplayInserter(config));
  inserter->thread_ = std::thread([p = inserter.get()] { p->Run(); });
  return inserter;
}

ReplayInserter::ReplayInserter(const ReplayInserterConfig& config)
    : config_(config),
      address_(config.addresses[config.actor_id % config.addresses.size()]),
      channel_(CreateChannel(address_, config.max_message_bytes, config.security)),
      stub_(proto::ReplayService::NewStub(channel_)),
      incarnation_([] {
        std::random_device device;
        uint64_t v = 0;
        while (v == 0) v = (static_cast<uint64_t>(device()) << 32) ^ device();
        return v;
      }()) {}

ReplayInserter::~ReplayInserter() { Close(); }

void ReplayInserter::Close() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void ReplayInserter::NumberLocked(Entry& entry) {
  if (entry.sequence_number != 0 || next_sequence_number_ == 0) return;
  entry.sequence_number = next_sequence_number_++;
  entry.request->mutable_batch()->set_sequence_number(entry.sequence_number);
}

absl::Status ReplayInserter::Insert(proto::TransitionBatch batch, absl::Duration timeout) {
  BatchSignature signature;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::CancelledError("the inserter is closed");
    if (!fatal_.ok()) return fatal_;
    signature = signature_;
  }
  // Refuse bad batches here, where the caller can see which one it was.
  if (absl::StatusOr<TransitionBatchView> view = ValidateTransitionBatch(batch, signature); !view.ok()) {
    return view.status();
  }
  batch.set_actor_id(config_.actor_id);
  auto request = std::make_shared<proto::InsertRequest>();
  *request->mutable_batch() = std::move(batch);
  const size_t bytes = request->ByteSizeLong() + 16;  // room for the sequence number
  if (bytes > static_cast<size_t>(config_.max_message_bytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("TransitionBatch: ", bytes, " bytes exceed max_message_bytes=", config_.max_message_bytes));
  }

  absl::MutexLock lock(&mu_);
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || !fatal_.ok() || entries_.size() < static_cast<size_t>(config_.max_unacked_batches);
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&room), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat(entries_.size(), " batches stayed unacknowledged by replay at ", address_, " for ",
                     absl::FormatDuration(timeout),
                     stats_.last_error.empty() ? "" : absl::StrCat(" (last error: ", stats_.last_error, ")")));
  }
  if (closed_) return absl::CancelledError("the inserter is closed");
  if (!fatal_.ok()) return fatal_;
  entries_.push_back(Entry{0, std::move(request)});
  NumberLocked(entries_.back());
  return absl::OkStatus();
}

absl::Status ReplayInserter::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || !fatal_.ok() || entries_.empty(); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&drained), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat(entries_.size(), " batches still unacknowledged by replay at ", address_, " after ",
                     absl::FormatDuration(timeout),
                     stats_.last_error.empty() ? "" : absl::StrCat(" (last error: ", stats_.last_error, ")")));
  }
  if (!fatal_.ok()) return fatal_;
  if (!entries_.empty()) return absl::CancelledError("the inserter is closed");
  absl::Status refusal = std::move(refusal_);
  refusal_ = absl::OkStatus();
  return refusal;
}

ReplayInserter::Stats ReplayInserter::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats = stats_;
  stats.unacked = static_cast<int64_t>(entries_.size());
  stats.next_sequence_number = next_sequence_number_;
  return stats;
}

void ReplayInserter::Run() {
  Reconnect reconnect(config_.backoff, config_.actor_id * 0x9e3779b97f4a7c15ull + 1);
  absl::Time conflict_since = absl::InfiniteFuture();  // first ALREADY_EXISTS of a run of them
  for (;;) {
    int64_t connects_before;
    {
      absl::MutexLock lock(&mu_);
      connects_before = stats_.connects;
    }
    const grpc::Status status = RunStream();
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    if (!status.ok()) stats_.last_error = DescribeGrpcStatus(status);
    if (stats_.connects > connects_before) conflict_since = absl::InfiniteFuture();
    const bool id_conflict = status.error_code() == grpc::StatusCode::ALREADY_EXISTS;
    if (id_conflict && conflict_since == absl::InfiniteFuture()) conflict_since = absl::Now();
    const bool within_grace = id_conflict && absl::Now() - conflict_since < config_.id_conflict_grace;
    if (!RetryableStreamEnd(status.error_code()) && !within_grace) {
      fatal_ =
          absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                       absl::StrCat("replay at ", address_, " refused the insert stream: ", status.error_message()));
      return;
    }
    if (stats_.connects > connects_before) reconnect.Progress();
    mu_.AwaitWithTimeout(absl::Condition(&closed_), reconnect.NextDelay());
    if (closed_) return;
    if (RedialNeeded(status, *channel_)) {
      channel_ = CreateChannel(address_, config_.max_message_bytes, config_.security);
      stub_ = proto::ReplayService::NewStub(channel_);
    }
  }
}

grpc::Status ReplayInserter::RunStream() {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + config_.stream_deadline));
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return grpc::Status(grpc::StatusCode::CANCELLED, "closed");
    context_ = &context;
    stream_done_ = false;
    sent_ = 0;  // everything unacknowledged goes out again on this stream
  }
  auto forget_context = [this] {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
  };
  std::unique_ptr<grpc::ClientReaderWriter<proto::InsertRequest, proto::InsertResponse>> stream =
      stub_->Insert(&context);

  // Open the stream and learn where replay stands for this actor.
  proto::InsertRequest open;
  open.mutable_open()->set_actor_id(config_.actor_id);
  open.mutable_open()->set_incarnation(incarnation_);
  proto::InsertResponse response;
  if (!stream->Write(open) || !stream->Read(&response) || !response.has_opened()) {
    const bool protocol_error = response.acks_size() > 0;
    if (protocol_error) context.TryCancel();
    while (stream->Read(&response)) {
    }
    grpc::Status status = stream->Finish();
    forget_context();
    if (protocol_error) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "expected InsertStreamOpened first");
    }
    return status;
  }
  {
    absl::MutexLock lock(&mu_);
    const proto::InsertStreamOpened& opened = response.opened();
    signature_ = BatchSignature{opened.obs_dim(), opened.action_dim(), opened.max_batch_rows()};
    // Batches at or below replay's last stored number were stored by an earlier stream whose
    // acknowledgement got lost: they count as acknowledged.
    while (!entries_.empty() && entries_.front().sequence_number != 0 &&
           entries_.front().sequence_number <= opened.last_sequence_number()) {
      stats_.acked_sequence_number = std::max(stats_.acked_sequence_number, entries_.front().sequence_number);
      entries_.pop_front();
      ++stats_.acked;
    }
    if (next_sequence_number_ <= opened.last_sequence_number()) {
      next_sequence_number_ = opened.last_sequence_number() + 1;
    }
    for (Entry& entry : entries_) NumberLocked(entry);
    ++stats_.connects;
  }

  // Acknowledgements arrive in order on the read side, possibly several per message.
  grpc::Status reader_error;
  std::thread reader([&] {
    proto::InsertResponse ack_response;
    while (reader_error.ok() && stream->Read(&ack_response)) {
      absl::MutexLock lock(&mu_);
      for (const proto::InsertAck& ack : ack_response.acks()) {
        if (sent_ == 0 || entries_.front().sequence_number != ack.sequence_number()) {
          reader_error = grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat("replay acknowledged sequence number ",
                                                                               ack.sequence_number(), " out of order"));
          context.TryCancel();
          break;
        }
        entries_.pop_front();
        --sent_;
        ++stats_.acked;
        stats_.acked_sequence_number = std::max(stats_.acked_sequence_number, ack.sequence_number());
        if (ack.duplicate()) ++stats_.duplicates;
        if (ack.code() != 0) {
          ++stats_.rejected;
          if (refusal_.ok()) {
            refusal_ = absl::Status(static_cast<absl::StatusCode>(ack.code()),
                                    absl::StrCat("replay at ", address_, " refused batch ", ack.sequence_number(),
                                                 " of actor ", config_.actor_id, ": ", ack.error_message()));
          }
        }
      }
    }
    if (!reader_error.ok()) {
      while (stream->Read(&ack_response)) {
      }
    }
    absl::MutexLock lock(&mu_);
    stream_done_ = true;
  });

  // Send unsent batches (the unacknowledged ones first) until the stream ends or Close().
  for (;;) {
    std::shared_ptr<proto::InsertRequest> request;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closed_ || stream_done_ || (sent_ < entries_.size() && entries_[sent_].sequence_number != 0);
      };
      mu_.Await(absl::Condition(&ready));
      if (closed_ || stream_done_) break;
      request = entries_[sent_].request;
      ++sent_;
      ++stats_.sent;
    }
    if (!stream->Write(*request)) break;  // the stream is dead; the reader sees it too
  }
  {
    absl::MutexLock lock(&mu_);
    if (closed_) context.TryCancel();
  }
  reader.join();
  grpc::Status status = stream->Finish();
  forget_context();
  return reader_error.ok() ? status : reader_error;
}

// ---------------------------------------------------------------------------------------------
// One-shot calls

absl::StatusOr<proto::InfoResponse> GetReplayInfo(const std::string& address, absl::Duration timeout,
                                                  const GrpcSecurity& security) {
  auto stub = proto::ReplayService::NewStub(CreateChannel(address, 64 << 20, security));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  proto::InfoResponse response;
  grpc::Status status = stub->Info(&context, proto::InfoRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::Status SetReplayTrainingDone(const std::string& address, bool done, int64_t env_steps, absl::Duration timeout,
                                   const GrpcSecurity& security) {
  auto stub = proto::ReplayService::NewStub(CreateChannel(address, 64 << 20, security));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  proto::SetTrainingDoneRequest request;
  request.set_done(done);
  request.set_env_steps(env_steps);
  proto::SetTrainingDoneResponse response;
  grpc::Status status = stub->SetTrainingDone(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return absl::OkStatus();
}

absl::StatusOr<proto::CheckpointResponse> CheckpointReplay(const std::string& address, absl::Duration timeout,
                                                           const GrpcSecurity& security) {
  auto stub = proto::ReplayService::NewStub(CreateChannel(address, 64 << 20, security));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  proto::CheckpointResponse response;
  grpc::Status status = stub->Checkpoint(&context, proto::CheckpointRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::Status WaitForReplay(const std::vector<std::string>& addresses, int obs_dim, int action_dim,
                           absl::Duration timeout, const GrpcSecurity& security) {
  for (const std::string& address : addresses) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::StatusOr<proto::InfoResponse> info;
    while (true) {
      info = GetReplayInfo(address, absl::Seconds(1), security);
      if (info.ok() || absl::Now() >= deadline) break;
      absl::SleepFor(absl::Milliseconds(250));
    }
    if (!info.ok()) {
      return absl::UnavailableError(absl::StrCat("cannot reach replay at ", address, " within ",
                                                 absl::FormatDuration(timeout), ": ", info.status().message()));
    }
    if (info->table().obs_dim() != obs_dim || info->table().action_dim() != action_dim) {
      return absl::FailedPreconditionError(absl::StrCat("replay at ", address, " holds transitions with ",
                                                        info->table().obs_dim(), " observations and ",
                                                        info->table().action_dim(), " actions; this task has ", obs_dim,
                                                        " and ", action_dim, " (was it started with another --env?)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace meow
