#include "replay/load_generator.h"

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/tensor_codec.h"
#include "replay/replay_client.h"

namespace meow {
namespace {

// Random but valid transitions: finite values, actions in [-1, 1], some terminal rows.
proto::TransitionBatch RandomBatch(int obs_dim, int action_dim, int rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> obs(rows * obs_dim), act(rows * action_dim), rew(rows), next(rows * obs_dim);
  std::vector<uint8_t> term(rows);
  for (float& x : obs) x = normal(rng);
  for (float& x : next) x = normal(rng);
  for (float& x : rew) x = normal(rng);
  for (float& x : act) x = uniform(rng);
  for (uint8_t& t : term) t = rng() % 50 == 0;
  return MakeTransitionBatch(obs_dim, action_dim, obs, act, rew, next, term, /*policy_version=*/0);
}

// Sum of replay's last stored sequence numbers over the load's actor ids.
int64_t LoadBatches(const proto::InfoResponse& info, const ReplayLoadConfig& config) {
  int64_t sum = 0;
  for (const auto& [actor, last] : info.table().last_sequence_number_by_actor()) {
    if (actor >= config.first_actor_id && actor < config.first_actor_id + static_cast<uint64_t>(config.streams)) {
      sum += static_cast<int64_t>(last);
    }
  }
  return sum;
}

}  // namespace

absl::Status ReplayLoadConfig::Validate() const {
  if (address.empty()) return absl::InvalidArgumentError("load: a replay address is needed");
  if (streams < 1 || streams > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("load: streams must be in [1, 4096], got ", streams));
  }
  if (rows_per_batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("load: rows_per_batch must be >= 1, got ", rows_per_batch));
  }
  if (samplers < 0 || samplers > 64) {
    return absl::InvalidArgumentError(absl::StrCat("load: samplers must be in [0, 64], got ", samplers));
  }
  if (sample_batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("load: sample_batch_size must be >= 1, got ", sample_batch_size));
  }
  if (duration <= absl::ZeroDuration()) return absl::InvalidArgumentError("load: duration must be > 0");
  if (report_interval <= absl::ZeroDuration()) return absl::InvalidArgumentError("load: report_interval must be > 0");
  return absl::OkStatus();
}

std::string ReplayLoadResult::Summary() const {
  const proto::RateLimiterInfo& b = before.rate_limiter();
  const proto::RateLimiterInfo& a = after.rate_limiter();
  return absl::StrFormat(
      "seconds=%.1f batches_acked=%d rows_acked=%d rows_per_s=%.0f batches_unacked=%d duplicates=%d "
      "insert_errors=%d rejected=%d reconnects=%d sampled_batches=%d sample_errors=%d "
      "stored_batches=%d inserted_batches_delta=%d insert_waits=%d insert_wait_s=%.1f sample_waits=%d "
      "sample_wait_s=%.1f size=%d capacity=%d",
      seconds, batches_acked, rows_acked, seconds > 0 ? rows_acked / seconds : 0.0, batches_unacked, duplicates,
      insert_errors, rejected, reconnects, sampled_batches, sample_errors, stored_batches_of_load,
      after.table().inserted_batches() - before.table().inserted_batches(), a.insert_waits() - b.insert_waits(),
      a.insert_wait_seconds() - b.insert_wait_seconds(), a.sample_waits() - b.sample_waits(),
      a.sample_wait_seconds() - b.sample_wait_seconds(), after.table().size(), after.table().capacity());
}

absl::StatusOr<ReplayLoadResult> RunReplayLoad(const ReplayLoadConfig& config,
                                               const std::function<void(const std::string&)>& progress) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  ReplayLoadResult result;
  auto before = GetReplayInfo(config.address, absl::Seconds(10), config.security);
  if (!before.ok()) {
    return absl::UnavailableError(
        absl::StrCat("load: cannot reach replay at ", config.address, ": ", before.status().message()));
  }
  result.before = *before;
  const int obs_dim = before->table().obs_dim(), action_dim = before->table().action_dim();

  std::vector<std::unique_ptr<ReplayInserter>> inserters;
  for (int i = 0; i < config.streams; ++i) {
    ReplayInserterConfig ic;
    ic.addresses = {config.address};
    ic.security = config.security;
    ic.actor_id = config.first_actor_id + static_cast<uint64_t>(i);
    auto inserter = ReplayInserter::Create(ic);
    if (!inserter.ok()) return inserter.status();
    inserters.push_back(*std::move(inserter));
  }
  std::vector<std::unique_ptr<ReplaySampler>> samplers;
  for (int i = 0; i < config.samplers; ++i) {
    ReplaySamplerConfig sc;
    sc.addresses = {config.address};
    sc.security = config.security;
    sc.batch_size = config.sample_batch_size;
    auto sampler = ReplaySampler::Create(sc);
    if (!sampler.ok()) return sampler.status();
    samplers.push_back(*std::move(sampler));
  }

  absl::Mutex mu;
  auto record_error = [&](int64_t& counter, const absl::Status& status) {
    absl::MutexLock lock(&mu);
    ++counter;
    if (result.first_error.empty()) result.first_error = status.ToString();
  };
  std::atomic<bool> stop_inserts{false}, stop_samples{false};
  std::atomic<int64_t> sampled{0};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int i = 0; i < config.streams; ++i) {
    threads.emplace_back([&, i] {
      const proto::TransitionBatch batch =
          RandomBatch(obs_dim, action_dim, config.rows_per_batch, config.seed * 7919 + static_cast<uint64_t>(i));
      while (!stop_inserts.load()) {
        // Waiting (a full unacknowledged window while the rate limiter holds inserts) is not an error.
        absl::Status st = inserters[i]->Insert(batch, absl::Milliseconds(250));
        if (st.ok() || absl::IsDeadlineExceeded(st)) continue;
        record_error(result.insert_errors, st);
        absl::SleepFor(absl::Milliseconds(100));
      }
    });
  }
  std::vector<std::thread> sampler_threads;
  for (auto& sampler : samplers) {
    sampler_threads.emplace_back([&, s = sampler.get()] {
      while (!stop_samples.load()) {
        auto batch = s->Next(absl::Milliseconds(250));
        if (batch.ok()) {
          sampled.fetch_add(1);
        } else if (!absl::IsDeadlineExceeded(batch.status()) && !absl::IsUnavailable(batch.status())) {
          record_error(result.sample_errors, batch.status());
          absl::SleepFor(absl::Milliseconds(100));
        }
      }
    });
  }

  auto acked_now = [&] {
    int64_t acked = 0;
    for (const auto& inserter : inserters) acked += inserter->stats().acked;
    return acked;
  };
  const absl::Time end = start + config.duration;
  int64_t last_acked = 0, last_sampled = 0;
  absl::Time last_report = start;
  while (absl::Now() < end) {
    absl::SleepFor(std::min(config.report_interval, end - absl::Now()));
    if (!progress) continue;
    const absl::Time now = absl::Now();
    const int64_t acked = acked_now(), sampled_now = sampled.load();
    const double window = absl::ToDoubleSeconds(now - last_report);
    std::string replay_line = "replay info unavailable";
    if (auto info = GetReplayInfo(config.address, absl::Seconds(2), config.security); info.ok()) {
      replay_line = absl::StrFormat(
          "replay size %d/%d, limiter insert waits %d (%.1f s), blocked now %d", info->table().size(),
          info->table().capacity(), info->rate_limiter().insert_waits() - before->rate_limiter().insert_waits(),
          info->rate_limiter().insert_wait_seconds() - before->rate_limiter().insert_wait_seconds(),
          info->rate_limiter().blocked_inserts());
    }
    progress(absl::StrFormat("load %4.0fs: %.0f rows/s in, %.0f batches/s out; %s", absl::ToDoubleSeconds(now - start),
                             (acked - last_acked) * config.rows_per_batch / window,
                             (sampled_now - last_sampled) / window, replay_line));
    last_acked = acked;
    last_sampled = sampled_now;
    last_report = now;
  }

  // Stop producing, let what is queued be acknowledged while samplers keep the limiter moving.
  stop_inserts.store(true);
  for (std::thread& t : threads) t.join();
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  for (auto& inserter : inserters) {
    absl::Status flushed = inserter->Flush(absl::Seconds(10));
    if (!flushed.ok() && !absl::IsDeadlineExceeded(flushed)) record_error(result.insert_errors, flushed);
  }
  stop_samples.store(true);
  for (std::thread& t : sampler_threads) t.join();
  for (auto& inserter : inserters) {
    inserter->Close();
    const ReplayInserter::Stats st = inserter->stats();
    result.batches_acked += st.acked;
    result.batches_unacked += st.unacked;
    result.duplicates += st.duplicates;
    result.rejected += st.rejected;
    result.reconnects += std::max<int64_t>(0, st.connects - 1);
  }
  for (auto& sampler : samplers) sampler->Close();
  result.rows_acked = result.batches_acked * config.rows_per_batch;
  result.sampled_batches = sampled.load();
  auto after = GetReplayInfo(config.address, absl::Seconds(10), config.security);
  if (!after.ok()) {
    return absl::UnavailableError(
        absl::StrCat("load: replay at ", config.address, " did not answer after the run: ", after.status().message()));
  }
  result.after = *after;
  result.stored_batches_of_load = LoadBatches(*after, config) - LoadBatches(*before, config);
  return result;
}

}  // namespace meow
