// The gRPC face of one replay table (protocol in proto/replay.proto). It only validates stream
// protocol, delegates to the Table (and to Persistence for durable acknowledgements) and converts
// absl::Status to grpc::Status in one place.
//
// Handlers are synchronous: each stream holds a thread while it runs. A blocked table call wakes on
// its Cancellation: a watcher thread polls the contexts of running calls and cancels theirs when
// gRPC marks them cancelled (client gone, deadline passed, server shutdown).
//
// Thread-safe. Does not own the table or the persistence; both must outlive it.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "grpcpp/grpcpp.h"
#include "proto/replay.grpc.pb.h"
#include "replay/cancellation.h"
#include "replay/persistence.h"
#include "replay/table.h"

namespace meow {

// Turns gRPC-side cancellation of server calls into Cancellation signals. Thread-safe.
class CancellationWatcher {
 public:
  // Unregisters on destruction.
  class Watch {
   public:
    ~Watch() { owner_->Remove(this); }
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

   private:
    friend class CancellationWatcher;
    Watch(CancellationWatcher* owner, grpc::ServerContextBase* context, Cancellation* cancellation)
        : owner_(owner), context_(context), cancellation_(cancellation) {}
    CancellationWatcher* owner_;
    grpc::ServerContextBase* context_;  // not owned
    Cancellation* cancellation_;        // not owned
  };

  explicit CancellationWatcher(absl::Duration period);
  ~CancellationWatcher();  // stops the thread

  // Cancels `cancellation` once `context` is cancelled, or at CancelAll, until the watch ends.
  [[nodiscard]] std::unique_ptr<Watch> Add(grpc::ServerContextBase* context, Cancellation* cancellation)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels every current and future watch (server shutdown).
  void CancelAll() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Remove(Watch* watch) ABSL_LOCKS_EXCLUDED(mu_);
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  const absl::Duration period_;
  absl::Mutex mu_;
  std::vector<Watch*> watches_ ABSL_GUARDED_BY(mu_);
  bool cancel_all_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

struct ReplayServiceOptions {
  // How long an insert may wait for the rate limiter (and for its log write) before the stream
  // ends with DEADLINE_EXCEEDED and the client resends.
  absl::Duration insert_timeout = absl::Seconds(60);
  std::string token;  // required bearer token; empty: none
  // The largest message the server sends: a sample request whose batch would not fit is refused.
  int64_t max_message_bytes = 64 << 20;
  // Acknowledgements an insert stream may have waiting to be sent; at the limit the server stops
  // reading the stream (gRPC flow control then holds the client) until the client reads its acks.
  int max_pending_acks = 1024;
};

class ReplayServiceImpl final : public proto::ReplayService::Service {
 public:
  // `persistence` may be null (memory only).
  ReplayServiceImpl(Table* table, Persistence* persistence, const ReplayServiceOptions& options);

  grpc::Status Insert(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<proto::InsertResponse, proto::InsertRequest>* stream) override;
  grpc::Status Sample(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<proto::SampleResponse, proto::SampleRequest>* stream) override;
  grpc::Status Info(grpc::ServerContext* context, const proto::InfoRequest* request,
                    proto::InfoResponse* response) override;
  grpc::Status Checkpoint(grpc::ServerContext* context, const proto::CheckpointRequest* request,
                          proto::CheckpointResponse* response) override;
  grpc::Status SetTrainingDone(grpc::ServerContext* context, const proto::SetTrainingDoneRequest* request,
                               proto::SetTrainingDoneResponse* response) override;

  // Wakes every blocked call with CANCELLED and cancels later ones (before server shutdown).
  void Shutdown() { watcher_.CancelAll(); }

 private:
  Table* const table_;              // not owned
  Persistence* const persistence_;  // not owned; may be null
  const ReplayServiceOptions options_;
  CancellationWatcher watcher_;
  std::atomic<int64_t> ack_backpressure_waits_{0};
};

}  // namespace meow
