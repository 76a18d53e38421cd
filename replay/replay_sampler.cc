#include "replay/replay_client.h"  // ReplaySampler

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"

namespace meow {

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
    shard->channel = CreateChannel(address, config.max_message_bytes, config.security);
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
    if (!status.ok()) stats_.last_error = absl::StrCat(shard->address, ": ", DescribeGrpcStatus(status));
    if (!RetryableStreamEnd(status.error_code())) {
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
      shard->channel = CreateChannel(shard->address, config_.max_message_bytes, config_.security);
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

}  // namespace meow
