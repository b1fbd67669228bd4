// Roof of the GPU cache's miss path: how fast a kernel can gather random records of the CPU-memory
// tier from page-locked, mapped host memory over PCIe, by kernel shape and read protocol.
//
// Records as the CPU-memory tier lays them out (record_hooks.hpp): an 8-byte header, the 8-byte key,
// the fp32 row at offset 16, 2 GiB of them in one mapped buffer. Each call gathers M random records
// (record addresses in device memory, as the host-tier index gives them) into a device array; 8
// rotating request sets (64 where said), so no record is in L2 from the call before; the last call's
// rows are checked against the values written.
// Printed per (D, M, shape): us per call, GB/s of row bytes, and % of the roof: a pinned
// host-to-device cudaMemcpyAsync of 256 MiB measured in the same run.
//
// Shapes: kLanes lanes serve a record, each reading kVecBytes per load (4, 8 or 16), kKeys records
// per group in flight (every load of all of them issued before any value is used). Protocols:
//   plain     weak loads of the row only (no concurrency control: the bound of a gather);
//   seqlock   the host-tier kernel's former protocol: header, then key and row at addresses computed
//             from it, then the header again at an address computed from them (three dependent
//             round trips), relaxed loads at system scope;
//   sysplain  plain, with the system-scope loads of the other protocols (their cost alone);
//   blob      checksum, with the record's bytes [0, 16 + 4D) cut into pieces dealt to the lanes in
//             turn, so header and key ride with the row (no lane issues more than ceil(pieces /
//             lanes) loads; the others give the first lane three);
//   checksum  the host-tier kernel's protocol (core/src/detail/record_checksum.hpp): header, key and
//             row requested together (one round trip), accepted when the header's checksum is the
//             one of the key and row read (each lane sums its words' terms, the group adds them up);
// Also: the same gathers from a 32 MiB window (address translation's reach), with 64 request sets
// (no set repeats within the GPU's TLB reach), from cudaHostAlloc memory and from mmap'ed memory
// registered with cudaHostRegister with and without transparent huge pages (the CPU-memory tier's way).
// Build: scripts/gpu_kernels_bench.sh builds it (build/gpu-standalone/zero_copy_gather), or by hand:
//   nvcc -std=c++20 -O3 -arch=sm_90 -Icore/src -o zero_copy_gather benchmarks/zero_copy_gather.cu
// Usage: zero_copy_gather [--quick | --occupancy | --protocols | --sources]   (--occupancy: at most 2, 4 and
//   all resident blocks per SM, D = 64 and 128, 64 request sets; --protocols: every protocol and
//   blob shape, D = 16, 64 and 128, registered THP memory; --sources: D = 16, 64 and 128 from
//   registered THP memory, from the driver's virtual memory API on host memory (cuMemCreate with
//   a HOST_NUMA location: the driver's page size) and from MAP_HUGETLB pages, 64 request sets)
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string_view>
#include <vector>

#include "detail/record_checksum.hpp"

#define CHECK(call)                                                                                     \
  do {                                                                                                  \
    const cudaError_t e = (call);                                                                       \
    if (e != cudaSuccess) {                                                                             \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e));        \
      std::exit(1);                                                                                     \
    }                                                                                                   \
  } while (0)

namespace {

constexpr int kThreads = 256;
constexpr int kRotation = 8;
constexpr std::uint64_t kLive = 2;

enum class Protocol { kPlain, kSysPlain, kSeqlock, kChecksum, kBlob };

template <int kVecBytes>
struct Vec;
template <>
struct Vec<4> {
  std::uint32_t x;
};
template <>
struct Vec<8> {
  std::uint32_t x, y;
};
template <>
struct Vec<16> {
  std::uint32_t x, y, z, w;
};

template <int kVecBytes, bool kSys>
__device__ __forceinline__ Vec<kVecBytes> load(const char* p) {
  Vec<kVecBytes> v;
  if constexpr (kVecBytes == 4) {
    if constexpr (kSys) asm volatile("ld.relaxed.sys.global.u32 %0, [%1];" : "=r"(v.x) : "l"(p));
    else asm volatile("ld.global.u32 %0, [%1];" : "=r"(v.x) : "l"(p));
  } else if constexpr (kVecBytes == 8) {
    if constexpr (kSys) asm volatile("ld.relaxed.sys.global.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    else asm volatile("ld.global.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  } else {
    if constexpr (kSys)
      asm volatile("ld.relaxed.sys.global.v4.u32 {%0,%1,%2,%3}, [%4];"
                   : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                   : "l"(p));
    else
      asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  }
  return v;
}

template <int kVecBytes>
__device__ __forceinline__ std::uint32_t fold(const Vec<kVecBytes>& v) {
  if constexpr (kVecBytes == 4) return v.x;
  else if constexpr (kVecBytes == 8) return v.x ^ v.y;
  else return v.x ^ v.y ^ v.z ^ v.w;
}

__device__ __forceinline__ std::uint64_t load_sys_u64(const char* p) {
  std::uint64_t v;
  asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p));
  return v;
}

template <int kDim, int kLanes, int kVecBytes, int kKeys, Protocol kProtocol>
__global__ void __launch_bounds__(kThreads) gather(const std::uint64_t* records, std::uint64_t m, float* out,
                                                   std::uint32_t zero, unsigned long long* rejected) {
  constexpr int kRowBytes = 4 * kDim;
  constexpr int kChunks = kRowBytes / (kLanes * kVecBytes);
  static_assert(kChunks >= 1 && kChunks * kLanes * kVecBytes == kRowBytes, "shape must tile the row");
  constexpr bool kSeqlock = kProtocol == Protocol::kSeqlock;
  constexpr bool kSys = kProtocol != Protocol::kPlain;
  const unsigned lane = threadIdx.x % 32, rank = lane % kLanes;
  const std::uint32_t group_mask = kLanes == 32 ? 0xFFFFFFFFu : ((1u << kLanes) - 1u) << (lane - rank);
  const std::uint64_t group = (blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x) / kLanes;
  const std::uint64_t groups = static_cast<std::uint64_t>(gridDim.x) * blockDim.x / kLanes;
  for (std::uint64_t base = group * kKeys; base < m; base += groups * kKeys) {
    const char* rec[kKeys];
    std::uint64_t before[kKeys] = {};
    std::uint32_t dep[kKeys];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      const std::uint64_t i = base + k < m ? base + k : m - 1;
      rec[k] = reinterpret_cast<const char*>(records[i]);
      dep[k] = 0;
    }
    if constexpr (kSeqlock) {
#pragma unroll
      for (int k = 0; k < kKeys; ++k) before[k] = load_sys_u64(rec[k]);
#pragma unroll
      for (int k = 0; k < kKeys; ++k) dep[k] = static_cast<std::uint32_t>(before[k]) & zero;
    }
    Vec<kVecBytes> v[kKeys][kChunks];
    std::uint64_t seen_key[kKeys];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      const char* body = rec[k] + dep[k];
      if constexpr (kSeqlock) seen_key[k] = load_sys_u64(body + 8);
      if constexpr (kProtocol == Protocol::kChecksum) {
        if (rank == 0) before[k] = load_sys_u64(body), seen_key[k] = load_sys_u64(body + 8);
      }
#pragma unroll
      for (int c = 0; c < kChunks; ++c)
        v[k][c] = load<kVecBytes, kSys>(body + 16 + (static_cast<std::size_t>(c) * kLanes + rank) * kVecBytes);
    }
    bool ok[kKeys];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) ok[k] = true;
    if constexpr (kSeqlock) {
      std::uint64_t after[kKeys];
#pragma unroll
      for (int k = 0; k < kKeys; ++k) {
        std::uint32_t d = static_cast<std::uint32_t>(seen_key[k]);
#pragma unroll
        for (int c = 0; c < kChunks; ++c) d ^= fold<kVecBytes>(v[k][c]);
        after[k] = load_sys_u64(rec[k] + (d & zero));
      }
#pragma unroll
      for (int k = 0; k < kKeys; ++k) ok[k] = before[k] == after[k] && (before[k] & 1) == 0;
    }
    if constexpr (kProtocol == Protocol::kChecksum) {
#pragma unroll
      for (int k = 0; k < kKeys; ++k) {
        std::uint64_t sum = rank == 0 ? hps::record_checksum::key_terms(static_cast<std::int64_t>(seen_key[k])) : 0;
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          const std::uint32_t* words = &v[k][c].x;
          const std::uint32_t first = (static_cast<std::uint32_t>(c) * kLanes + rank) * (kVecBytes / 4);
#pragma unroll
          for (int w = 0; w < kVecBytes / 4; ++w) sum += hps::record_checksum::term(first + w, words[w]);
        }
#pragma unroll
        for (int offset = 1; offset < kLanes; offset *= 2) sum += __shfl_xor_sync(group_mask, sum, offset);
        const bool whole = hps::record_checksum::header_bits(sum) == (before[k] & ~hps::record_checksum::kFlagBits) &&
                           (before[k] & hps::record_checksum::kFlagBits) == kLive;
        ok[k] = __shfl_sync(group_mask, whole, static_cast<int>(lane - rank));
      }
    }
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      if (base + k >= m) continue;
      if (!ok[k]) {
        if (rank == 0) atomicAdd(rejected, 1ull);
        continue;
      }
      char* dst = reinterpret_cast<char*>(out + (base + k) * kDim);
#pragma unroll
      for (int c = 0; c < kChunks; ++c)
        *reinterpret_cast<Vec<kVecBytes>*>(dst + (static_cast<std::size_t>(c) * kLanes + rank) * kVecBytes) = v[k][c];
    }
  }
}

// The blob protocol (see the top): piece p of the record goes to lane p % kLanes.
template <int kDim, int kLanes, int kVecBytes>
__global__ void __launch_bounds__(kThreads) gather_blob(const std::uint64_t* records, std::uint64_t m, float* out,
                                                        std::uint32_t, unsigned long long* rejected) {
  const unsigned lane = threadIdx.x % 32, rank = lane % kLanes;
  const std::uint32_t group_mask = kLanes == 32 ? 0xFFFFFFFFu : ((1u << kLanes) - 1u) << (lane - rank);
  const std::uint64_t group = (blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x) / kLanes;
  const std::uint64_t groups = static_cast<std::uint64_t>(gridDim.x) * blockDim.x / kLanes;
  constexpr int kWords = kVecBytes / 4;
  constexpr int kPieces = (16 + 4 * kDim) / kVecBytes;  // every piece all header/key or all row
  constexpr int kPerLane = (kPieces + kLanes - 1) / kLanes;
  for (std::uint64_t i = group; i < m; i += groups) {
    const char* rec = reinterpret_cast<const char*>(records[i]);
    Vec<kVecBytes> v[kPerLane];
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int p = static_cast<int>(rank) + j * kLanes;
      if (p < kPieces) v[j] = load<kVecBytes, true>(rec + static_cast<std::size_t>(p) * kVecBytes);
    }
    std::uint64_t sum = 0, header = 0;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int p = static_cast<int>(rank) + j * kLanes;
      if (p >= kPieces) continue;
      const std::uint32_t* words = &v[j].x;
#pragma unroll
      for (int w = 0; w < kWords; ++w) {
        const int q = p * kWords + w;  // word of the record
        if (q < 2) header |= static_cast<std::uint64_t>(words[w]) << (32 * q);
        else if (q == 2) sum += hps::record_checksum::term(hps::record_checksum::kKeyLowIndex, words[w]);
        else if (q == 3) sum += hps::record_checksum::term(hps::record_checksum::kKeyHighIndex, words[w]);
        else sum += hps::record_checksum::term(static_cast<std::uint32_t>(q - 4), words[w]);
      }
    }
#pragma unroll
    for (int offset = 1; offset < kLanes; offset *= 2) {
      sum += __shfl_xor_sync(group_mask, sum, offset);
      header |= __shfl_xor_sync(group_mask, header, offset);
    }
    const bool ok = hps::record_checksum::header_bits(sum) == (header & ~hps::record_checksum::kFlagBits) &&
                    (header & hps::record_checksum::kFlagBits) == kLive;
    if (!ok) {
      if (rank == 0) atomicAdd(rejected, 1ull);
      continue;
    }
    char* dst = reinterpret_cast<char*>(out + i * kDim);
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int p = static_cast<int>(rank) + j * kLanes;
      if (p < kPieces && p * kVecBytes >= 16)
        *reinterpret_cast<Vec<kVecBytes>*>(dst + static_cast<std::size_t>(p) * kVecBytes - 16) = v[j];
    }
  }
}

struct Setup {
  int dim;
  std::size_t record_bytes, records;
  char* host;            // host pointer of the mapped buffer
  std::uint64_t device;  // its device address
  float* out;
  unsigned long long* rejected;
  double roof;  // bytes/s
  int sms;
  int blocks_per_sm;  // cap on resident blocks per SM (0: the occupancy limit)
};

template <int kDim, int kLanes, int kVecBytes, int kKeys, Protocol kProtocol>
void run(const Setup& s, const std::vector<std::uint64_t*>& requests, std::uint64_t m, const char* name) {
  const int rotation = static_cast<int>(requests.size());
  const auto kernel = [] {
    if constexpr (kProtocol == Protocol::kBlob) return gather_blob<kDim, kLanes, kVecBytes>;
    else return gather<kDim, kLanes, kVecBytes, kKeys, kProtocol>;
  }();
  int per_sm = 0;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
  const std::uint64_t groups_needed = (m + kKeys - 1) / kKeys;
  const std::uint64_t blocks_needed = (groups_needed * kLanes + kThreads - 1) / kThreads;
  if (s.blocks_per_sm > 0) per_sm = std::min(per_sm, s.blocks_per_sm);
  const unsigned blocks = static_cast<unsigned>(std::min<std::uint64_t>(blocks_needed, std::uint64_t(s.sms) * per_sm));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  for (int r = 0; r < rotation; ++r) kernel<<<blocks, kThreads>>>(requests[r], m, s.out, 0u, s.rejected);
  CHECK(cudaMemset(s.rejected, 0, sizeof(unsigned long long)));
  std::vector<float> times;
  for (int rep = 0; rep < 5; ++rep) {
    CHECK(cudaEventRecord(a));
    for (int r = 0; r < rotation; ++r) kernel<<<blocks, kThreads>>>(requests[r], m, s.out, 0u, s.rejected);
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    times.push_back(ms * 1e3f / rotation);
  }
  CHECK(cudaGetLastError());
  std::sort(times.begin(), times.end());
  const double us = times[times.size() / 2];
  unsigned long long rejected = 0;
  CHECK(cudaMemcpy(&rejected, s.rejected, sizeof rejected, cudaMemcpyDeviceToHost));
  // Check the last call's rows: record i's row holds i * 1000 + c.
  std::vector<std::uint64_t> ids(m);
  CHECK(cudaMemcpy(ids.data(), requests[rotation - 1], m * 8, cudaMemcpyDeviceToHost));
  std::vector<float> rows(m * kDim);
  CHECK(cudaMemcpy(rows.data(), s.out, rows.size() * 4, cudaMemcpyDeviceToHost));
  std::size_t wrong = 0;
  for (std::uint64_t i = 0; i < m; ++i) {
    const std::uint64_t r = (ids[i] - s.device) / s.record_bytes;
    for (int c = 0; c < kDim; ++c) wrong += rows[i * kDim + c] != static_cast<float>(r % 10000 * 1000 + c);
  }
  const double gbs = static_cast<double>(m) * 4 * kDim / (us * 1e-6) / 1e9;
  std::printf("D=%4d M=%7llu %-8s lanes=%2d vec=%2d keys=%d  %9.1f us  %6.1f GB/s  %5.1f%% of roof  blocks=%u%s%s\n",
              kDim, static_cast<unsigned long long>(m), name, kLanes, kVecBytes, kKeys, us, gbs, 100.0 * gbs * 1e9 / s.roof,
              blocks, rejected ? "  REJECTED" : "", wrong ? "  WRONG ROWS" : "");
  std::fflush(stdout);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

double pinned_h2d_bandwidth() {
  const std::size_t bytes = std::size_t{256} << 20;
  void *host = nullptr, *dev = nullptr;
  CHECK(cudaHostAlloc(&host, bytes, cudaHostAllocDefault));
  CHECK(cudaMalloc(&dev, bytes));
  std::fill_n(static_cast<char*>(host), bytes, 1);
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  CHECK(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
  CHECK(cudaEventRecord(a));
  for (int i = 0; i < 5; ++i) CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice));
  CHECK(cudaEventRecord(b));
  CHECK(cudaEventSynchronize(b));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  CHECK(cudaFreeHost(host));
  CHECK(cudaFree(dev));
  return 5.0 * bytes / (ms * 1e-3);
}

enum class Source { kHostAlloc, kHugePagesRegistered, kRegistered4k, kHugetlbRegistered, kVmmHost };
const char* source_name(Source s) {
  switch (s) {
    case Source::kHostAlloc: return "cudaHostAlloc";
    case Source::kHugePagesRegistered: return "mmap+THP+cudaHostRegister";
    case Source::kRegistered4k: return "mmap(no THP)+cudaHostRegister";
    case Source::kHugetlbRegistered: return "mmap(MAP_HUGETLB 2 MiB)+cudaHostRegister";
    case Source::kVmmHost: return "cuMemCreate(HOST_NUMA)+cuMemMap";
  }
  return "?";
}

/// A driver API function through the runtime (no link to libcuda: the runtime loads the driver).
template <typename F>
F driver_fn(const char* name) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess) {
    std::fprintf(stderr, "driver function %s not found\n", name);
    std::exit(1);
  }
  return reinterpret_cast<F>(fn);
}
#define DRIVER(name) driver_fn<decltype(&name)>(#name)

#define CU_CHECK(call)                                                      \
  do {                                                                      \
    const CUresult e = (call);                                              \
    if (e != CUDA_SUCCESS) {                                                \
      std::fprintf(stderr, "%s:%d %s: CUresult %d\n", __FILE__, __LINE__, #call, static_cast<int>(e)); \
      return nullptr;                                                       \
    }                                                                       \
  } while (0)

/// Host memory from the driver's virtual memory API (physical host memory of the VMM's
/// granularity, mapped for the device and the CPU at one address), or nullptr where refused.
char* vmm_host_alloc(std::size_t bytes, std::size_t* granularity_out) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
  prop.location.id = 0;
  std::size_t granularity = 0;
  CU_CHECK(DRIVER(cuMemGetAllocationGranularity)(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
  *granularity_out = granularity;
  CUmemGenericAllocationHandle handle{};
  CU_CHECK(DRIVER(cuMemCreate)(&handle, bytes, &prop, 0));
  CUdeviceptr va = 0;
  CU_CHECK(DRIVER(cuMemAddressReserve)(&va, bytes, granularity, 0, 0));
  CU_CHECK(DRIVER(cuMemMap)(va, bytes, 0, handle, 0));
  CUmemAccessDesc access[2]{};
  int device = 0;
  cudaGetDevice(&device);
  access[0].location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access[0].location.id = device;
  access[0].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  access[1].location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
  access[1].location.id = 0;
  access[1].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CU_CHECK(DRIVER(cuMemSetAccess)(va, bytes, access, 2));
  DRIVER(cuMemRelease)(handle);  // the mapping keeps the memory
  return reinterpret_cast<char*>(va);
}

/// Allocates the 2 GiB of records from `source`, then gathers from its first `span` bytes.
template <int kDim>
void suite(Setup s, Source source, std::size_t span, int rotation, bool quick, bool protocols = false) {
  s.dim = kDim;
  s.record_bytes = 16 + 4 * kDim;  // a multiple of 16 for these dims
  const std::size_t bytes = std::size_t{2} << 30;
  s.records = bytes / s.record_bytes;
  if (source == Source::kHostAlloc) {
    CHECK(cudaHostAlloc(reinterpret_cast<void**>(&s.host), bytes, cudaHostAllocMapped));
  } else if (source == Source::kVmmHost) {
    std::size_t granularity = 0;
    s.host = vmm_host_alloc(bytes, &granularity);
    if (s.host == nullptr) {
      std::printf("-- D=%d, %s: refused here\n", kDim, source_name(source));
      return;
    }
    std::printf("-- VMM host granularity (recommended): %zu KiB\n", granularity >> 10);
  } else {
    const bool hugetlb = source == Source::kHugetlbRegistered;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (hugetlb ? MAP_HUGETLB : 0),
                     -1, 0);
    if (p == MAP_FAILED) {
      if (!hugetlb) std::exit(2);
      std::printf("-- D=%d, %s: no huge pages reserved here (vm.nr_hugepages)\n", kDim, source_name(source));
      return;
    }
    if (!hugetlb) ::madvise(p, bytes, source == Source::kHugePagesRegistered ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    std::fill_n(static_cast<char*>(p), bytes, 0);  // fault the pages in (huge where THP grants them)
    CHECK(cudaHostRegister(p, bytes, cudaHostRegisterMapped | cudaHostRegisterPortable));
    s.host = static_cast<char*>(p);
  }
  if (source == Source::kVmmHost) {
    s.device = reinterpret_cast<std::uint64_t>(s.host);
  } else {
    void* dev = nullptr;
    CHECK(cudaHostGetDevicePointer(&dev, s.host, 0));
    s.device = reinterpret_cast<std::uint64_t>(dev);
  }
  for (std::size_t r = 0; r < s.records; ++r) {
    char* rec = s.host + r * s.record_bytes;
    const std::int64_t key = static_cast<std::int64_t>(r);
    std::copy_n(reinterpret_cast<const char*>(&key), 8, rec + 8);
    float* row = reinterpret_cast<float*>(rec + 16);
    for (int c = 0; c < kDim; ++c) row[c] = static_cast<float>(r % 10000 * 1000 + c);
    // Live, not busy; the checksum of key and row (the seqlock reads only compare the word).
    const std::uint64_t header = hps::record_checksum::of_record(key, row, kDim) | kLive;
    std::copy_n(reinterpret_cast<const char*>(&header), 8, rec);
  }
  std::printf("-- D=%d, records from %s, gathered from the first %zu MiB, %d request sets in rotation\n", kDim,
              source_name(source), span >> 20, rotation);
  CHECK(cudaMalloc(&s.out, std::size_t{262144} * kDim * 4));
  std::mt19937_64 rng(kDim);
  for (std::uint64_t m : {std::uint64_t{128}, std::uint64_t{1800}, std::uint64_t{22000}}) {
    std::vector<std::uint64_t*> requests;
    std::uniform_int_distribution<std::size_t> pick(0, std::min(s.records, span / s.record_bytes) - 1);
    for (int r = 0; r < rotation; ++r) {
      std::vector<std::uint64_t> ids(m);
      for (auto& id : ids) id = s.device + pick(rng) * s.record_bytes;
      std::uint64_t* d = nullptr;
      CHECK(cudaMalloc(&d, m * 8));
      CHECK(cudaMemcpy(d, ids.data(), m * 8, cudaMemcpyHostToDevice));
      requests.push_back(d);
    }
    constexpr int kRowBytes = 4 * kDim;
    // One 4-byte element per lane, one record per group (the shape of the host-tier kernel today).
    constexpr int kNarrowLanes = kDim < 32 ? kDim : 32;
    run<kDim, kNarrowLanes, 4, 1, Protocol::kPlain>(s, requests, m, "plain");
    run<kDim, kNarrowLanes, 4, 1, Protocol::kSeqlock>(s, requests, m, "seqlock");
    run<kDim, kNarrowLanes, 4, 1, Protocol::kChecksum>(s, requests, m, "checksum");
    // 16-byte loads, one load per lane per record.
    constexpr int kWideLanes = kRowBytes / 16 < 32 ? kRowBytes / 16 : 32;
    run<kDim, kWideLanes, 16, 1, Protocol::kPlain>(s, requests, m, "plain");
    run<kDim, kWideLanes, 16, 1, Protocol::kSeqlock>(s, requests, m, "seqlock");
    run<kDim, kWideLanes, 16, 1, Protocol::kChecksum>(s, requests, m, "checksum");
    if (protocols) {
      run<kDim, kNarrowLanes, 4, 1, Protocol::kSysPlain>(s, requests, m, "sysplain");
      run<kDim, kWideLanes, 16, 1, Protocol::kSysPlain>(s, requests, m, "sysplain");
      constexpr int kBlob8Lanes = (16 + kRowBytes) / 8 < 32 ? (16 + kRowBytes) / 8 : 32;
      run<kDim, (kBlob8Lanes > 16 ? 32 : 16), 8, 1, Protocol::kBlob>(s, requests, m, "blob");
      run<kDim, (kRowBytes >= 256 ? 32 : 8), 16, 1, Protocol::kBlob>(s, requests, m, "blob");
      run<kDim, 32, 4, 1, Protocol::kBlob>(s, requests, m, "blob");
    }
    if (!quick) {
      run<kDim, kWideLanes, 16, 2, Protocol::kSeqlock>(s, requests, m, "seqlock");
      run<kDim, kWideLanes, 16, 2, Protocol::kChecksum>(s, requests, m, "checksum");
      constexpr int kMidLanes = kRowBytes / 8 < 32 ? kRowBytes / 8 : 32;
      run<kDim, kMidLanes, 8, 1, Protocol::kSeqlock>(s, requests, m, "seqlock");
      run<kDim, kMidLanes, 8, 1, Protocol::kChecksum>(s, requests, m, "checksum");
    }
    for (auto* d : requests) CHECK(cudaFree(d));
  }
  CHECK(cudaFree(s.out));
  if (source == Source::kHostAlloc) {
    CHECK(cudaFreeHost(s.host));
  } else if (source == Source::kVmmHost) {
    DRIVER(cuMemUnmap)(reinterpret_cast<CUdeviceptr>(s.host), bytes);
    DRIVER(cuMemAddressFree)(reinterpret_cast<CUdeviceptr>(s.host), bytes);
  } else {
    CHECK(cudaHostUnregister(s.host));
    ::munmap(s.host, bytes);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string_view(argv[1]) == "--quick";
  Setup s{};
  int device = 0;
  CHECK(cudaGetDevice(&device));
  CHECK(cudaDeviceGetAttribute(&s.sms, cudaDevAttrMultiProcessorCount, device));
  CHECK(cudaMalloc(&s.rejected, sizeof(unsigned long long)));
  s.roof = pinned_h2d_bandwidth();
  std::printf("roof: pinned host-to-device cudaMemcpyAsync of 256 MiB: %.1f GB/s; %d SMs\n", s.roof / 1e9, s.sms);
  const std::size_t all = std::size_t{2} << 30;
  if (argc > 1 && std::string_view(argv[1]) == "--protocols") {
    for (Source source : {Source::kHugePagesRegistered}) {
      suite<16>(s, source, all, kRotation, true, true);
      suite<64>(s, source, all, kRotation, true, true);
      suite<128>(s, source, all, kRotation, true, true);
    }
    return 0;
  }
  if (argc > 1 && std::string_view(argv[1]) == "--sources") {
    // Does the page size of the GPU's mapping of host memory move the per-record cost? 64 request
    // sets: no set repeats within the translation caches' reach.
    for (Source source : {Source::kHugePagesRegistered, Source::kVmmHost, Source::kHugetlbRegistered}) {
      suite<16>(s, source, all, 64, true);
      suite<64>(s, source, all, 64, true);
      suite<128>(s, source, all, 64, true);
    }
    return 0;
  }
  if (argc > 1 && std::string_view(argv[1]) == "--occupancy") {
    for (int cap : {2, 4, 0}) {
      s.blocks_per_sm = cap;
      std::printf("== at most %d blocks per SM (0: occupancy limit)\n", cap);
      suite<128>(s, Source::kHugePagesRegistered, all, 64, true);
      suite<64>(s, Source::kHugePagesRegistered, all, 64, true);
    }
    return 0;
  }
  for (Source source : {Source::kHostAlloc, Source::kHugePagesRegistered, Source::kRegistered4k}) {
    suite<16>(s, source, all, kRotation, quick);
    suite<128>(s, source, all, kRotation, quick);
  }
  // TLB reach: the same gathers from a 32 MiB window, and from all 2 GiB with 64 request sets.
  suite<128>(s, Source::kHostAlloc, std::size_t{32} << 20, kRotation, true);
  suite<128>(s, Source::kHugePagesRegistered, std::size_t{32} << 20, kRotation, true);
  suite<128>(s, Source::kHostAlloc, all, 64, true);
  suite<16>(s, Source::kHugePagesRegistered, all, 64, true);
  if (!quick) suite<64>(s, Source::kHugePagesRegistered, all, kRotation, false);
  return 0;
}
