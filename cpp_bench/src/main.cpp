// edgetl_bench: time a deployed artifact without Python in the loop; report in edgetl.bench/1 JSON.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "backend.h"
#include "bench.h"
#include "common.h"
#include "npy.h"
#include "report.h"

namespace edgetl {
namespace {

const char kUsage[] =
    "usage: edgetl_bench ARTIFACT [--batch 1,8,32] [--warmup N] [--iters N | --duration S]\n"
    "                    [--device cpu|cuda] [--cuda-graph] [--contexts 1|2] [--threads N]\n"
    "                    [--json FILE] [--input X.npy --output Y.npy] [--precision P] [--model NAME] [--save-times] [--quiet]\n"
    "\n"
    "ARTIFACT      model.pt2 (AOTInductor package) or a TensorRT engine (.engine/.plan/.trt)\n"
    "--batch       batch sizes to time, within the artifact's batch range (default 1)\n"
    "--warmup      warm-up calls per batch size, at least 1 (default: at least 5 calls and 0.5 s)\n"
    "--iters       timed calls per batch size; --duration: timed seconds (default: >= 100 calls and 2 s)\n"
    "--device      cpu or cuda (default: the device the artifact was built for)\n"
    "--cuda-graph  TensorRT: replay each batch as a CUDA graph\n"
    "--contexts    TensorRT: 2 execution contexts on 2 streams, overlapped (throughput counts both)\n"
    "--threads     CPU intra-op threads for .pt2 packages (default: LibTorch's, one per core)\n"
    "--json        write the edgetl.bench/1 report (merge with `edgetl bench --merge FILE...`)\n"
    "--input/--output  run one float32 NCHW batch from X.npy and write the logits to Y.npy (no timing)\n"
    "--precision, --model  labels for the report when the artifact does not record them\n"
    "--save-times  add every per-call time (times_ms) to the JSON\n";

struct Args {
  std::string artifact;
  BenchConfig bench;
  BackendOptions backend;
  std::string json, input, output;
  bool save_times = false, quiet = false;
};

int parse_positive(const std::string& text, const std::string& flag) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(text) < 1) {
    throw UserError(flag + " " + text + ": expected one positive integer (at most 999999999)");
  }
  return std::stoi(text);
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UserError(arg + " needs a value; see edgetl_bench --help");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--version") {
      std::cout << "edgetl_bench " << EDGETL_BENCH_VERSION << "\n";
      std::exit(0);
    } else if (arg == "--batch") {
      a.bench.batches = parse_int_list(value(), arg);
    } else if (arg == "--warmup" || arg == "--warmup-iters") {  // --warmup-iters: edgetl bench's name
      const std::string v = value();
      a.bench.warmup_iters = v == "0" ? 0 : parse_positive(v, arg);
    } else if (arg == "--iters") {
      a.bench.iters = parse_positive(value(), arg);
    } else if (arg == "--duration") {
      const std::string v = value();
      char* end = nullptr;
      const double s = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !(s > 0)) throw UserError("--duration " + v + ": expected seconds > 0");
      a.bench.duration_s = s;
    } else if (arg == "--device") {
      a.backend.device = value();
      if (a.backend.device != "cpu" && a.backend.device != "cuda") {
        throw UserError("--device " + a.backend.device + ": choose cpu or cuda");
      }
    } else if (arg == "--cuda-graph") {
      a.backend.cuda_graph = true;
    } else if (arg == "--contexts") {
      a.backend.contexts = parse_positive(value(), arg);
      if (a.backend.contexts > 2) throw UserError("--contexts " + std::to_string(a.backend.contexts) + ": choose 1 or 2");
    } else if (arg == "--threads") {
      a.backend.threads = parse_positive(value(), arg);
    } else if (arg == "--json") {
      a.json = value();
    } else if (arg == "--input") {
      a.input = value();
    } else if (arg == "--output") {
      a.output = value();
    } else if (arg == "--precision") {
      a.backend.precision = value();
      const std::string& p = a.backend.precision;
      if (p != "fp32" && p != "fp16" && p != "int8" && p != "mixed") {
        throw UserError("--precision " + p + ": choose fp32, fp16, int8 or mixed");
      }
    } else if (arg == "--model") {
      a.backend.model = value();
    } else if (arg == "--save-times") {
      a.save_times = true;
    } else if (arg == "--quiet") {
      a.quiet = true;
    } else if (!arg.empty() && arg[0] == '-') {
      throw UserError("unknown option " + arg + "; see edgetl_bench --help");
    } else if (a.artifact.empty()) {
      a.artifact = arg;
    } else {
      throw UserError("unexpected argument " + arg + "; pass one ARTIFACT");
    }
  }
  if (a.artifact.empty()) throw UserError("no ARTIFACT given; usage: edgetl_bench model.pt2 [--batch 1,8] ...");
  if (a.input.empty() != a.output.empty()) throw UserError("--input and --output go together; pass both");
  return a;
}

int run(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  std::unique_ptr<Backend> backend = backend_for(args.artifact, args.backend);
  if (!args.input.empty()) {
    const NpyArray input = read_npy(args.input);
    write_npy(args.output, backend->run(input));
    if (!args.quiet) std::cout << "wrote " << args.output << "\n";
    return 0;
  }
  const auto results = run_benchmark(*backend, args.bench);
  if (!args.quiet) std::cout << summary_table(backend->info(), results);
  if (!args.json.empty()) {
    write_text_file(args.json, bench_json(backend->info(), args.artifact, results, args.save_times));
    if (!args.quiet) std::cout << "wrote " << args.json << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace edgetl

int main(int argc, char** argv) {
  try {
    return edgetl::run(argc, argv);
  } catch (const edgetl::UserError& e) {
    std::cerr << "error: " << edgetl::first_line(e.what()) << "\n";
    return 2;
  } catch (const std::exception& e) {  // c10::Error and TensorRT / CUDA failures land here
    std::cerr << "error: " << edgetl::first_line(e.what()) << "\n";
    return 1;
  } catch (...) {
    std::cerr << "error: unknown failure\n";
    return 1;
  }
}
