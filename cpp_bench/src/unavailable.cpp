// Stand-ins for backends CMake could not build, so the artifact gets a one-line error, not a link failure.
#include "backend.h"
#include "common.h"

namespace edgetl {

#ifndef EDGETL_WITH_TRT
std::unique_ptr<Backend> make_trt_backend(const std::string& path, const BackendOptions&) {
  throw UserError(path + ": this edgetl_bench was built without the trt backend (CMake found no TensorRT); "
                  "rebuild with -DTENSORRT_ROOT=/path/to/TensorRT");
}
#endif

#ifndef EDGETL_WITH_AOTI
std::unique_ptr<Backend> make_aoti_backend(const std::string& path, const BackendOptions&) {
  throw UserError(path + ": this edgetl_bench was built without the aoti backend (CMake found no LibTorch); "
                  "rebuild with -DCMAKE_PREFIX_PATH=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')");
}
#endif

}  // namespace edgetl
