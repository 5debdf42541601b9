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

}  // namespace edgetl
