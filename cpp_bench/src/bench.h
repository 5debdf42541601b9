// The timing core: warm-up, then iterations and/or a duration, per-call timings, statistics.
// Defaults and percentiles match edgetl/bench (harness.py, stats.py) so C++ and Python figures compare.
#pragma once

#include <optional>
#include <vector>

#include "backend.h"

namespace edgetl {

struct BenchConfig {
  std::vector<int> batches{1};
  std::optional<int> warmup_iters;   // none: at least 5 calls and 0.5 s, as edgetl bench
  std::optional<int> iters;          // alone: exactly this many timed calls
  std::optional<double> duration_s;  // alone: at least this many seconds (and one call)
  double chunk_s = 0.1;              // calls timed per time_calls(), sized from the warm-up
};

struct LatencyStats {
  double mean = 0, min = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0;
};

struct BenchResult {
  int batch = 0;
  int warmup_iters = 0;
  std::vector<double> times_ms;
  LatencyStats latency;
  double throughput_ips = 0;
  std::optional<double> peak_memory_mb;
};

// numpy.percentile's default ("linear"): rank (n - 1) * q / 100, interpolated between neighbours.
double percentile(const std::vector<double>& sorted, double q);
LatencyStats latency_stats(const std::vector<double>& times_ms);

std::vector<BenchResult> run_benchmark(Backend& backend, const BenchConfig& config);

}  // namespace edgetl
