#include "bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace edgetl {

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) throw std::invalid_argument("no timings to summarise");
  const double rank = (double(sorted.size()) - 1.0) * q / 100.0;
  const size_t lo = size_t(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - double(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

LatencyStats latency_stats(const std::vector<double>& times_ms) {
  std::vector<double> t(times_ms);
  std::sort(t.begin(), t.end());
  LatencyStats s;
  s.mean = std::accumulate(t.begin(), t.end(), 0.0) / double(t.size());
  s.min = t.front();
  s.max = t.back();
  s.p50 = percentile(t, 50);
  s.p90 = percentile(t, 90);
  s.p95 = percentile(t, 95);
  s.p99 = percentile(t, 99);
  return s;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Warm up until both minimums hold; returns (calls, median ms per call) to size the timed chunks.
std::pair<int, double> warm_up(Backend& backend, const BenchConfig& config) {
  const int want_n = config.warmup_iters.value_or(5);
  const double want_s = config.warmup_iters ? 0.0 : 0.5;
  std::vector<double> times;
  const auto start = std::chrono::steady_clock::now();
  while (int(times.size()) < std::max(want_n, 1) || seconds_since(start) < want_s) {
    times.push_back(backend.time_calls(1).at(0));
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return {int(times.size()), times[times.size() / 2]};
}

}  // namespace

std::vector<BenchResult> run_benchmark(Backend& backend, const BenchConfig& config) {
  const bool defaults = !config.iters && !config.duration_s;
  const int min_n = defaults ? 100 : config.iters.value_or(20);  // --duration alone: still >= 20 calls, as in Python
  const double min_s = defaults ? 2.0 : config.duration_s.value_or(0.0);
  const bool exact = config.iters && !config.duration_s;

  std::vector<BenchResult> results;
  for (int batch : config.batches) {
    backend.check_batch(batch);
    backend.prepare(batch);
    BenchResult r;
    r.batch = batch;
    auto [warm_calls, per_call_ms] = warm_up(backend, config);
    r.warmup_iters = warm_calls;
    const int chunk = std::max(1, int(config.chunk_s * 1000.0 / std::max(per_call_ms, 1e-3)));
    double spent_s = 0;
    while (int(r.times_ms.size()) < min_n || (!exact && spent_s < min_s)) {
      const int n = exact ? std::min(chunk, min_n - int(r.times_ms.size())) : chunk;
      for (double ms : backend.time_calls(n)) {
        r.times_ms.push_back(ms);
        spent_s += ms / 1000.0;
      }
    }
    r.latency = latency_stats(r.times_ms);
    const int images = batch * backend.info().images_per_call;
    r.throughput_ips = r.latency.mean > 0 ? images * 1000.0 / r.latency.mean : 0.0;
    r.peak_memory_mb = backend.peak_memory_mb();
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace edgetl
