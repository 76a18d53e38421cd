#include "replay/replay_service.h"

#include "common/grpc_security.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace meow {

CancellationWatcher::CancellationWatcher(absl::Duration period) : period_(period), thread_([this] { Loop(); }) {}

CancellationWatcher::~CancellationWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

std::unique_ptr<CancellationWatcher::Watch> CancellationWatcher::Add(grpc::ServerContextBase* context,
                                                                     Cancellation* cancellation) {
  std::unique_ptr<Watch> watch(new Watch(this, context, cancellation));
  absl::MutexLock lock(&mu_);
  watches_.push_back(watch.get());
  if (cancel_all_) cancellation->Cancel();
  return watch;
}

void CancellationWatcher::Remove(Watch* watch) {
  absl::MutexLock lock(&mu_);
  watches_.erase(std::remove(watches_.begin(), watches_.end(), watch), watches_.end());
}

void CancellationWatcher::CancelAll() {
  absl::MutexLock lock(&mu_);
  cancel_all_ = true;
  for (Watch* watch : watches_) watch->cancellation_->Cancel();
}

void CancellationWatcher::Loop() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), period_)) {
    for (Watch* watch : watches_) {
      if (!watch->cancellation_->cancelled() && watch->context_->IsCancelled()) {
        watch->cancellation_->Cancel();
      }
    }
  }
}

ReplayServiceImpl::ReplayServiceImpl(Table* table, Persistence* persistence, const ReplayServiceOptions& options)
    : table_(table), persistence_(persistence), options_(options), watcher_(absl::Milliseconds(20)) {}

grpc::Status ReplayServiceImpl::Insert(grpc::ServerContext* context,
                                       grpc::ServerReaderWriter<proto::InsertResponse, proto::InsertRequest>* stream) {
  if (grpc::Status s = CheckToken(*context, options_.token); !s.ok()) return s;
  Cancellation cancellation;
  std::unique_ptr<CancellationWatcher::Watch> watch = watcher_.Add(context, &cancellation);
  proto::InsertRequest request;
  if (!stream->Read(&request)) return grpc::Status::OK;  // closed before opening
  if (!request.has_open()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "InsertRequest.open: the first message of an Insert stream must open it");
  }
  const uint64_t actor_id = request.open().actor_id();
  const absl::StatusOr<InsertSession> session = table_->OpenSession(actor_id, request.open().incarnation());
  if (!session.ok()) return ToGrpcStatus(session.status());
  // However the stream ends, the id is free for another incarnation afterwards.
  struct CloseOnExit {
    Table* table;
    uint64_t actor_id, session;
    ~CloseOnExit() { table->CloseSession(actor_id, session); }
  } close_on_exit{table_, actor_id, session->token};
  {
    proto::InsertResponse response;
    proto::InsertStreamOpened& opened = *response.mutable_opened();
    opened.set_actor_id(actor_id);
    opened.set_last_sequence_number(session->last_sequence_number);
    opened.set_obs_dim(table_->config().obs_dim);
    opened.set_action_dim(table_->config().action_dim);
    opened.set_max_batch_rows(table_->config().max_batch_rows);
    if (!stream->Write(response)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  }

  // This thread reads and stores batches; an acknowledging thread waits until they are logged
  // and sends their acks, several per message when they become durable together. So the next
  // batch is stored while the previous one is being written, and a single stream gets group
  // commits too. Acks keep the order of the batches.
  struct PendingAck {
    proto::InsertAck ack;
    uint64_t log_position = 0;
  };
  struct Acks {
    absl::Mutex mu;
    std::vector<PendingAck> pending ABSL_GUARDED_BY(mu);
    bool done ABSL_GUARDED_BY(mu) = false;   // no more acks will be queued
    absl::Status error ABSL_GUARDED_BY(mu);  // why acknowledging stopped
  } acks;
  std::thread acknowledger([&] {
    std::vector<PendingAck> batch;
    proto::InsertResponse response;
    for (;;) {
      {
        absl::MutexLock lock(&acks.mu);
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(acks.mu) { return !acks.pending.empty() || acks.done; };
        acks.mu.Await(absl::Condition(&ready));
        if (acks.pending.empty()) return;  // done
        batch.swap(acks.pending);
      }
      absl::Status status;
      uint64_t position = 0;
      for (const PendingAck& pending : batch) position = std::max(position, pending.log_position);
      if (persistence_ != nullptr && position > 0) {
        status = persistence_->WaitDurable(position, absl::Now() + options_.insert_timeout);
      }
      if (status.ok()) {
        response.clear_acks();
        for (PendingAck& pending : batch) *response.add_acks() = std::move(pending.ack);
        if (!stream->Write(response)) status = absl::CancelledError("client gone");
      }
      batch.clear();
      if (!status.ok()) {
        absl::MutexLock lock(&acks.mu);
        acks.error = status;
        context->TryCancel();  // stop the reader too: nothing after this may be acknowledged
        return;
      }
    }
  });

  absl::Status status;
  while (stream->Read(&request)) {
    if (!request.has_batch()) {
      status = absl::InvalidArgumentError("InsertRequest.batch: expected a batch after the stream was opened");
      break;
    }
    const proto::TransitionBatch& batch = request.batch();
    PendingAck pending;
    pending.ack.set_sequence_number(batch.sequence_number());
    absl::StatusOr<InsertResult> result =
        batch.actor_id() == actor_id
            ? table_->Insert(batch, session->token, options_.insert_timeout, &cancellation)
            : absl::InvalidArgumentError(absl::StrCat("TransitionBatch.actor_id: expected ", actor_id,
                                                      " (the stream's actor), got ", batch.actor_id()));
    if (result.ok()) {
      pending.ack.set_duplicate(result->duplicate);
      pending.log_position = result->log_position;
    } else if (result.status().code() == absl::StatusCode::kInvalidArgument ||
               result.status().code() == absl::StatusCode::kResourceExhausted) {
      // A bad batch: refuse it alone, the stream goes on.
      pending.ack.set_code(static_cast<int>(result.status().code()));
      pending.ack.set_error_message(std::string(result.status().message()));
    } else {
      // Anything else ends the stream before a later batch could overtake this one.
      status = result.status();
      break;
    }
    absl::MutexLock lock(&acks.mu);
    // A client that does not read its acks: stop reading its batches until it does.
    auto room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(acks.mu) {
      return static_cast<int>(acks.pending.size()) < options_.max_pending_acks || !acks.error.ok();
    };
    if (!room()) {
      ack_backpressure_waits_.fetch_add(1, std::memory_order_relaxed);
      acks.mu.Await(absl::Condition(&room));
    }
    if (!acks.error.ok()) break;
    acks.pending.push_back(std::move(pending));
  }
  // Acknowledge what was stored before ending the stream.
  {
    absl::MutexLock lock(&acks.mu);
    acks.done = true;
  }
  acknowledger.join();
  {
    absl::MutexLock lock(&acks.mu);
    if (!acks.error.ok()) return ToGrpcStatus(acks.error);
  }
  if (!status.ok()) return ToGrpcStatus(status);
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::Sample(grpc::ServerContext* context,
                                       grpc::ServerReaderWriter<proto::SampleResponse, proto::SampleRequest>* stream) {
  if (grpc::Status s = CheckToken(*context, options_.token); !s.ok()) return s;
  Cancellation cancellation;
  std::unique_ptr<CancellationWatcher::Watch> watch = watcher_.Add(context, &cancellation);
  proto::SampleRequest request;
  if (!stream->Read(&request)) return grpc::Status::OK;
  const int64_t batch_size = request.batch_size();
  if (batch_size < 1) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("SampleRequest.batch_size: expected >= 1, got ", batch_size));
  }
  if (batch_size > table_->config().max_sample_rows) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("SampleRequest.batch_size: ", batch_size, " rows exceed the limit of ",
                                     table_->config().max_sample_rows));
  }
  // Each sampled row: obs, action, reward, next_obs (float32), terminated (1 byte), version (int64).
  const int64_t row_bytes = 4 * (2 * int64_t{table_->config().obs_dim} + table_->config().action_dim + 1) + 1 + 8;
  if (batch_size * row_bytes + 4096 > options_.max_message_bytes) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("SampleRequest.batch_size: ", batch_size, " rows take about ", batch_size * row_bytes,
                     " bytes, more than the server's max_message_bytes=", options_.max_message_bytes));
  }
  if (request.credit() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("SampleRequest.credit: expected >= 0, got ", request.credit()));
  }

  // Credit arrives on the read side of the stream while batches go out on the write side.
  struct Credit {
    absl::Mutex mu;
    int64_t available ABSL_GUARDED_BY(mu) = 0;
    bool half_closed ABSL_GUARDED_BY(mu) = false;  // the client will send no more credit
    absl::Status error ABSL_GUARDED_BY(mu);        // a bad credit message
  } credit;
  {
    absl::MutexLock lock(&credit.mu);
    credit.available = request.credit();
  }
  std::thread reader([&] {
    proto::SampleRequest more;
    while (stream->Read(&more)) {
      absl::MutexLock lock(&credit.mu);
      if (more.credit() < 0 || (more.batch_size() != 0 && more.batch_size() != batch_size)) {
        credit.error = absl::InvalidArgumentError(
            more.credit() < 0 ? absl::StrCat("SampleRequest.credit: expected >= 0, got ", more.credit())
                              : absl::StrCat("SampleRequest.batch_size: expected 0 or ", batch_size,
                                             " (the stream's batch size), got ", more.batch_size()));
        break;
      }
      credit.available += more.credit();
    }
    absl::MutexLock lock(&credit.mu);
    credit.half_closed = true;
  });
  // Waking the credit wait on cancellation; released before `credit` goes away.
  std::unique_ptr<Cancellation::Registration> wake =
      cancellation.Register([&credit] { absl::MutexLock lock(&credit.mu); });

  absl::Status status;
  for (;;) {
    {
      absl::MutexLock lock(&credit.mu);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(credit.mu) {
        return credit.available > 0 || credit.half_closed || cancellation.cancelled();
      };
      credit.mu.Await(absl::Condition(&ready));
      if (!credit.error.ok()) {
        status = credit.error;
        break;
      }
      if (cancellation.cancelled()) {
        status = absl::CancelledError("sample stream cancelled");
        break;
      }
      if (credit.available == 0) break;  // half-closed and all credit served
      --credit.available;
    }
    // Wait for the rate limiter for as long as the call may last (a day at most without a
    // client deadline; cancellation ends it earlier).
    const std::chrono::system_clock::time_point deadline = context->deadline();
    const absl::Duration timeout = deadline >= std::chrono::system_clock::now() + std::chrono::hours(24)
                                       ? absl::Hours(24)
                                       : std::max(absl::ZeroDuration(), absl::FromChrono(deadline) - absl::Now());
    absl::StatusOr<proto::SampleResponse> batch = table_->Sample(batch_size, timeout, &cancellation);
    if (!batch.ok()) {
      status = batch.status();
      break;
    }
    if (!stream->Write(*batch)) {
      status = absl::CancelledError("client gone");
      break;
    }
  }
  wake.reset();
  // The reader is blocked in Read unless the client half-closed: cancel the call to release it.
  {
    bool half_closed;
    {
      absl::MutexLock lock(&credit.mu);
      half_closed = credit.half_closed;
    }
    if (!half_closed) context->TryCancel();
  }
  reader.join();
  if (status.ok() && context->IsCancelled()) status = absl::CancelledError("client gone");
  return ToGrpcStatus(status);
}

grpc::Status ReplayServiceImpl::Info(grpc::ServerContext* context, const proto::InfoRequest* request,
                                     proto::InfoResponse* response) {
  if (grpc::Status s = CheckToken(*context, options_.token); !s.ok()) return s;
  *response->mutable_table() = table_->Info();
  *response->mutable_rate_limiter() = table_->RateLimiterState();
  if (persistence_ != nullptr) *response->mutable_persistence() = persistence_->Info();
  response->mutable_service()->set_ack_backpressure_waits(ack_backpressure_waits_.load(std::memory_order_relaxed));
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::Checkpoint(grpc::ServerContext* context, const proto::CheckpointRequest* request,
                                           proto::CheckpointResponse* response) {
  if (grpc::Status s = CheckToken(*context, options_.token); !s.ok()) return s;
  if (persistence_ == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this replay server keeps no snapshots: it was started without a "
                        "persistence directory");
  }
  absl::StatusOr<proto::CheckpointResponse> snapshot = persistence_->Snapshot();
  if (!snapshot.ok()) return ToGrpcStatus(snapshot.status());
  *response = *std::move(snapshot);
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::SetTrainingDone(grpc::ServerContext* context,
                                                const proto::SetTrainingDoneRequest* request,
                                                proto::SetTrainingDoneResponse* response) {
  if (grpc::Status s = CheckToken(*context, options_.token); !s.ok()) return s;
  if (request->env_steps() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("SetTrainingDoneRequest.env_steps: expected >= 0, got ", request->env_steps()));
  }
  table_->SetTrainingDone(request->done(), request->env_steps());
  return grpc::Status::OK;
}

}  // namespace meow
