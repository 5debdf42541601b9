#include "npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "common.h"

namespace edgetl {

namespace {

const char kMagic[] = "\x93NUMPY";

[[noreturn]] void bad(const std::string& source, const std::string& why) {
  throw UserError(source + ": not a float32 .npy file (" + why +
                  "); save it with numpy.save(path, array.astype(numpy.float32))");
}

// Value text of `key` in the header dict, e.g. "'<f4'" or "(3, 32, 32)".
std::string header_value(const std::string& header, const std::string& key, const std::string& source) {
  const std::string quoted = "'" + key + "'";
  size_t at = header.find(quoted);
  if (at == std::string::npos) bad(source, "header has no " + quoted);
  at = header.find(':', at + quoted.size());
  if (at == std::string::npos) bad(source, "malformed header");
  size_t start = header.find_first_not_of(' ', at + 1);
  if (start == std::string::npos) bad(source, "malformed header");
  size_t end;
  if (header[start] == '(') {
    end = header.find(')', start);
    if (end == std::string::npos) bad(source, "malformed shape");
    ++end;
  } else {
    end = header.find_first_of(",}", start);
    if (end == std::string::npos) bad(source, "malformed header");
  }
  return header.substr(start, end - start);
}

std::vector<int64_t> parse_shape(const std::string& text, const std::string& source) {
  std::vector<int64_t> shape;
  std::string inner = text.substr(1, text.size() - 2);
  std::stringstream ss(inner);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t a = item.find_first_not_of(" \t");
    if (a == std::string::npos) continue;  // trailing comma of a 1-tuple
    size_t b = item.find_last_not_of(" \tL");
    std::string digits = item.substr(a, b - a + 1);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
      bad(source, "shape " + text + " is not a tuple of non-negative integers");
    }
    shape.push_back(std::stoll(digits));
  }
  return shape;
}

uint32_t read_le(const std::string& bytes, size_t offset, size_t width) {
  uint32_t value = 0;
  for (size_t i = 0; i < width; ++i) value |= uint32_t(uint8_t(bytes[offset + i])) << (8 * i);
  return value;
}

}  // namespace

size_t NpyArray::size() const {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  return n;
}

NpyArray parse_npy(const std::string& bytes, const std::string& source) {
  if (bytes.size() < 10 || bytes.compare(0, 6, kMagic, 6) != 0) bad(source, "missing the \\x93NUMPY magic");
  const int major = uint8_t(bytes[6]);
  if (major < 1 || major > 3) bad(source, "unsupported format version " + std::to_string(major));
  const size_t len_width = major == 1 ? 2 : 4;
  const size_t header_start = 8 + len_width;
  if (bytes.size() < header_start) bad(source, "truncated header");
  const size_t header_len = read_le(bytes, 8, len_width);
  if (bytes.size() < header_start + header_len) bad(source, "truncated header");
  const std::string header = bytes.substr(header_start, header_len);

  const std::string descr = header_value(header, "descr", source);
  if (descr != "'<f4'") bad(source, "dtype " + descr + ", expected '<f4'");
  if (header_value(header, "fortran_order", source) != "False") bad(source, "Fortran order");
  NpyArray array;
  array.shape = parse_shape(header_value(header, "shape", source), source);

  const size_t count = array.size();
  const size_t payload = bytes.size() - header_start - header_len;
  if (payload != count * sizeof(float)) {
    bad(source, "holds " + std::to_string(payload) + " data bytes, shape needs " + std::to_string(count * 4));
  }
  array.data.resize(count);
  if (count) std::memcpy(array.data.data(), bytes.data() + header_start + header_len, count * sizeof(float));
  return array;
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": file not found or not readable; pass an existing .npy file");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return parse_npy(buffer.str(), path);
}

void write_npy(const std::string& path, const NpyArray& array) {
  std::string shape = "(";
  for (size_t i = 0; i < array.shape.size(); ++i) shape += std::to_string(array.shape[i]) + ", ";
  if (array.shape.size() > 1) shape.resize(shape.size() - 2);
  else if (array.shape.size() == 1) shape.resize(shape.size() - 1);
  shape += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces so magic + length + header + '\n' is a multiple of 64 (numpy's alignment).
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw UserError(path + ": cannot write here; choose a writable --output path");
    out.write(kMagic, 6);
    const char version[2] = {1, 0};
    out.write(version, 2);
    const uint16_t len = uint16_t(header.size());
    const char len_bytes[2] = {char(len & 0xff), char(len >> 8)};
    out.write(len_bytes, 2);
    out.write(header.data(), std::streamsize(header.size()));
    out.write(reinterpret_cast<const char*>(array.data.data()), std::streamsize(array.data.size() * sizeof(float)));
    if (!out) throw UserError(path + ": write failed (disk full?); choose another --output path");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw UserError(path + ": cannot replace the file; check permissions");
}

}  // namespace edgetl
