// trt backend: a serialized TensorRT engine run with the name-based API of TensorRT 10/11
// (setInputShape, setTensorAddress, enqueueV3), one stream per context, CUDA events for timing,
// optional CUDA graph replay and optional two-context overlap.
// NOTE: compiled only where CMake finds TensorRT; it has never been compiled on the CPU machines edgetl's CI uses.
#include <cuda_runtime_api.h>

#include <NvInfer.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <fstream>
#include <iterator>
#include <sstream>

#include "backend.h"
#include "common.h"

namespace edgetl {

namespace {

void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// Keeps TensorRT's last error so a failed deserialisation can say why (version / GPU mismatch) in one line.
class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kERROR) last_error = msg;
  }
  std::string last_error;
};

size_t element_size(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kINT8: return 1;
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kBOOL: return 1;
    case nvinfer1::DataType::kUINT8: return 1;
    case nvinfer1::DataType::kFP8: return 1;
    case nvinfer1::DataType::kBF16: return 2;
    case nvinfer1::DataType::kINT64: return 8;
    default: throw UserError("engine uses a tensor data type edgetl_bench does not know; rebuild with FP32 I/O");
  }
}

size_t volume(const nvinfer1::Dims& d) {
  size_t n = 1;
  for (int i = 0; i < d.nbDims; ++i) n *= size_t(std::max<int64_t>(d.d[i], 0));
  return n;
}

// The exporter's record beside the engine (<engine>.json): precision and build options, which TensorRT does not
// store in a way the runtime can read. Only flat keys with string or boolean values are looked up.
std::string sidecar_text(const std::string& path) {
  std::ifstream in(path + ".json");
  return in ? std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()) : "";
}

// The text after "key": (spaces skipped), or npos.
size_t json_value_at(const std::string& text, const std::string& key) {
  const size_t at = text.find("\"" + key + "\"");
  if (at == std::string::npos) return at;
  const size_t colon = text.find(':', at);
  return colon == std::string::npos ? colon : text.find_first_not_of(" \t\r\n", colon + 1);
}

std::string sidecar_precision(const std::string& text) {
  const size_t at = json_value_at(text, "precision");
  if (at == std::string::npos || text[at] != '"') return "";
  const size_t end = text.find('"', at + 1);
  const std::string value = end == std::string::npos ? "" : text.substr(at + 1, end - at - 1);
  return value == "fp32" || value == "fp16" || value == "int8" || value == "mixed" ? value : "";
}

bool sidecar_true(const std::string& text, const std::string& key) {
  const size_t at = json_value_at(text, key);
  return at != std::string::npos && text.compare(at, 4, "true") == 0;
}

// A non-negative integer value, or -1 (absent, null or anything else).
int sidecar_int(const std::string& text, const std::string& key) {
  const size_t at = json_value_at(text, key);
  if (at == std::string::npos || !std::isdigit(static_cast<unsigned char>(text[at]))) return -1;
  return std::atoi(text.c_str() + at);
}

struct Context {
  nvinfer1::IExecutionContext* ctx = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<void*> buffers;  // one per I/O tensor, sized for the profile's max batch
  cudaGraphExec_t graph = nullptr;
};

class TrtBackend : public Backend {
 public:
  TrtBackend(const std::string& path, const BackendOptions& options) : path_(path), options_(options) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError(path + ": file not found; pass an engine built by `edgetl export --engine` or trtexec");
    const std::string blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!options.device.empty() && options.device != "cuda") {
      throw UserError(path + ": TensorRT engines run on a CUDA GPU only; use --device cuda or the .pt2/.onnx file");
    }
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
      throw UserError(path + ": no usable CUDA GPU (" +
                      (status == cudaSuccess ? std::string("none visible") : cudaGetErrorString(status)) +
                      "); TensorRT engines need the GPU they were built for");
    }
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");

    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw std::runtime_error("cannot create the TensorRT runtime");
    const std::string record = sidecar_text(path);
    // a version-compatible plan embeds its lean runtime: host code, allowed for engines edgetl recorded as such
    if (sidecar_true(record, "version_compatible")) runtime_->setEngineHostCodeAllowed(true);
    const int dla_core = sidecar_int(record, "dla_core");  // a DLA engine loads on the core it was built for
    if (dla_core >= 0) runtime_->setDLACore(dla_core);
    if (dla_core >= 0 && options.cuda_graph) {
      throw UserError(path + ": a DLA engine cannot be replayed as a CUDA graph; drop --cuda-graph");
    }
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      throw UserError(path + ": TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + "." +
                      std::to_string(NV_TENSORRT_MINOR) + " on " + prop.name +
                      " cannot load it (built with another TensorRT version or for another GPU?): " +
                      first_line(logger_.last_error) + "; rebuild it on this machine with `edgetl export --engine`");
    }
    find_io();
    // with a dynamic batch one profile serves one context at a time; a static engine's contexts share profile 0
    const bool dynamic = info_.min_batch != info_.max_batch;
    if (dynamic && options.contexts > 1 && engine_->getNbOptimizationProfiles() < options.contexts) {
      throw UserError(path + ": --contexts " + std::to_string(options.contexts) + " needs an engine with " +
                      std::to_string(options.contexts) + " optimization profiles (it has " +
                      std::to_string(engine_->getNbOptimizationProfiles()) + "); use --contexts 1");
    }
    try {  // a failure part-way frees the contexts made so far, before the engine they belong to
      for (int k = 0; k < options.contexts; ++k) contexts_.push_back(make_context(dynamic ? k : 0));
    } catch (...) {
      release();
      throw;
    }

    info_.backend = "cpp-trt";
    info_.device = "cuda";
    info_.gpu = prop.name;
    info_.timer = "cuda-events";
    info_.images_per_call = options.contexts;
    const size_t slash = path.find_last_of('/');
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    info_.model = options.model.empty() ? name.substr(0, name.find_last_of('.')) : options.model;
    const std::string recorded = sidecar_precision(record);
    info_.precision = !options.precision.empty() ? options.precision : recorded.empty() ? "unknown" : recorded;
    info_.versions = {{"edgetl_bench", EDGETL_BENCH_VERSION},
                      {"tensorrt", std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) +
                                       "." + std::to_string(NV_TENSORRT_PATCH)},
                      {"cuda_runtime", std::to_string(CUDART_VERSION)},
                      {"compute_capability", std::to_string(prop.major) + "." + std::to_string(prop.minor)},
                      {"compiler", __VERSION__}};
  }

  ~TrtBackend() override { release(); }

  const BackendInfo& info() const override { return info_; }

  void prepare(int batch) override {
    const std::vector<float> host = random_input(size_t(batch) * image_size());
    for (Context& c : contexts_) {
      set_batch(c, batch);
      if (in_type_ == nvinfer1::DataType::kFLOAT) {
        cuda_check(cudaMemcpyAsync(c.buffers[in_index_], host.data(), host.size() * sizeof(float),
                                   cudaMemcpyHostToDevice, c.stream), "copy input");
      } else {
        cuda_check(cudaMemsetAsync(c.buffers[in_index_], 0, size_t(batch) * image_size() * element_size(in_type_),
                                   c.stream), "clear input");
      }
      if (c.graph) {
        cudaGraphExecDestroy(c.graph);
        c.graph = nullptr;
      }
      if (options_.cuda_graph) capture(c);
      cuda_check(cudaStreamSynchronize(c.stream), "prepare");
    }
  }

  std::vector<double> time_calls(int n) override {
    // One start/end event pair per call on stream 0; with two contexts, stream 1's work joins stream 0's
    // end event, so a call spans both overlapped inferences. Read once after one synchronisation.
    Context& main = contexts_[0];
    while (events_.size() < size_t(2 * n + contexts_.size())) {
      cudaEvent_t e;
      cuda_check(cudaEventCreate(&e), "cudaEventCreate");
      events_.push_back(e);
    }
    for (int i = 0; i < n; ++i) {
      cuda_check(cudaEventRecord(events_[2 * i], main.stream), "cudaEventRecord");
      for (size_t k = 1; k < contexts_.size(); ++k) {
        cuda_check(cudaStreamWaitEvent(contexts_[k].stream, events_[2 * i], 0), "cudaStreamWaitEvent");
      }
      for (Context& c : contexts_) launch(c);
      for (size_t k = 1; k < contexts_.size(); ++k) {
        cudaEvent_t done = events_[2 * size_t(n) + k];
        cuda_check(cudaEventRecord(done, contexts_[k].stream), "cudaEventRecord");
        cuda_check(cudaStreamWaitEvent(main.stream, done, 0), "cudaStreamWaitEvent");
      }
      cuda_check(cudaEventRecord(events_[2 * i + 1], main.stream), "cudaEventRecord");
    }
    cuda_check(cudaStreamSynchronize(main.stream), "inference");
    std::vector<double> out(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      float ms = 0;
      cuda_check(cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]), "cudaEventElapsedTime");
      out[size_t(i)] = ms;
    }
    return out;
  }

  NpyArray run(const NpyArray& input) override {
    if (in_type_ != nvinfer1::DataType::kFLOAT || out_type_ != nvinfer1::DataType::kFLOAT) {
      throw UserError(path_ + ": --input/--output need an engine with float32 input and output");
    }
    const auto& s = info_.input_shape;
    if (input.shape.size() != 4 || input.shape[1] != s[0] || input.shape[2] != s[1] || input.shape[3] != s[2]) {
      throw UserError("--input does not fit this engine; it expects (N, " + std::to_string(s[0]) + ", " +
                      std::to_string(s[1]) + ", " + std::to_string(s[2]) + ") float32 NCHW");
    }
    const int batch = int(input.shape[0]);
    check_batch(batch);
    Context& c = contexts_[0];
    set_batch(c, batch);
    cuda_check(cudaMemcpyAsync(c.buffers[in_index_], input.data.data(), input.data.size() * sizeof(float),
                               cudaMemcpyHostToDevice, c.stream), "copy input");
    if (!c.ctx->enqueueV3(c.stream)) throw std::runtime_error("enqueueV3 failed: " + logger_.last_error);
    const nvinfer1::Dims out_dims = c.ctx->getTensorShape(names_[out_index_].c_str());
    NpyArray out;
    for (int i = 0; i < out_dims.nbDims; ++i) out.shape.push_back(out_dims.d[i]);
    out.data.resize(volume(out_dims));
    cuda_check(cudaMemcpyAsync(out.data.data(), c.buffers[out_index_], out.data.size() * sizeof(float),
                               cudaMemcpyDeviceToHost, c.stream), "copy output");
    cuda_check(cudaStreamSynchronize(c.stream), "inference");
    return out;
  }

 private:
  struct EngineDeleter {
    template <typename T>
    void operator()(T* p) const { delete p; }
  };

  // Contexts before the engine (TensorRT: a context must not outlive its engine); unchecked, never throws.
  void release() noexcept {
    for (Context& c : contexts_) release(c);
    contexts_.clear();
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    events_.clear();
  }

  static void release(Context& c) noexcept {
    if (c.stream) cudaStreamSynchronize(c.stream);
    if (c.graph) cudaGraphExecDestroy(c.graph);
    for (void* b : c.buffers) cudaFree(b);
    if (c.stream) cudaStreamDestroy(c.stream);
    delete c.ctx;
    c = Context{};
  }

  size_t image_size() const { return size_t(info_.input_shape[0] * info_.input_shape[1] * info_.input_shape[2]); }

  // The classifier has one input (N, C, H, W) and one output (N, classes).
  void find_io() {
    const int n = engine_->getNbIOTensors();
    for (int i = 0; i < n; ++i) {
      const std::string name = engine_->getIOTensorName(i);
      names_.push_back(name);
      const bool is_input = engine_->getTensorIOMode(name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
      (is_input ? in_index_ : out_index_) = i;
      (is_input ? in_type_ : out_type_) = engine_->getTensorDataType(name.c_str());
    }
    if (n != 2 || in_index_ < 0 || out_index_ < 0) {
      throw UserError(path_ + ": expected one input and one output tensor, found " + std::to_string(n) +
                      " I/O tensors; edgetl_bench times edgetl classifier engines");
    }
    const char* in = names_[in_index_].c_str();
    const nvinfer1::Dims dims = engine_->getTensorShape(in);
    if (dims.nbDims != 4) throw UserError(path_ + ": input " + names_[in_index_] + " is not 4-D NCHW");
    info_.input_shape = {dims.d[1], dims.d[2], dims.d[3]};
    if (dims.d[0] >= 0) {
      info_.min_batch = info_.max_batch = int(dims.d[0]);
    } else {
      info_.min_batch = int(engine_->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMIN).d[0]);
      info_.max_batch = int(engine_->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMAX).d[0]);
    }
  }

  Context make_context(int profile) {
    logger_.last_error.clear();  // an error message below is this context's, not an earlier one's
    Context c;
    try {
      fill_context(c, profile);
    } catch (...) {
      release(c);
      throw;
    }
    return c;
  }

  void fill_context(Context& c, int profile) {
    c.ctx = engine_->createExecutionContext();
    if (!c.ctx) throw std::runtime_error("createExecutionContext failed: " + logger_.last_error);
    cuda_check(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    if (profile > 0 && !c.ctx->setOptimizationProfileAsync(profile, c.stream)) {
      throw std::runtime_error("setOptimizationProfileAsync failed: " + logger_.last_error);
    }
    // Size every buffer for the largest batch: set the max input shape, read back each tensor's shape.
    set_shape(c, info_.max_batch);
    c.buffers.resize(names_.size(), nullptr);
    for (size_t i = 0; i < names_.size(); ++i) {
      const nvinfer1::Dims d = c.ctx->getTensorShape(names_[i].c_str());
      const size_t bytes = volume(d) * element_size(engine_->getTensorDataType(names_[i].c_str()));
      cuda_check(cudaMalloc(&c.buffers[i], std::max<size_t>(bytes, 1)), "cudaMalloc");
      if (!c.ctx->setTensorAddress(names_[i].c_str(), c.buffers[i])) {
        throw std::runtime_error("setTensorAddress failed for " + names_[i]);
      }
    }
  }

  void set_shape(Context& c, int batch) {
    logger_.last_error.clear();
    nvinfer1::Dims d = engine_->getTensorShape(names_[in_index_].c_str());
    d.d[0] = batch;
    if (!c.ctx->setInputShape(names_[in_index_].c_str(), d)) {
      throw UserError("batch " + std::to_string(batch) + " is outside the engine's optimization profile: " +
                      first_line(logger_.last_error));
    }
  }

  void set_batch(Context& c, int batch) {
    check_batch(batch);
    set_shape(c, batch);
  }

  void launch(Context& c) {
    if (c.graph) {
      cuda_check(cudaGraphLaunch(c.graph, c.stream), "cudaGraphLaunch");
    } else if (!c.ctx->enqueueV3(c.stream)) {
      throw std::runtime_error("enqueueV3 failed: " + first_line(logger_.last_error));
    }
  }

  // Capture one enqueueV3 as a CUDA graph (after one plain run, which TensorRT needs after a shape change).
  void capture(Context& c) {
    if (!c.ctx->enqueueV3(c.stream)) throw std::runtime_error("enqueueV3 failed: " + logger_.last_error);
    cuda_check(cudaStreamSynchronize(c.stream), "warm-up before graph capture");
    cudaGraph_t graph = nullptr;
    cuda_check(cudaStreamBeginCapture(c.stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    const bool ok = c.ctx->enqueueV3(c.stream);
    const cudaError_t end = cudaStreamEndCapture(c.stream, &graph);
    if (!ok || end != cudaSuccess || !graph) {
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw UserError(path_ + ": this engine cannot be captured as a CUDA graph (" + first_line(logger_.last_error) +
                      "); drop --cuda-graph");
    }
    const cudaError_t inst = cudaGraphInstantiateWithFlags(&c.graph, graph, 0);
    cudaGraphDestroy(graph);
    cuda_check(inst, "cudaGraphInstantiate");
  }

  std::string path_;
  BackendOptions options_;
  BackendInfo info_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime, EngineDeleter> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine, EngineDeleter> engine_;
  std::vector<std::string> names_;
  int in_index_ = -1, out_index_ = -1;
  nvinfer1::DataType in_type_ = nvinfer1::DataType::kFLOAT, out_type_ = nvinfer1::DataType::kFLOAT;
  std::vector<Context> contexts_;
  std::vector<cudaEvent_t> events_;
};

}  // namespace

std::unique_ptr<Backend> make_trt_backend(const std::string& path, const BackendOptions& options) {
  return std::make_unique<TrtBackend>(path, options);
}

}  // namespace edgetl
