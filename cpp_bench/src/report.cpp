#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include <sys/utsname.h>

#include "common.h"

namespace edgetl {

namespace {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  utsname u{};
  return uname(&u) == 0 ? std::string(u.machine) : "unknown";
}

// The CPU features edgetl.bench.schema.ISA_FLAGS lists, in its order, as a JSON array (the same on both sides).
std::string cpu_isa() {
  static const char* kFlags[] = {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                 "amx_int8", "amx_bf16", "asimddp", "i8mm", "sve"};
  std::string out = "[";
  for (const char* flag : kFlags) {
    if (cpu_flags().find(" " + std::string(flag) + " ") == std::string::npos) continue;
    out += (out.size() > 1 ? ", " : "") + quote(flag);
  }
  return out + "]";
}

std::string utc_timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  return buf;
}

std::string file_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string bench_json(const BackendInfo& info, const std::string& artifact,
                       const std::vector<BenchResult>& results, bool with_times) {
  std::ostringstream o;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  o << "{\n  \"schema\": \"edgetl.bench/1\",\n  \"timestamp\": " << quote(utc_timestamp()) << ",\n";
  o << "  \"host\": {\"cpu\": " << quote(cpu_name()) << ", \"cores\": " << cores
    << ", \"isa\": " << cpu_isa() << ", \"gpu\": " << (info.gpu.empty() ? "null" : quote(info.gpu)) << "},\n";
  o << "  \"versions\": {";
  bool first = true;
  for (const auto& [name, version] : info.versions) {
    o << (first ? "" : ", ") << quote(name) << ": " << quote(version);
    first = false;
  }
  o << "},\n  \"results\": [";
  for (size_t i = 0; i < results.size(); ++i) {
    const BenchResult& r = results[i];
    const LatencyStats& l = r.latency;
    o << (i ? "," : "") << "\n    {\"model\": " << quote(info.model) << ", \"artifact\": " << quote(artifact)
      << ", \"backend\": " << quote(info.backend) << ", \"precision\": " << quote(info.precision)
      << ", \"device\": " << quote(info.device) << ", \"provider\": null, \"mode\": \"compute\""
      << ", \"batch\": " << r.batch << ", \"iters\": " << r.times_ms.size()
      << ", \"warmup_iters\": " << r.warmup_iters << ",\n     \"latency_ms\": {\"mean\": " << number(l.mean)
      << ", \"min\": " << number(l.min) << ", \"p50\": " << number(l.p50) << ", \"p90\": " << number(l.p90)
      << ", \"p95\": " << number(l.p95) << ", \"p99\": " << number(l.p99) << ", \"max\": " << number(l.max)
      << "},\n     \"throughput_ips\": " << number(r.throughput_ips)
      << ", \"peak_memory_mb\": " << (r.peak_memory_mb ? number(*r.peak_memory_mb) : "null")
      << ", \"label\": " << quote(file_name(artifact) + " [" + info.backend + "/" + info.precision + "]")
      << ", \"timer\": " << quote(info.timer) << ", \"images_per_call\": " << info.images_per_call;
    if (with_times) {
      o << ",\n     \"times_ms\": [";
      for (size_t k = 0; k < r.times_ms.size(); ++k) o << (k ? ", " : "") << number(r.times_ms[k]);
      o << "]";
    }
    o << "}";
  }
  o << "\n  ]\n}\n";
  return o.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw UserError(path + ": cannot write here; choose a writable --json path");
    out << text;
    if (!out) throw UserError(path + ": write failed (disk full?); choose another --json path");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw UserError(path + ": cannot replace the file; check permissions");
}

std::string summary_table(const BackendInfo& info, const std::vector<BenchResult>& results) {
  std::ostringstream o;
  char line[200];
  std::snprintf(line, sizeof line, "%-10s %-6s %6s %7s %10s %10s %10s %12s\n", "backend", "device", "batch", "iters",
                "mean ms", "p50 ms", "p99 ms", "images/s");
  o << line;
  for (const BenchResult& r : results) {
    std::snprintf(line, sizeof line, "%-10s %-6s %6d %7zu %10.3f %10.3f %10.3f %12.1f\n", info.backend.c_str(),
                  info.device.c_str(), r.batch, r.times_ms.size(), r.latency.mean, r.latency.p50, r.latency.p99,
                  r.throughput_ips);
    o << line;
  }
  return o.str();
}

}  // namespace edgetl
