#include "replay/replay_client.h"

#include "common/grpc_security.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"

namespace meow {
namespace {

// Stream errors worth reconnecting for: the server is away or restarting, a deadline passed, the
// stream was superseded or ended without an error.
bool Retryable(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
      return true;
    default:
      return false;
  }
}

std::string Describe(const grpc::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())), ": ",
                      status.error_message());
}

}  // namespace

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
      channel_(CreateChannel(address_, config.max_message_bytes)),
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
    if (!status.ok()) stats_.last_error = Describe(status);
    if (stats_.connects > connects_before) conflict_since = absl::InfiniteFuture();
    const bool id_conflict = status.error_code() == grpc::StatusCode::ALREADY_EXISTS;
    if (id_conflict && conflict_since == absl::InfiniteFuture()) conflict_since = absl::Now();
    const bool within_grace = id_conflict && absl::Now() - conflict_since < config_.id_conflict_grace;
    if (!Retryable(status.error_code()) && !within_grace) {
      fatal_ =
          absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                       absl::StrCat("replay at ", address_, " refused the insert stream: ", status.error_message()));
      return;
    }
    if (stats_.connects > connects_before) reconnect.Progress();
    mu_.AwaitWithTimeout(absl::Condition(&closed_), reconnect.NextDelay());
    if (closed_) return;
    if (RedialNeeded(status, *channel_)) {
      channel_ = CreateChannel(address_, config_.max_message_bytes);
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
// ReplaySampler

absl::Status ReplaySamplerConfig::Validate() const {
  if (addresses.empty()) {
    return absl::InvalidArgumentError("sampler.addresses: expected at least one replay address");
  }
  if (batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("sampler.batch_size: expected >= 1, got ", batch_size));
  }
  if (prefetch_batches < 1) {
    return absl::InvalidArgumentError(absl::StrCat("sampler.prefetch_batches: expected >= 1, got ", prefetch_batches));
  }
  if (stream_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("sampler.stream_deadline: expected > 0");
  }
  return backoff.Validate();
}

absl::StatusOr<std::unique_ptr<ReplaySampler>> ReplaySampler::Create(const ReplaySamplerConfig& config) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<ReplaySampler> sampler(new ReplaySampler(config));
  for (auto& shard : sampler->shards_) {
    shard->thread = std::thread([p = sampler.get(), s = shard.get()] { p->Run(s); });
  }
  return sampler;
}

ReplaySampler::ReplaySampler(const ReplaySamplerConfig& config) : config_(config) {
  for (const std::string& address : config.addresses) {
    auto shard = std::make_unique<Shard>();
    shard->address = address;
    shard->channel = CreateChannel(address, config.max_message_bytes);
    shard->stub = proto::ReplayService::NewStub(shard->channel);
    shards_.push_back(std::move(shard));
  }
}

ReplaySampler::~ReplaySampler() { Close(); }

void ReplaySampler::Close() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (auto& shard : shards_) {
      if (shard->context != nullptr) shard->context->TryCancel();
    }
  }
  for (auto& shard : shards_) {
    if (shard->thread.joinable()) shard->thread.join();
  }
}

ReplaySampler::Stats ReplaySampler::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::StatusOr<SampledBatch> ReplaySampler::Next(absl::Duration timeout) {
  Shard* shard = nullptr;
  SampledBatch batch;
  int grant = 0;
  {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (closed_ || !fatal_.ok()) return true;
      for (const auto& s : shards_) {
        if (!s->ready.empty()) return true;
      }
      return false;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
      return absl::DeadlineExceededError(absl::StrCat("no sampled batch within ", absl::FormatDuration(timeout),
                                                      stats_.last_error.empty()
                                                          ? " (replay may still be below its minimum size)"
                                                          : absl::StrCat(" (last error: ", stats_.last_error, ")")));
    }
    if (closed_) return absl::CancelledError("the sampler is closed");
    // The ready shard that has handed out the fewest batches; ties go round-robin.
    for (size_t i = 0; i < shards_.size(); ++i) {
      Shard* candidate = shards_[(next_shard_ + i) % shards_.size()].get();
      if (!candidate->ready.empty() && (shard == nullptr || candidate->taken < shard->taken)) {
        shard = candidate;
      }
    }
    if (shard == nullptr) return fatal_;
    next_shard_ = (next_shard_ + 1) % shards_.size();
    ++shard->taken;
    // A shard that fell behind catches up by at most prefetch_batches batches.
    int64_t most = 0;
    for (const auto& s : shards_) most = std::max(most, s->taken);
    for (auto& s : shards_) {
      s->taken = std::max<int64_t>(s->taken, most - config_.prefetch_batches);
    }
    batch = std::move(shard->ready.front());
    shard->ready.pop_front();
    ++stats_.returned;
    // Return credit in small groups to save messages.
    if (++shard->credit_owed >= std::max(1, config_.prefetch_batches / 4)) {
      grant = shard->credit_owed;
      shard->credit_owed = 0;
    }
  }
  if (grant > 0) {
    absl::MutexLock lock(&shard->write_mu);
    if (shard->stream != nullptr) {
      proto::SampleRequest credit;
      credit.set_credit(grant);
      // A failed write means the stream is gone; the reconnect recomputes the credit.
      shard->stream->Write(credit);
    }
  }
  return batch;
}

void ReplaySampler::Run(Shard* shard) {
  Reconnect reconnect(config_.backoff, 0x5eed + std::hash<std::string>()(shard->address));
  for (;;) {
    int64_t received_before;
    {
      absl::MutexLock lock(&mu_);
      received_before = stats_.received;
    }
    const grpc::Status status = RunStream(shard);
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    if (!status.ok()) stats_.last_error = absl::StrCat(shard->address, ": ", Describe(status));
    if (!Retryable(status.error_code())) {
      fatal_ = absl::Status(
          static_cast<absl::StatusCode>(status.error_code()),
          absl::StrCat("replay at ", shard->address, " refused the sample stream: ", status.error_message()));
      return;
    }
    if (stats_.received > received_before) reconnect.Progress();
    mu_.AwaitWithTimeout(absl::Condition(&closed_), reconnect.NextDelay());
    if (closed_) return;
    if (RedialNeeded(status, *shard->channel)) {
      // Only this thread uses the shard's channel and stub.
      shard->channel = CreateChannel(shard->address, config_.max_message_bytes);
      shard->stub = proto::ReplayService::NewStub(shard->channel);
    }
  }
}

grpc::Status ReplaySampler::RunStream(Shard* shard) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + config_.stream_deadline));
  int credit;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return grpc::Status(grpc::StatusCode::CANCELLED, "closed");
    shard->context = &context;
    shard->credit_owed = 0;
    credit = std::max(0, config_.prefetch_batches - static_cast<int>(shard->ready.size()));
    ++stats_.connects;
  }
  std::unique_ptr<grpc::ClientReaderWriter<proto::SampleRequest, proto::SampleResponse>> stream =
      shard->stub->Sample(&context);
  bool opened;
  {
    absl::MutexLock lock(&shard->write_mu);
    proto::SampleRequest request;
    request.set_batch_size(config_.batch_size);
    request.set_credit(credit);
    opened = stream->Write(request);
    if (opened) shard->stream = stream.get();
  }
  const BatchSignature signature{config_.obs_dim, config_.action_dim};
  grpc::Status decode_error;
  proto::SampleResponse response;
  while (opened && stream->Read(&response)) {
    absl::StatusOr<SampledBatch> batch = DecodeSampleResponse(response, signature, config_.batch_size);
    if (!batch.ok()) {
      decode_error = grpc::Status(
          grpc::StatusCode::INTERNAL,
          absl::StrCat("bad sampled batch from replay at ", shard->address, ": ", batch.status().message()));
      context.TryCancel();
      break;
    }
    absl::MutexLock lock(&mu_);
    shard->ready.push_back(*std::move(batch));
    ++stats_.received;
  }
  {
    absl::MutexLock lock(&shard->write_mu);
    shard->stream = nullptr;
  }
  while (stream->Read(&response)) {
  }
  grpc::Status status = stream->Finish();
  {
    absl::MutexLock lock(&mu_);
    shard->context = nullptr;
  }
  return decode_error.ok() ? status : decode_error;
}

// ---------------------------------------------------------------------------------------------
// One-shot calls

absl::StatusOr<proto::InfoResponse> GetReplayInfo(const std::string& address, absl::Duration timeout) {
  auto stub = proto::ReplayService::NewStub(CreateChannel(address, 64 << 20));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  proto::InfoResponse response;
  grpc::Status status = stub->Info(&context, proto::InfoRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::Status SetReplayTrainingDone(const std::string& address, bool done, int64_t env_steps, absl::Duration timeout) {
  auto stub = proto::ReplayService::NewStub(CreateChannel(address, 64 << 20));
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

absl::StatusOr<proto::CheckpointResponse> CheckpointReplay(const std::string& address, absl::Duration timeout) {
  auto stub = proto::ReplayService::NewStub(CreateChannel(address, 64 << 20));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  proto::CheckpointResponse response;
  grpc::Status status = stub->Checkpoint(&context, proto::CheckpointRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::Status WaitForReplay(const std::vector<std::string>& addresses, int obs_dim, int action_dim,
                           absl::Duration timeout) {
  for (const std::string& address : addresses) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::StatusOr<proto::InfoResponse> info;
    while (true) {
      info = GetReplayInfo(address, absl::Seconds(1));
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
