// The TensorRT 10 C++ calls cpp_bench/src/trt_backend.cpp makes, declared (not defined) from NVIDIA's TensorRT
// API documentation, so tests/test_cpp_bench.py can compile that file with -fsyntax-only where TensorRT cannot
// be installed. Nothing here links or runs. Keep it to what trt_backend.cpp uses; the real header wins on a
// machine with TensorRT (CMake finds it there and builds the backend for real).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#define NV_TENSORRT_MAJOR 10
#define NV_TENSORRT_MINOR 3
#define NV_TENSORRT_PATCH 0

namespace nvinfer1 {

enum class DataType : int32_t { kFLOAT, kHALF, kINT8, kINT32, kBOOL, kUINT8, kFP8, kBF16, kINT64, kINT4 };
enum class TensorIOMode : int32_t { kNONE, kINPUT, kOUTPUT };
enum class OptProfileSelector : int32_t { kMIN, kOPT, kMAX };

struct Dims {  // TensorRT 10: Dims64
  static constexpr int32_t MAX_DIMS = 8;
  int32_t nbDims;
  int64_t d[MAX_DIMS];
};

class ILogger {
 public:
  enum class Severity : int32_t { kINTERNAL_ERROR, kERROR, kWARNING, kINFO, kVERBOSE };
  virtual void log(Severity severity, const char* msg) noexcept = 0;
  virtual ~ILogger() = default;
};

class IExecutionContext {
 public:
  virtual ~IExecutionContext() = default;
  bool setInputShape(const char* name, const Dims& dims) noexcept;
  Dims getTensorShape(const char* name) const noexcept;
  bool setTensorAddress(const char* name, void* data) noexcept;
  bool enqueueV3(cudaStream_t stream) noexcept;
  bool setOptimizationProfileAsync(int32_t profileIndex, cudaStream_t stream) noexcept;
};

class ICudaEngine {
 public:
  virtual ~ICudaEngine() = default;
  int32_t getNbIOTensors() const noexcept;
  const char* getIOTensorName(int32_t index) const noexcept;
  TensorIOMode getTensorIOMode(const char* name) const noexcept;
  DataType getTensorDataType(const char* name) const noexcept;
  Dims getTensorShape(const char* name) const noexcept;
  int32_t getNbOptimizationProfiles() const noexcept;
  Dims getProfileShape(const char* name, int32_t profileIndex, OptProfileSelector select) const noexcept;
  IExecutionContext* createExecutionContext() noexcept;
};

class IRuntime {
 public:
  virtual ~IRuntime() = default;
  ICudaEngine* deserializeCudaEngine(const void* blob, std::size_t size) noexcept;
  void setEngineHostCodeAllowed(bool allowed) noexcept;
  void setDLACore(int32_t dlaCore) noexcept;
};

IRuntime* createInferRuntime(ILogger& logger) noexcept;

}  // namespace nvinfer1
