// The edgetl.bench/1 JSON document (the schema of edgetl/bench/schema.py), written by hand.
#pragma once

#include <string>
#include <vector>

#include "backend.h"
#include "bench.h"

namespace edgetl {

std::string bench_json(const BackendInfo& info, const std::string& artifact,
                       const std::vector<BenchResult>& results, bool with_times);

// Atomic write: a temporary beside `path`, renamed over it.
void write_text_file(const std::string& path, const std::string& text);

// One human-readable line per batch size for the terminal.
std::string summary_table(const BackendInfo& info, const std::vector<BenchResult>& results);

}  // namespace edgetl
