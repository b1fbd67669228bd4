// Micro-benchmark of the GPU cache's all-hit lookup, next to its roof and a plain gather, and of the
// dynamic cache's hit rate against an exact LRU cache.
//
// For each row size D, a table of ~1 GiB of fp32 rows (20x the H100's L2) is loaded into a
// static cache and a dynamic cache of capacity = rows (as gpucacheper 1.0 does; the warm start's
// evictions, relocations and device bytes per row are printed); lookups draw DISTINCT batches
// (8 rotating batches of keys drawn uniformly from the keys known to be cached), so neither keys
// nor rows sit in L2.
// Printed per (kind, B, D): time per call, keys/s, and % of the HBM bound
//   B x (8 + 8D) bytes / (device-to-device copy bandwidth measured in the same run).
// Baseline: a plain gather (one thread per float4, int64 row ids) over the same table size.
// Static calls are timed back to back with events (no host synchronisation in the call);
// dynamic calls include their one host synchronisation (the miss-count read), timed on the host.
//
// Hit rates: 2,000,000 keys, Zipf(1.05) batches of 262,144 and 1,048,576 keys, dynamic caches of
// 20% and 5% of the keys (insertions synchronous), 6 warm-up and 6 measured calls; the same keys
// go one by one through an exact LRU cache of the same capacity on the host.
//
// The dynamic all-hit cells are also timed as the probe kernel alone ("dynamic probe kernel": launched
// back to back, timed with events, as the static calls are): the call without its host side.
//
// Usage: gpu_cache_kernels [--quick] [--sweep] [--no-hit-rates] [--dims 64,128] [--sizes 262144,1048576]
//   --quick  only B = 26,624 and 1,048,576;  --sweep  also the kernel-shape variants at the largest B
//   (lanes per key x row chunks per lane, "strict" fence-ordered seqlock reads; the dynamic ones
//   on the probe kernel alone, each checked to return the default shape's rows);
//   --dims, --sizes  only these row sizes and batch sizes (comma-separated), e.g. for a profiler run.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "exact_lru.hpp"
#include "gpu/cuda_check.hpp"
#include "gpu/device_primitives.cuh"
#include "gpu/dynamic_gpu_cache.hpp"
#include "gpu/gpu_cache_base.hpp"
#include "gpu/probe_dispatch.cuh"
#include "hps/gpu/gpu_cache.hpp"

namespace {

struct Device {
  void* ptr = nullptr;
  explicit Device(std::size_t bytes) { HPS_CUDA_CHECK(cudaMalloc(&ptr, bytes)); }
  ~Device() { cudaFree(ptr); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

double copy_bandwidth(cudaStream_t stream) {
  const std::size_t bytes = std::size_t{1} << 30;
  Device a(bytes), b(bytes);
  HPS_CUDA_CHECK(cudaMemsetAsync(a.ptr, 1, bytes, stream));
  cudaEvent_t start, stop;
  HPS_CUDA_CHECK(cudaEventCreate(&start));
  HPS_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 2; ++i) HPS_CUDA_CHECK(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice, stream));
  const int reps = 10;
  HPS_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < reps; ++i) HPS_CUDA_CHECK(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice, stream));
  HPS_CUDA_CHECK(cudaEventRecord(stop, stream));
  HPS_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  HPS_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * static_cast<double>(bytes) * reps / (ms * 1e-3);  // read + write
}

__global__ void gather_kernel(const float4* __restrict__ table, const std::int64_t* __restrict__ ids, std::size_t n,
                              std::uint32_t vectors_per_row, float4* __restrict__ out) {
  const std::size_t total = n * vectors_per_row;
  for (std::size_t t = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t i = t / vectors_per_row;
    const std::uint32_t c = static_cast<std::uint32_t>(t - i * vectors_per_row);
    out[t] = table[static_cast<std::size_t>(ids[i]) * vectors_per_row + c];
  }
}

struct Row {
  std::string kind;
  std::size_t batch = 0;
  std::size_t dim = 0;
  double seconds = 0;  // per call
  double bound_fraction = 0;
};

std::vector<Row> results;

void report(const std::string& kind, std::size_t batch, std::size_t dim, double seconds, double bandwidth) {
  const double bytes = static_cast<double>(batch) * (8.0 + 8.0 * static_cast<double>(dim));
  const double bound = bytes / bandwidth;
  results.push_back({kind, batch, dim, seconds, bound / seconds});
  std::printf("%-28s B=%8zu D=%4zu  %9.2f us/call  %8.3f G keys/s  %5.1f%% of HBM bound\n", kind.c_str(), batch, dim,
              seconds * 1e6, static_cast<double>(batch) / seconds / 1e9, 100.0 * bound / seconds);
  std::fflush(stdout);
}

constexpr int kRotation = 8;  // distinct batches per size

/// kRotation device batches of `batch` keys drawn uniformly from `pool`.
std::vector<std::unique_ptr<Device>> make_batches(const std::vector<std::int64_t>& pool, std::size_t batch,
                                                  std::mt19937_64& rng) {
  std::vector<std::unique_ptr<Device>> batches;
  std::uniform_int_distribution<std::size_t> pick(0, pool.size() - 1);
  std::vector<std::int64_t> keys(batch);
  for (int r = 0; r < kRotation; ++r) {
    for (auto& k : keys) k = pool[pick(rng)];
    batches.push_back(std::make_unique<Device>(batch * sizeof(std::int64_t)));
    HPS_CUDA_CHECK(cudaMemcpy(batches.back()->ptr, keys.data(), batch * sizeof(std::int64_t), cudaMemcpyHostToDevice));
  }
  // A pageable cudaMemcpy may return before its copy lands, and the (non-blocking) benchmark
  // stream does not wait for the legacy default stream.
  HPS_CUDA_CHECK(cudaDeviceSynchronize());
  return batches;
}

/// Kernel shapes compared by --sweep for fp32 rows of `dim`: the default, the default with
/// fence-ordered reads, and the other splits of the same registers
/// (twice the lanes with half the chunks per lane, and the reverse).
std::vector<std::pair<std::string, hps::cuda::ProbeShape>> shape_variants(std::size_t dim, bool dynamic) {
  alignas(16) static float aligned = 0;
  const auto d = dynamic ? hps::cuda::resolve_dynamic_probe_shape(static_cast<std::uint32_t>(dim), 4, &aligned, {})
                         : hps::cuda::resolve_probe_shape(static_cast<std::uint32_t>(dim), 4, &aligned, {});
  auto name = [](int lanes, int chunks) { return std::to_string(lanes) + " lanes x " + std::to_string(chunks) + " chunks"; };
  std::vector<std::pair<std::string, hps::cuda::ProbeShape>> shapes = {
      {name(d.lanes, d.chunks) + " (default)", {d.lanes, d.chunks, 1, false}},
      {name(d.lanes, d.chunks) + " strict", {d.lanes, d.chunks, 1, true}}};
  if (d.chunks > 1 && d.lanes < 32) shapes.push_back({name(d.lanes * 2, d.chunks / 2), {d.lanes * 2, d.chunks / 2, 1, false}});
  if (d.chunks < 4 && d.lanes > 1) shapes.push_back({name(d.lanes / 2, d.chunks * 2), {d.lanes / 2, d.chunks * 2, 1, false}});
  return shapes;
}

int calls_for(std::size_t batch) { return static_cast<int>(std::clamp<std::size_t>((std::size_t{64} << 20) / batch, 40, 2000)); }

/// Static cache or plain gather: back-to-back calls timed with events.
template <typename Call>
double time_on_stream(cudaStream_t stream, std::size_t batch, Call&& call) {
  const int calls = calls_for(batch);
  for (int i = 0; i < kRotation; ++i) call(i);
  cudaEvent_t start, stop;
  HPS_CUDA_CHECK(cudaEventCreate(&start));
  HPS_CUDA_CHECK(cudaEventCreate(&stop));
  HPS_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < calls; ++i) call(i % kRotation);
  HPS_CUDA_CHECK(cudaEventRecord(stop, stream));
  HPS_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  HPS_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms * 1e-3 / calls;
}

/// Dynamic cache: each call synchronises inside; timed on the host, median of 5 rounds.
template <typename Call>
double time_on_host(std::size_t batch, Call&& call) {
  const int calls = std::max(10, calls_for(batch) / 5);
  for (int i = 0; i < kRotation; ++i) call(i);
  std::vector<double> rounds;
  for (int round = 0; round < 5; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) call(i % kRotation);
    rounds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / calls);
  }
  std::sort(rounds.begin(), rounds.end());
  return rounds[2];
}

void run_dim(std::size_t dim, const std::vector<std::size_t>& batches, bool sweep, double bandwidth,
             cudaStream_t stream) {
  const std::size_t rows = (std::size_t{1} << 30) / (dim * sizeof(float));
  std::printf("\n-- D = %zu: table of %zu rows (%.2f GiB fp32)\n", dim, rows,
              static_cast<double>(rows * dim * 4) / (1 << 30));
  std::vector<std::int64_t> keys(rows);
  for (std::size_t i = 0; i < rows; ++i) keys[i] = static_cast<std::int64_t>(hps::murmur3_fmix64(static_cast<std::int64_t>(i + 1)));
  std::vector<float> values(rows * dim);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 1000003);
  std::mt19937_64 rng(dim);
  const std::size_t max_batch = *std::max_element(batches.begin(), batches.end());
  Device out(max_batch * dim * sizeof(float));
  auto no_resolve = [](const std::int64_t*, std::size_t, float*, std::uint8_t*) {};

  {  // plain gather baseline
    Device table(rows * dim * sizeof(float));
    HPS_CUDA_CHECK(cudaMemcpy(table.ptr, values.data(), rows * dim * sizeof(float), cudaMemcpyHostToDevice));
    HPS_CUDA_CHECK(cudaDeviceSynchronize());  // landed before kernels on the non-blocking stream read it
    std::vector<std::int64_t> ids(rows);
    for (std::size_t i = 0; i < rows; ++i) ids[i] = static_cast<std::int64_t>(i);
    for (const std::size_t b : batches) {
      auto ids_batches = make_batches(ids, b, rng);
      const auto vectors = static_cast<std::uint32_t>(dim / 4);
      const double t = time_on_stream(stream, b, [&](int r) {
        const std::size_t total = b * vectors;
        const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>((total + 255) / 256, 132 * 16));
        gather_kernel<<<blocks, 256, 0, stream>>>(table.as<float4>(), ids_batches[r]->as<std::int64_t>(), b, vectors,
                                                  out.as<float4>());
      });
      HPS_CUDA_CHECK(cudaGetLastError());
      report("plain gather", b, dim, t, bandwidth);
    }
  }

  {  // static cache
    hps::GpuCacheOptions options;
    options.dim = dim;
    options.capacity = rows;
    options.is_static = true;
    auto cache = hps::GpuCache::create(options);
    const auto start = std::chrono::steady_clock::now();
    cache->insert(keys.data(), values.data(), rows);
    std::printf("static insert of %zu rows: %.3f s; device bytes %.2f GiB\n", rows,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                static_cast<double>(cache->memory_bytes()) / (1 << 30));
    auto* base = dynamic_cast<hps::cuda::GpuCacheBase*>(cache.get());
    for (const std::size_t b : batches) {
      auto key_batches = make_batches(keys, b, rng);
      const double t = time_on_stream(stream, b, [&](int r) {
        cache->lookup(key_batches[r]->ptr, hps::KeyDtype::kInt64, true, b, out.as<float>(), hps::StreamView::cuda(stream), no_resolve, {});
      });
      report("static", b, dim, t, bandwidth);
      if (sweep && b == max_batch) {
        for (const auto& [label, shape] : shape_variants(dim, false)) {
          base->set_probe_shape(shape);
          const double tk = time_on_stream(stream, b, [&](int r) {
            cache->lookup(key_batches[r]->ptr, hps::KeyDtype::kInt64, true, b, out.as<float>(), hps::StreamView::cuda(stream), no_resolve, {});
          });
          report("static " + label, b, dim, tk, bandwidth);
        }
        base->set_probe_shape({});
      }
    }
  }

  {  // dynamic cache of capacity = rows (gpucacheper 1.0); batches only draw keys it really holds
    hps::GpuCacheOptions options;
    options.dim = dim;
    options.capacity = rows;
    auto cache = hps::GpuCache::create(options);
    const auto start = std::chrono::steady_clock::now();
    cache->insert(keys.data(), values.data(), rows);
    const double insert_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    auto* dynamic = dynamic_cast<hps::cuda::DynamicGpuCache*>(cache.get());
    const hps::cuda::DynamicCounters counters = dynamic->counters();
    std::printf("dynamic insert of %zu rows at capacity = rows: %.3f s; size %zu of capacity %zu in %llu slots; "
                "%llu relocated, %llu evicted by overflow; device bytes %.2f GiB, table %.1f B per row (row %zu B + "
                "key 8 B; target <= 1.15x)\n",
                rows, insert_s, cache->size(), cache->capacity(), static_cast<unsigned long long>(dynamic->slots()),
                counters.relocated, counters.overflowed, static_cast<double>(cache->memory_bytes()) / (1 << 30),
                static_cast<double>(cache->table_bytes()) / static_cast<double>(rows), dim * sizeof(float));
    // Keys evicted by set overflow (expected: none) answer through the resolver: collect them, leave them out.
    std::unordered_set<std::int64_t> evicted;
    auto collect = [&](const std::int64_t* k, std::size_t n, float*, std::uint8_t* found) {
      for (std::size_t i = 0; i < n; ++i) {
        evicted.insert(k[i]);
        found[i] = 0;
      }
    };
    {
      const std::size_t chunk = std::min<std::size_t>(rows, 1 << 20);
      Device d_keys(chunk * sizeof(std::int64_t));
      Device d_out(chunk * dim * sizeof(float));
      for (std::size_t begin = 0; begin < rows; begin += chunk) {
        const std::size_t n = std::min(chunk, rows - begin);
        HPS_CUDA_CHECK(cudaMemcpyAsync(d_keys.ptr, keys.data() + begin, n * sizeof(std::int64_t), cudaMemcpyHostToDevice,
                              stream));
        cache->lookup(d_keys.ptr, hps::KeyDtype::kInt64, true, n, d_out.as<float>(), hps::StreamView::cuda(stream), collect, {});
      }
    }
    std::vector<std::int64_t> held;
    held.reserve(rows);
    for (const auto k : keys)
      if (!evicted.count(k)) held.push_back(k);
    std::printf("dynamic warm start at capacity = rows: %zu keys held, %zu evicted (%.4f%%)\n", held.size(),
                evicted.size(), 100.0 * static_cast<double>(evicted.size()) / static_cast<double>(rows));
    auto* base = dynamic_cast<hps::cuda::GpuCacheBase*>(cache.get());
    for (const std::size_t b : batches) {
      auto key_batches = make_batches(held, b, rng);
      std::size_t misses = 0;
      const double t = time_on_host(b, [&](int r) {
        misses += cache->lookup(key_batches[r]->ptr, hps::KeyDtype::kInt64, true, b, out.as<float>(),
                                hps::StreamView::cuda(stream), no_resolve, {})
                      .missed_positions;
      });
      report("dynamic (incl. 1 host sync)", b, dim, t, bandwidth);
      if (misses != 0) std::printf("  WARNING: %zu misses in an all-hit run\n", misses);
      {  // the probe kernel alone, back to back: the call without its host side
        Device status(2 * sizeof(hps::cuda::LookupStatus));
        Device miss_keys(b * sizeof(std::int64_t)), miss_positions(b * sizeof(std::uint32_t));
        HPS_CUDA_CHECK(cudaMemsetAsync(status.ptr, 0, 2 * sizeof(hps::cuda::LookupStatus), stream));
        auto* s = status.as<hps::cuda::LookupStatus>();
        int call = 0;
        auto probe = [&](int r) {
          const int at = call++ % 2;  // the two status entries alternate: each call zeroes the next one's
          const hps::cuda::MissSink sink{s + at, s + 1 - at, miss_keys.as<std::int64_t>(),
                                         miss_positions.as<std::uint32_t>(), nullptr};
          dynamic->enqueue_probe(key_batches[r]->as<std::int64_t>(), b, out.as<float>(), sink, stream);
        };
        report("dynamic probe kernel", b, dim, time_on_stream(stream, b, probe), bandwidth);
        if (sweep && b == max_batch) {
          // Each shape must return the default's rows: batch 0's output, bit for bit.
          auto output_of_batch0 = [&] {
            HPS_CUDA_CHECK(cudaMemsetAsync(out.ptr, 0xFF, b * dim * sizeof(float), stream));
            probe(0);
            std::vector<float> host(b * dim);
            HPS_CUDA_CHECK(cudaMemcpyAsync(host.data(), out.ptr, host.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                           stream));
            HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
            return host;
          };
          const std::vector<float> expected = output_of_batch0();
          for (const auto& [label, shape] : shape_variants(dim, true)) {
            base->set_probe_shape(shape);
            const std::vector<float> got = output_of_batch0();
            if (std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)) != 0) {
              std::printf("  MISMATCH: dynamic probe %s returned other rows than the default\n", label.c_str());
            }
            report("dynamic probe " + label, b, dim, time_on_stream(stream, b, probe), bandwidth);
          }
          base->set_probe_shape({});
        }
      }
    }
    // Miss path: 1% of each batch is unknown everywhere (resolved on the host, not inserted).
    for (const std::size_t b : batches) {
      if (b < 26624) continue;
      std::vector<std::int64_t> mixed(b);
      std::uniform_int_distribution<std::size_t> pick(0, held.size() - 1);
      for (std::size_t i = 0; i < b; ++i) mixed[i] = i % 100 == 0 ? -static_cast<std::int64_t>(i) - 1 : held[pick(rng)];
      Device d_mixed(b * sizeof(std::int64_t));
      HPS_CUDA_CHECK(cudaMemcpyAsync(d_mixed.ptr, mixed.data(), b * sizeof(std::int64_t), cudaMemcpyHostToDevice, stream));
      auto fill = [&](const std::int64_t*, std::size_t n, float* r, std::uint8_t* found) {
        std::fill(r, r + n * dim, 0.0f);
        std::fill(found, found + n, std::uint8_t{0});
      };
      const double t = time_on_host(b, [&](int) {
        cache->lookup(d_mixed.ptr, hps::KeyDtype::kInt64, true, b, out.as<float>(), hps::StreamView::cuda(stream), fill, {});
      });
      report("dynamic 1% misses (host)", b, dim, t, bandwidth);
    }
  }
}

/// Hit rate of dynamic caches on a Zipf stream next to an exact LRU cache of the same capacity.
void hit_rates(cudaStream_t stream) {
  const std::size_t keys_total = 2000000, dim = 16;
  const double alpha = 1.05;
  std::printf("\n-- hit rates: %zu keys, Zipf(%.2f), D = %zu, 6 warm-up + 6 measured calls\n", keys_total, alpha, dim);
  std::vector<double> cdf(keys_total);
  double sum = 0;
  for (std::size_t i = 0; i < keys_total; ++i) cdf[i] = (sum += std::pow(static_cast<double>(i + 1), -alpha));
  for (auto& c : cdf) c /= sum;
  std::vector<std::int64_t> by_rank(keys_total);  // Zipf rank r is key by_rank[r]
  for (std::size_t i = 0; i < keys_total; ++i) by_rank[i] = static_cast<std::int64_t>(hps::murmur3_fmix64(static_cast<std::int64_t>(i + 7)));
  for (const std::size_t batch : {std::size_t{262144}, std::size_t{1048576}}) {
    std::mt19937_64 rng(batch);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    std::vector<std::vector<std::int64_t>> calls(12, std::vector<std::int64_t>(batch));
    for (auto& call : calls) {
      for (auto& k : call) {
        const auto at = static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), unit(rng)) - cdf.begin());
        k = by_rank[std::min(at, keys_total - 1)];
      }
    }
    Device d_keys(batch * sizeof(std::int64_t)), d_out(batch * dim * sizeof(float));
    for (const double fraction : {0.2, 0.05}) {
      const auto capacity = static_cast<std::size_t>(fraction * static_cast<double>(keys_total));
      hps::GpuCacheOptions options;
      options.dim = dim;
      options.capacity = capacity;
      options.hit_rate_threshold = 1.0;
      auto cache = hps::GpuCache::create(options);
      auto resolve = [&](const std::int64_t*, std::size_t n, float* r, std::uint8_t* found) {
        std::fill(r, r + n * dim, 0.5f);
        std::fill(found, found + n, std::uint8_t{1});
      };
      ExactLru lru(capacity);
      std::size_t hits = 0, lru_hits = 0, measured = 0;
      for (std::size_t c = 0; c < calls.size(); ++c) {
        HPS_CUDA_CHECK(cudaMemcpyAsync(d_keys.ptr, calls[c].data(), batch * sizeof(std::int64_t), cudaMemcpyHostToDevice,
                              stream));
        const auto result =
            cache->lookup(d_keys.ptr, hps::KeyDtype::kInt64, true, batch, d_out.as<float>(), hps::StreamView::cuda(stream), resolve, {});
        const std::size_t lru_call = lru.access(calls[c]);
        if (c >= 6) hits += result.hits, lru_hits += lru_call, measured += batch;
      }
      std::printf("hit rate B=%8zu capacity %4.0f%%: dynamic %.4f, exact LRU %.4f\n", batch, 100 * fraction,
                  static_cast<double>(hits) / static_cast<double>(measured),
                  static_cast<double>(lru_hits) / static_cast<double>(measured));
      std::fflush(stdout);
    }
  }
}

}  // namespace

/// "64,128" -> {64, 128}; throws on anything else.
std::vector<std::size_t> parse_list(const char* flag, const char* text) {
  std::vector<std::size_t> values;
  for (const char* at = text; *at != '\0';) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(at, &end, 10);
    if (end == at || v == 0 || (*end != ',' && *end != '\0'))
      throw std::invalid_argument(std::string(flag) + ": expected positive integers separated by commas, found '" +
                                  text + "'");
    values.push_back(static_cast<std::size_t>(v));
    at = *end == ',' ? end + 1 : end;
  }
  return values;
}

int main(int argc, char** argv) {
  bool quick = false, sweep = false, rates = true;
  std::vector<std::size_t> dims{16, 64, 128}, sizes;
  try {
    for (int i = 1; i < argc; ++i) {
      const bool has_value = i + 1 < argc;
      if (std::strcmp(argv[i], "--quick") == 0) {
        quick = true;
      } else if (std::strcmp(argv[i], "--sweep") == 0) {
        sweep = true;
      } else if (std::strcmp(argv[i], "--no-hit-rates") == 0) {
        rates = false;
      } else if (std::strcmp(argv[i], "--dims") == 0 && has_value) {
        dims = parse_list("--dims", argv[++i]);
      } else if (std::strcmp(argv[i], "--sizes") == 0 && has_value) {
        sizes = parse_list("--sizes", argv[++i]);
      } else {
        throw std::invalid_argument(std::string("unknown argument or missing value: ") + argv[i]);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_cache_kernels: %s\n", e.what());
    return 2;
  }
  try {
    if (hps::cuda_device_count() == 0) {
      std::printf("no CUDA device: nothing to measure\n");
      return 0;
    }
    cudaDeviceProp prop{};
    HPS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t stream;
    HPS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const double bandwidth = copy_bandwidth(stream);
    std::printf("device: %s, %d SMs, L2 %d MiB; D2D copy bandwidth (read+write): %.0f GB/s\n", prop.name,
                prop.multiProcessorCount, prop.l2CacheSize >> 20, bandwidth / 1e9);
    const std::vector<std::size_t> batches =
        !sizes.empty() ? sizes
        : quick        ? std::vector<std::size_t>{26624, 1048576}
                       : std::vector<std::size_t>{2048, 26624, 262144, 1048576};
    for (const std::size_t dim : dims) {
      run_dim(dim, batches, sweep, bandwidth, stream);
    }
    if (rates) hit_rates(stream);
    std::printf("\n| kind | B | D | us/call | G keys/s | %% of HBM bound |\n|---|---|---|---|---|---|\n");
    for (const auto& r : results) {
      std::printf("| %s | %zu | %zu | %.2f | %.3f | %.1f |\n", r.kind.c_str(), r.batch, r.dim, r.seconds * 1e6,
                  static_cast<double>(r.batch) / r.seconds / 1e9, 100.0 * r.bound_fraction);
    }
    cudaStreamDestroy(stream);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "benchmark failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
