// aoti backend: an AOTInductor package (.pt2) run through LibTorch's AOTIModelPackageLoader.
// The only translation unit that includes torch headers, so rebuilding the rest stays fast.
#include <dlfcn.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "backend.h"
#include "common.h"

namespace edgetl {

namespace {

using Metadata = std::unordered_map<std::string, std::string>;

std::string meta_or(const Metadata& meta, const std::string& key, const std::string& fallback) {
  auto it = meta.find(key);
  return it == meta.end() || it->second.empty() ? fallback : it->second;
}

int meta_int(const Metadata& meta, const std::string& key, int fallback, const std::string& path) {
  const std::string text = meta_or(meta, key, "");
  if (text.empty()) return fallback;
  try {
    return std::stoi(text);
  } catch (const std::exception&) {
    throw UserError(path + ": package metadata " + key + "=" + text + " is not an integer; re-export it");
  }
}

std::vector<int64_t> meta_shape(const Metadata& meta, const std::string& path) {
  const std::string text = meta_or(meta, "edgetl.input_shape", "");
  std::vector<int64_t> shape;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) shape.push_back(std::stoll(item));
  if (shape.size() != 3) {
    throw UserError(path + ": no edgetl metadata (edgetl.input_shape) in this package; export it with "
                    "`edgetl export --aoti` (edgetl.export.aoti.pt2_from_model)");
  }
  return shape;
}

std::string stem(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return name.substr(0, name.find_last_of('.'));
}

// GPU name through the CUDA runtime torch already loaded (no CUDA headers needed to build).
std::string cuda_device_name() {
  using GetProps = int (*)(void*, int);
  for (const char* symbol : {"cudaGetDeviceProperties_v2", "cudaGetDeviceProperties"}) {
    if (auto fn = reinterpret_cast<GetProps>(dlsym(RTLD_DEFAULT, symbol))) {
      std::vector<char> props(8192, 0);  // cudaDeviceProp starts with char name[256]
      if (fn(props.data(), 0) == 0) return std::string(props.data(), strnlen(props.data(), 256));
    }
  }
  return "CUDA GPU";
}

class AotiBackend : public Backend {
 public:
  AotiBackend(const std::string& path, const BackendOptions& options) : path_(path) {
    if (!std::ifstream(path).good()) {
      throw UserError(path + ": file not found; pass the model.pt2 written by `edgetl export --aoti`");
    }
    Metadata meta;
    try {
      meta = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
    } catch (const std::exception& e) {
      throw UserError(path + ": not a readable AOTInductor package (" + first_line(e.what()) +
                      "); re-export it with `edgetl export --aoti`");
    }
    const std::string built_for = meta_or(meta, "AOTI_DEVICE_KEY", "cpu");
    const std::string device = options.device.empty() ? built_for : options.device;
    if (device != "cpu" && device != "cuda") throw UserError("--device " + device + ": choose cpu or cuda");
    if (device != built_for) {
      throw UserError(path + ": package was compiled for " + built_for + ", not " + device + "; use --device " +
                      built_for + " or re-export with `edgetl export --aoti` on a " + device + " machine");
    }
    const std::string missing = device == "cpu" ? missing_cpu_features(meta_or(meta, "edgetl.cpu_features", "")) : "";
    if (!missing.empty()) {  // its code would hit an illegal instruction: refuse before loading it
      throw UserError(path + ": compiled for a CPU with " + missing + ", which this CPU lacks (AOTInductor compiles "
                      "for the exporting CPU); re-export it with `edgetl export --aoti` on this machine");
    }
    if (device == "cuda" && !torch::cuda::is_available()) {
      throw UserError(path + ": --device cuda but no CUDA GPU is visible to LibTorch; run it on the GPU machine");
    }
    if (options.cuda_graph) throw UserError("--cuda-graph applies to TensorRT engines only; drop it for .pt2 files");
    if (options.contexts != 1) throw UserError("--contexts applies to TensorRT engines only; drop it for .pt2 files");

    if (options.threads > 0) at::set_num_threads(options.threads);

    info_.backend = "cpp-aoti";
    info_.device = device;
    info_.model = options.model.empty() ? meta_or(meta, "edgetl.arch", stem(path)) : options.model;
    info_.precision = options.precision.empty() ? meta_or(meta, "edgetl.precision", "fp32") : options.precision;
    info_.input_shape = meta_shape(meta, path);
    info_.min_batch = meta_int(meta, "edgetl.min_batch", 1, path);
    info_.max_batch = meta_int(meta, "edgetl.max_batch", 1, path);
    info_.timer = device == "cuda" ? "steady_clock+cuda-sync" : "steady_clock";
    info_.gpu = device == "cuda" ? cuda_device_name() : "";
    info_.versions = {{"edgetl_bench", EDGETL_BENCH_VERSION}, {"libtorch", TORCH_VERSION},
                      {"compiler", __VERSION__}, {"threads", std::to_string(at::get_num_threads())}};
    device_ = device == "cuda" ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
    loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model", false, 1,
                                                                        device == "cuda" ? 0 : -1);
  }

  const BackendInfo& info() const override { return info_; }

  void prepare(int batch) override {
    input_ = host_tensor(random_input(size_t(batch) * image_size()).data(), batch).to(device_);
  }

  std::vector<double> time_calls(int n) override {
    c10::InferenceMode guard;
    std::vector<double> out;
    out.reserve(size_t(n));
    for (int i = 0; i < n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto outputs = loader_->run({input_});
      if (device_.is_cuda()) torch::cuda::synchronize();
      out.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return out;
  }

  NpyArray run(const NpyArray& input) override {
    const auto& s = info_.input_shape;
    if (input.shape.size() != 4 || input.shape[1] != s[0] || input.shape[2] != s[1] || input.shape[3] != s[2]) {
      std::string got;
      for (int64_t d : input.shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
      throw UserError("--input of shape (" + got + ") does not fit this model; it expects (N, " +
                      std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " + std::to_string(s[2]) +
                      ") float32 NCHW");
    }
    check_batch(int(input.shape[0]));
    c10::InferenceMode guard;
    at::Tensor x = host_tensor(input.data.data(), int(input.shape[0])).to(device_);
    at::Tensor y = loader_->run({x}).at(0).to(c10::kCPU, c10::kFloat).contiguous();
    NpyArray out;
    out.shape.assign(y.sizes().begin(), y.sizes().end());
    out.data.assign(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
    return out;
  }

 private:
  size_t image_size() const { return size_t(info_.input_shape[0] * info_.input_shape[1] * info_.input_shape[2]); }

  at::Tensor host_tensor(const float* data, int batch) const {
    const auto& s = info_.input_shape;
    at::Tensor t = at::empty({batch, s[0], s[1], s[2]}, at::TensorOptions().dtype(at::kFloat));
    std::memcpy(t.data_ptr<float>(), data, size_t(batch) * image_size() * sizeof(float));
    return t;
  }

  std::string path_;
  BackendInfo info_;
  c10::Device device_{c10::kCPU};
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  at::Tensor input_;
};

}  // namespace

std::unique_ptr<Backend> make_aoti_backend(const std::string& path, const BackendOptions& options) {
  return std::make_unique<AotiBackend>(path, options);
}

}  // namespace edgetl
