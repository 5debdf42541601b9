// The one small interface every backend implements; the timing core knows nothing else.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "npy.h"

namespace edgetl {

struct BackendInfo {
  std::string backend;    // schema name: "cpp-aoti" or "cpp-trt"
  std::string model;      // architecture from the artifact's card, else the file stem
  std::string precision;  // fp32 | fp16 | int8 | mixed | unknown
  std::string device;     // cpu | cuda
  std::string gpu;        // GPU name; empty means null (CPU run)
  std::string timer;      // "steady_clock" or "cuda-events"
  int min_batch = 1;
  int max_batch = 1;
  int images_per_call = 1;              // contexts run concurrently per timed call (TensorRT overlap)
  std::vector<int64_t> input_shape;     // C, H, W
  std::map<std::string, std::string> versions;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const BackendInfo& info() const = 0;
  // Allocate inputs for `batch` where the backend computes, filled with seeded standard-normal data.
  virtual void prepare(int batch) = 0;
  // Milliseconds of each of n inference calls on the prepared batch (compute mode: data already in place).
  virtual std::vector<double> time_calls(int n) = 0;
  // One host batch in, host logits out: lets Python check this path's answers.
  virtual NpyArray run(const NpyArray& input) = 0;
  virtual std::optional<double> peak_memory_mb() { return std::nullopt; }

  // A batch outside the artifact's range is a user error, checked before anything runs.
  void check_batch(int batch) const;
};

struct BackendOptions {
  std::string device;  // empty: the artifact's own device
  bool cuda_graph = false;
  int contexts = 1;
  int threads = 0;        // aoti on CPU: intra-op threads (0: LibTorch's default, one per core)
  std::string precision;  // overrides what the artifact says (engines do not record it)
  std::string model;
};

std::unique_ptr<Backend> make_aoti_backend(const std::string& path, const BackendOptions& options);
std::unique_ptr<Backend> make_trt_backend(const std::string& path, const BackendOptions& options);

// Dispatch on the file suffix: .pt2 -> aoti, .engine/.plan/.trt -> trt.
std::unique_ptr<Backend> backend_for(const std::string& path, const BackendOptions& options);

// Seeded standard-normal float32 data, the same for every backend and run.
std::vector<float> random_input(size_t count, uint32_t seed = 0);

}  // namespace edgetl
