#include "common.h"

#include <fstream>
#include <random>
#include <sstream>

#include "backend.h"

namespace edgetl {

std::string first_line(const std::string& text) {
  const size_t end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

std::vector<int> parse_int_list(const std::string& text, const std::string& flag) {
  std::vector<int> values;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 9 ||
        std::stoi(item) < 1) {
      throw UserError(flag + " " + text + ": expected positive integers separated by commas, e.g. 1,8,32");
    }
    values.push_back(std::stoi(item));
  }
  if (values.empty()) throw UserError(flag + ": expected positive integers separated by commas, e.g. 1,8,32");
  return values;
}

const std::string& cpu_flags() {
  static const std::string flags = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) == 0 || line.rfind("Features", 0) == 0) return line.substr(line.find(':') + 1) + " ";
    }
    return std::string();
  }();
  return flags;
}

std::string missing_cpu_features(const std::string& required) {
  if (cpu_flags().empty()) return "";
  std::string missing, flag;
  std::stringstream ss(required);
  while (std::getline(ss, flag, ',')) {
    if (flag.empty() || cpu_flags().find(" " + flag + " ") != std::string::npos) continue;
    missing += (missing.empty() ? "" : ", ") + flag;
  }
  return missing;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<float> random_input(size_t count, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(count);
  for (float& v : out) v = normal(gen);
  return out;
}

void Backend::check_batch(int batch) const {
  const BackendInfo& i = info();
  if (batch < i.min_batch || batch > i.max_batch) {
    throw UserError("batch " + std::to_string(batch) + " is outside this artifact's batch range " +
                    std::to_string(i.min_batch) + ".." + std::to_string(i.max_batch) +
                    "; pick --batch within it, or re-export with a larger maximum (edgetl export --batch 1:8:MAX)");
  }
}

std::unique_ptr<Backend> backend_for(const std::string& path, const BackendOptions& options) {
  if (ends_with(path, ".pt2")) return make_aoti_backend(path, options);
  if (ends_with(path, ".engine") || ends_with(path, ".plan") || ends_with(path, ".trt")) {
    return make_trt_backend(path, options);
  }
  throw UserError(path + ": unknown artifact type; pass an AOTInductor package (.pt2) or a TensorRT engine "
                  "(.engine, .plan, .trt)");
}

}  // namespace edgetl
