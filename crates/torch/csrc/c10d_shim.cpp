// A thin C API over PyTorch's c10d (the communication layer of torch.distributed), for
// oto's data-parallel training (crates/torch/src/dist.rs). Compiled by build.rs against
// the same libtorch headers as tch; tensors cross the boundary as tch's `at::Tensor*`.
//
// Every entry point catches C++ exceptions and returns them as a malloc'd message (freed
// with oto_c10d_free_error), without c10's backtrace: nothing here may abort the process.
//
// Gloo (CPU tensors) is always built; NCCL (CUDA tensors) only with OTO_C10D_NCCL, which
// build.rs defines when the CUDA and NCCL headers are there and a CUDA build is wanted.

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#ifdef OTO_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  int rank;
  int world;
};

char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

// Runs `body`, turning any exception into *error (and a non-zero return).
template <typename F>
int guarded(char** error, const char* what, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    *error = copy_message(std::string(what) + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    *error = copy_message(std::string(what) + ": " + e.what());
  } catch (...) {
    *error = copy_message(std::string(what) + ": unknown C++ exception");
  }
  return 1;
}

void wait_all(const Group& g, std::vector<c10::intrusive_ptr<c10d::Work>>& works) {
  for (auto& work : works) {
    if (!work->wait(g.timeout)) {
      throw std::runtime_error("the collective was aborted");
    }
  }
}

// Splits `tensors` into runs of the same dtype and device of at most `bucket_bytes`
// bytes each (a tensor larger than that is a bucket of its own).
std::vector<std::vector<size_t>> buckets(const std::vector<at::Tensor>& tensors, size_t bucket_bytes) {
  std::vector<std::vector<size_t>> out;
  size_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    size_t size = t.numel() * t.element_size();
    bool fresh = out.empty() || bytes + size > bucket_bytes;
    if (!fresh) {
      const auto& first = tensors[out.back().front()];
      fresh = first.scalar_type() != t.scalar_type() || first.device() != t.device();
    }
    if (fresh) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(i);
    bytes += size;
  }
  return out;
}

std::vector<at::Tensor> gather(at::Tensor* const* tensors, size_t count) {
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    if (tensors[i] == nullptr || !tensors[i]->defined()) {
      throw std::runtime_error("tensor " + std::to_string(i) + " is undefined");
    }
    out.push_back(*tensors[i]);
  }
  return out;
}

void all_reduce_sum(const Group& g, at::Tensor& t) {
  c10d::AllreduceOptions opts;
  opts.timeout = g.timeout;
  std::vector<at::Tensor> one{t};
  std::vector<c10::intrusive_ptr<c10d::Work>> works{g.backend->allreduce(one, opts)};
  wait_all(g, works);
}

// A differentiable sum over the ranks (torch.distributed.nn's all_reduce): the gradient of
// every rank's input is the sum of the ranks' output gradients. Synchronized BatchNorm
// sums its statistics through it, so its backward pass is exact.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t handle) {
    ctx->saved_data["group"] = handle;
    auto y = x.contiguous().clone();
    all_reduce_sum(*reinterpret_cast<Group*>(handle), y);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto handle = ctx->saved_data["group"].toInt();
    auto g = grads[0].contiguous().clone();
    all_reduce_sum(*reinterpret_cast<Group*>(handle), g);
    return {g, at::Tensor()};
  }
};

}  // namespace

extern "C" {

// Whether this build has the NCCL backend.
int oto_c10d_has_nccl() {
#ifdef OTO_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

void oto_c10d_free_error(char* error) { std::free(error); }

// Joins the group: rank 0 runs the TCPStore server on `port` (unless `server` is 0: a
// launcher's agent already serves that store, as torchrun's does), every rank connects to
// `addr:port`; the group's keys live under `prefix`; then a Gloo (or, with `nccl`, an NCCL
// on CUDA device `device`) process group of `world` ranks. `timeout_ms` bounds the
// rendezvous and every collective.
void* oto_c10d_init(const char* addr, int port, int rank, int world, int server, const char* prefix, int timeout_ms,
                    int nccl, int device, char** error) {
  Group* group = nullptr;
  guarded(error, "joining the process group", [&] {
    if (rank < 0 || world < 1 || rank >= world) {
      throw std::runtime_error("rank " + std::to_string(rank) + " is not in a group of " + std::to_string(world));
    }
    if (port <= 0 || port > 65535) {
      throw std::runtime_error("port " + std::to_string(port) + " is out of range");
    }
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = rank == 0 && server != 0;
    opts.numWorkers = world;
    opts.waitWorkers = true;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(addr), opts);
    auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    c10::intrusive_ptr<c10d::Backend> backend;
    if (nccl != 0) {
#ifdef OTO_C10D_NCCL
      // One GPU per process: NCCL's communicator lives on this process's device.
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
      auto nopts = c10d::ProcessGroupNCCL::Options::create();
      nopts->timeout = timeout;
      backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, nopts);
#else
      (void)device;
      throw std::runtime_error("this oto was built without NCCL (see `make gpu-check` in the README)");
#endif
    } else {
      auto gopts = c10d::ProcessGroupGloo::Options::create(timeout);
      // Bind to the address that reaches the master: loopback for local runs,
      // the interface that routes there on a cluster.
      std::string host(addr);
      bool local = host == "127.0.0.1" || host == "localhost" || host == "::1";
      gopts->devices.push_back(local ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                     : c10d::ProcessGroupGloo::createDefaultDevice());
      backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gopts);
    }
    group = new Group{tcp, backend, timeout, rank, world};
  });
  return group;
}

// Broadcasts `tensors` (in place) from `root`.
int oto_c10d_broadcast(void* handle, at::Tensor* const* tensors, size_t count, int root, char** error) {
  return guarded(error, "broadcast", [&] {
    auto& g = *static_cast<Group*>(handle);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    auto all = gather(tensors, count);
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = g.timeout;
    for (auto& t : all) {
      std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
      works.push_back(g.backend->broadcast(one, opts));
      wait_all(g, works);
      works.clear();
      if (!one[0].is_same(t)) {
        t.copy_(one[0]);
      }
    }
  });
}

// Sums (`op` 0) or takes the maximum (`op` 1) of `tensors` over the ranks, in place,
// through flat buckets of at most `bucket_bytes` that are all in flight together;
// `scale` multiplies the result (1/world for a mean).
int oto_c10d_all_reduce(void* handle, at::Tensor* const* tensors, size_t count, int op, double scale,
                        size_t bucket_bytes, char** error) {
  return guarded(error, "all-reduce", [&] {
    auto& g = *static_cast<Group*>(handle);
    auto all = gather(tensors, count);
    c10d::AllreduceOptions opts;
    opts.reduceOp = op == 1 ? c10d::ReduceOp(c10d::ReduceOp::MAX) : c10d::ReduceOp(c10d::ReduceOp::SUM);
    opts.timeout = g.timeout;
    auto plan = buckets(all, bucket_bytes);
    std::vector<at::Tensor> flats;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (const auto& bucket : plan) {
      std::vector<at::Tensor> parts;
      for (size_t i : bucket) {
        parts.push_back(all[i].reshape({-1}));
      }
      std::vector<at::Tensor> flat{parts.size() == 1 ? parts[0].contiguous().clone() : at::cat(parts)};
      works.push_back(g.backend->allreduce(flat, opts));
      flats.push_back(flat[0]);
    }
    wait_all(g, works);
    for (size_t b = 0; b < plan.size(); ++b) {
      auto& flat = flats[b];
      if (scale != 1.0) {
        flat.mul_(scale);
      }
      int64_t offset = 0;
      for (size_t i : plan[b]) {
        auto& t = all[i];
        int64_t n = t.numel();
        t.copy_(flat.narrow(0, offset, n).view(t.sizes()));
        offset += n;
      }
    }
  });
}

// The sum of `x` over the ranks as a new tensor (*out, owned by the caller as tch owns
// its tensors), differentiable: see AllReduceSum.
int oto_c10d_all_reduce_autograd(void* handle, const at::Tensor* x, at::Tensor** out, char** error) {
  return guarded(error, "differentiable all-reduce", [&] {
    if (x == nullptr || !x->defined()) {
      throw std::runtime_error("the tensor is undefined");
    }
    auto y = AllReduceSum::apply(*x, reinterpret_cast<int64_t>(handle));
    *out = new at::Tensor(std::move(y));
  });
}

// Waits until every rank reached the barrier.
int oto_c10d_barrier(void* handle, char** error) {
  return guarded(error, "barrier", [&] {
    auto& g = *static_cast<Group*>(handle);
    c10d::BarrierOptions opts;
    opts.timeout = g.timeout;
    auto work = g.backend->barrier(opts);
    if (!work->wait(g.timeout)) {
      throw std::runtime_error("the barrier was aborted");
    }
  });
}

// Leaves the group and frees it (a failing shutdown is ignored: the process is leaving).
void oto_c10d_shutdown(void* handle) {
  auto* g = static_cast<Group*>(handle);
  if (g == nullptr) {
    return;
  }
  try {
    g->backend->shutdown();
  } catch (...) {
  }
  try {
    delete g;
  } catch (...) {
  }
}

}  // extern "C"
