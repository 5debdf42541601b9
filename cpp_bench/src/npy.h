// Minimal .npy reader/writer: float32, C order, little-endian, format versions 1.0-3.0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgetl {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
  size_t size() const;
};

// Throws UserError (one line naming the file) on anything that is not float32 C-order little-endian.
NpyArray read_npy(const std::string& path);
void write_npy(const std::string& path, const NpyArray& array);

// Parsing split out so tests and callers can feed bytes directly.
NpyArray parse_npy(const std::string& bytes, const std::string& source);

}  // namespace edgetl
