// Shared types of edgetl_bench: the user-error exception and small string helpers.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace edgetl {

// A problem the user can fix (bad file, bad flag): printed as one line, exit code 2.
struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// First line of a message (c10::Error carries a multi-line backtrace we must not print).
std::string first_line(const std::string& text);

// "1,8,32" -> {1, 8, 32}; throws UserError naming the flag on anything else.
std::vector<int> parse_int_list(const std::string& text, const std::string& flag);

bool ends_with(const std::string& text, const std::string& suffix);

// This CPU's feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"), space-padded: " avx2 fma ... ";
// empty where there is no /proc/cpuinfo.
const std::string& cpu_flags();

// Which of `required` (comma-separated, as edgetl.cpu_features records them) this CPU lacks, ", "-joined;
// empty when it has them all or cannot tell.
std::string missing_cpu_features(const std::string& required);

}  // namespace edgetl
