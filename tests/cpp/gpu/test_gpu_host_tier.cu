// GPU cache misses served from the GPU-visible CPU-memory tier (docs/gpu_cache.md, "Misses served
// from the CPU-memory tier"). The reference is the real HashMapTier read on the host (find()):
// every row a lookup returns is compared with it bit for bit. All tests skip without a device.
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gpu/host_tier_index.hpp"
#include "hps/error.hpp"
#include "hps/gpu/gpu_cache.hpp"
#include "hps/keys.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "key_stream.hpp"

namespace {

using hps::CacheDtype;
using hps::GpuCache;
using hps::GpuCacheOptions;
using hps::GpuLookupResult;
using hps::HashMapOptions;
using hps::HashMapTier;
using hps::KeyDtype;
using hps_test::KeyStream;

#define SKIP_WITHOUT_GPU()                                                       \
  do {                                                                           \
    if (hps::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible"; \
  } while (0)

void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

class DeviceBytes {
 public:
  explicit DeviceBytes(std::size_t bytes) {
    if (bytes > 0) cuda_ok(cudaMalloc(&ptr_, bytes), "cudaMalloc");
  }
  ~DeviceBytes() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  template <typename T = void>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

class TestStream {
 public:
  TestStream() { cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~TestStream() { cudaStreamDestroy(stream_); }
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

float round_half(float v) { return __half2float(__float2half_rn(v)); }

constexpr float kDefault = -0.5f;

/// Non-integral values (fp16 rounding must show), a function of key and element.
float value_of(std::int64_t key, std::size_t j) {
  std::uint64_t h = static_cast<std::uint64_t>(key) * 0x9E3779B97F4A7C15ULL + j * 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 31;
  return static_cast<float>(static_cast<double>(h % 1000003) / 1000003.0 * 20.0 - 10.0);
}

std::vector<float> rows_of(const std::vector<std::int64_t>& keys, std::size_t dim) {
  std::vector<float> rows(keys.size() * dim);
  for (std::size_t i = 0; i < keys.size(); ++i)
    for (std::size_t j = 0; j < dim; ++j) rows[i * dim + j] = value_of(keys[i], j);
  return rows;
}

/// The CPU tier's answer for each key (its row, or the default), rounded to half for fp16 caches.
std::vector<float> reference(HashMapTier& tier, const std::vector<std::int64_t>& keys, bool half) {
  const std::size_t dim = tier.dim();
  std::vector<float> rows(keys.size() * dim, kDefault);
  std::vector<std::uint8_t> found(keys.size());
  tier.find(keys.data(), keys.size(), rows.data(), found.data());
  if (half)
    for (auto& v : rows) v = round_half(v);
  return rows;
}

::testing::AssertionResult same_bits(const std::vector<float>& got, const std::vector<float>& want,
                                     const std::vector<std::int64_t>& keys, std::size_t dim) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      return ::testing::AssertionFailure() << "position " << i / dim << " key " << keys[i / dim] << " element "
                                           << i % dim << ": got " << got[i] << ", want " << want[i];
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::int64_t> distinct_keys(std::size_t n, bool fits32, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> keys;
  std::unordered_map<std::int64_t, bool> seen;
  while (keys.size() < n) {
    const std::int64_t k = fits32 ? static_cast<std::int32_t>(rng()) : static_cast<std::int64_t>(rng());
    if (seen.emplace(k, true).second) keys.push_back(k);
  }
  return keys;
}

/// A resolver that counts what reaches the host, answering from `tier` (and the default).
struct CountingResolver {
  HashMapTier* tier;
  std::atomic<std::size_t> calls{0}, keys{0};
  hps::MissResolver get() {
    return [this](const std::int64_t* k, std::size_t n, float* rows, std::uint8_t* found) {
      calls.fetch_add(1);
      keys.fetch_add(n);
      std::fill(rows, rows + n * tier->dim(), kDefault);
      tier->find(k, n, rows, found);
    };
  }
};

struct TierCache {
  std::shared_ptr<HashMapTier> tier;
  std::unique_ptr<GpuCache> cache;
  std::vector<std::int64_t> keys;  // the table's keys
};

TierCache make_setup(std::size_t rows, std::size_t dim, CacheDtype dtype, bool fits32, bool last_tier,
                 double hbm_share = 0.1, std::size_t partitions = 8,
                 hps::OverflowPolicy policy = hps::OverflowPolicy::kEvictRandom) {
  TierCache s;
  HashMapOptions options;
  options.num_partitions = partitions;
  options.overflow_policy = policy;
  options.allocation_rate = std::size_t{1} << 20;  // several arena pages
  s.tier = std::make_shared<HashMapTier>(dim, options);
  s.keys = distinct_keys(rows, fits32, 7 + dim);
  const auto values = rows_of(s.keys, dim);
  s.tier->insert(s.keys.data(), values.data(), s.keys.size());
  GpuCacheOptions o;
  o.dim = dim;
  o.capacity = std::max<std::size_t>(64, rows / 5);  // 20% of the table
  o.dtype = dtype;
  o.default_value = kDefault;
  o.hit_rate_threshold = 1.0;
  s.cache = GpuCache::create(o);
  hps::make_gpu_visible(*s.tier);
  hps::HostTierLink link;
  link.tier = s.tier;
  link.last_tier = last_tier;
  link.hbm_share = hbm_share;
  std::string why;
  const bool attached = s.cache->attach_host_tier(link, &why);
  if (hbm_share >= 0.01) EXPECT_TRUE(attached) << why;
  return s;
}

template <typename T>
std::vector<unsigned char> encode(const std::vector<std::int64_t>& keys) {
  std::vector<unsigned char> bytes(keys.size() * sizeof(T));
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto v = static_cast<T>(keys[i]);
    std::memcpy(bytes.data() + i * sizeof(T), &v, sizeof(T));
  }
  return bytes;
}

/// One lookup through the device path; returns the rows (poisoned before the call).
std::vector<float> run_lookup(GpuCache& cache, const std::vector<std::int64_t>& keys, KeyDtype dtype, bool key64,
                              cudaStream_t stream, const hps::MissResolver& resolve, GpuLookupResult* result,
                              const hps::InsertGuard& guard = {}) {
  const std::size_t dim = cache.options().dim;
  const auto bytes = dtype == KeyDtype::kInt32 ? encode<std::int32_t>(keys) : encode<std::int64_t>(keys);
  DeviceBytes d_keys(bytes.size());
  DeviceBytes d_out(keys.size() * dim * sizeof(float));
  cuda_ok(cudaMemcpyAsync(d_keys.as(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice, stream), "keys");
  cuda_ok(cudaMemsetAsync(d_out.as(), 0xFF, keys.size() * dim * sizeof(float), stream), "poison");
  *result = cache.lookup(d_keys.as(), dtype, key64, keys.size(), d_out.as<float>(), hps::StreamView::cuda(stream),
                         resolve, guard);
  std::vector<float> rows(keys.size() * dim);
  cuda_ok(cudaMemcpyAsync(rows.data(), d_out.as(), rows.size() * sizeof(float), cudaMemcpyDeviceToHost, stream), "out");
  cuda_ok(cudaStreamSynchronize(stream), "sync");
  return rows;
}

/// One replay of a captured lookup that reads d_keys and writes d_out: uploads `keys`, poisons the
/// output, launches the graph and returns the rows.
std::vector<float> replay_lookup(cudaGraphExec_t exec, const DeviceBytes& d_keys, const DeviceBytes& d_out,
                                 const std::vector<std::int64_t>& keys, std::size_t dim, cudaStream_t stream) {
  cuda_ok(cudaMemcpyAsync(d_keys.as(), keys.data(), keys.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice, stream),
          "keys");
  cuda_ok(cudaMemsetAsync(d_out.as(), 0xFF, keys.size() * dim * sizeof(float), stream), "poison");
  cuda_ok(cudaGraphLaunch(exec, stream), "replay");
  std::vector<float> rows(keys.size() * dim);
  cuda_ok(cudaMemcpyAsync(rows.data(), d_out.as(), rows.size() * sizeof(float), cudaMemcpyDeviceToHost, stream), "out");
  cuda_ok(cudaStreamSynchronize(stream), "sync");
  return rows;
}

/// Uploads `keys`, runs the lookup once uncaptured (first launches, occupancy queries), then captures
/// the same lookup in a CUDA graph and returns it instantiated; *captured: the captured call's result.
cudaGraphExec_t warm_and_capture(GpuCache& cache, const std::vector<std::int64_t>& keys, const DeviceBytes& d_keys,
                                 const DeviceBytes& d_out, cudaStream_t stream, const hps::MissResolver& resolver,
                                 GpuLookupResult* captured) {
  const auto n = keys.size();
  cuda_ok(cudaMemcpyAsync(d_keys.as(), keys.data(), n * sizeof(std::int64_t), cudaMemcpyHostToDevice, stream), "keys");
  cache.lookup(d_keys.as(), KeyDtype::kInt64, true, n, d_out.as<float>(), hps::StreamView::cuda(stream), resolver, {});
  cuda_ok(cudaStreamSynchronize(stream), "warm-up");
  cudaGraph_t graph = nullptr;
  cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "begin capture");
  *captured = cache.lookup(d_keys.as(), KeyDtype::kInt64, true, n, d_out.as<float>(), hps::StreamView::cuda(stream),
                           resolver, {});
  cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
  cudaGraphExec_t exec = nullptr;
  cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  cudaGraphDestroy(graph);
  return exec;
}

// ---- tests --------------------------------------------------------------------------------------

// Many Zipf lookups at 20% cache: every row equals the CPU tier's, bit for bit; misses are answered
// on the device (the rows counter grows, the resolver never runs, no host wait), and keys in no
// tier get the default there.
TEST(GpuHostTier, ZipfLookupsMatchTheCpuTierBitForBit) {
  SKIP_WITHOUT_GPU();
  for (const CacheDtype dtype : {CacheDtype::kFloat32, CacheDtype::kFloat16}) {
    for (const std::size_t dim : {16u, 64u, 128u}) {
      for (const KeyDtype key_dtype : {KeyDtype::kInt32, KeyDtype::kInt64}) {
        SCOPED_TRACE("dim " + std::to_string(dim) + (dtype == CacheDtype::kFloat16 ? " fp16" : " fp32") +
                     (key_dtype == KeyDtype::kInt32 ? " int32" : " int64"));
        const bool half = dtype == CacheDtype::kFloat16;
        TierCache s = make_setup(50000, dim, dtype, key_dtype == KeyDtype::kInt32, true);
        // Zipf over the table's keys and 2% keys in no tier.
        std::vector<std::int64_t> universe = s.keys;
        const auto absent = distinct_keys(universe.size() / 50 + 1, key_dtype == KeyDtype::kInt32, 99);
        for (std::size_t i = 0; i < absent.size(); ++i) universe.insert(universe.begin() + 50 * i + 7, absent[i] ^ 1);
        KeyStream zipf(universe, 1.05, 5);
        CountingResolver resolver{s.tier.get()};
        TestStream stream;
        std::size_t no_wait = 0;
        for (int call = 0; call < 20; ++call) {
          const auto keys = zipf.draw(call % 2 ? 26624 : 2048);
          GpuLookupResult r;
          const auto rows = run_lookup(*s.cache, keys, key_dtype, true, stream.get(), resolver.get(), &r);
          ASSERT_TRUE(same_bits(rows, reference(*s.tier, keys, half), keys, dim)) << "call " << call;
          EXPECT_EQ(r.hits, keys.size());
          no_wait += r.no_host_wait ? 1 : 0;
        }
        EXPECT_EQ(no_wait, 20u) << "a 64-bit model's int32/int64 keys cannot be invalid: no host wait";
        EXPECT_EQ(resolver.calls.load(), 0u) << "the host tier is the last: nothing reaches the host";
        EXPECT_GT(s.cache->host_tier_rows_served(), 0u) << "misses answered from the CPU tier on the device";
        EXPECT_GT(s.cache->defaults_served(), 0u) << "keys in no tier answered with the default on the device";
        s.cache->drain();
        EXPECT_GT(s.cache->size(), 0u) << "rows found in the CPU tier are inserted into the cache";
        EXPECT_GT(s.cache->host_tier_index_bytes(), 0u);
      }
    }
  }
}

// Keys that come and go (a hash map at its capacity evicting for new keys, ten index sizes of
// them) leave tombstones in the index. Its sweeps keep a share of the slots empty, so probes stay
// short (without them the empty slots ran out: docs/gpu_cache.md); the index holds exactly the
// tier's keys, and lookups over every key ever stored return the CPU tier's rows bit for bit.
TEST(GpuHostTier, IndexKeepsEmptySlotsWhileKeysComeAndGo) {
  SKIP_WITHOUT_GPU();
  constexpr std::size_t kDim = 16;
  HashMapOptions options;
  options.num_partitions = 4;
  options.overflow_margin = 5000;  // 20,000 rows at most
  options.allocation_rate = std::size_t{1} << 20;
  auto tier = std::make_shared<HashMapTier>(kDim, options);
  std::vector<std::int64_t> ever = distinct_keys(20000, false, 31);
  {
    const auto rows = rows_of(ever, kDim);
    tier->insert(ever.data(), rows.data(), ever.size());
  }
  hps::make_gpu_visible(*tier);
  int sm_count = 0;
  cuda_ok(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, 0), "sm count");
  std::string why;
  auto index = hps::cuda::HostTierIndex::create(0, tier, true, kDefault, 0.1, sm_count, &why);
  ASSERT_NE(index, nullptr) << why;
  GpuCacheOptions o;
  o.dim = kDim;
  o.capacity = 4000;
  o.default_value = kDefault;
  o.hit_rate_threshold = 1.0;
  auto cache = GpuCache::create(o);
  hps::HostTierLink link;
  link.tier = tier;
  link.last_tier = true;
  link.hbm_share = 0.1;
  ASSERT_TRUE(cache->attach_host_tier(link, &why)) << why;

  const std::uint64_t slots = index->slots();
  const auto fresh = index->census();
  EXPECT_EQ(fresh.live, tier->size());
  std::uint64_t fewest_empty = fresh.empty;
  for (std::uint64_t round = 0; ever.size() < 20000 + 10 * slots; ++round) {
    const auto keys = distinct_keys(2000, false, 1000 + round);
    const auto rows = rows_of(keys, kDim);
    tier->insert(keys.data(), rows.data(), keys.size());
    ever.insert(ever.end(), keys.begin(), keys.end());
    if (round % 16 == 15) fewest_empty = std::min(fewest_empty, index->census().empty);
  }
  const auto census = index->census();
  fewest_empty = std::min(fewest_empty, census.empty);
  EXPECT_EQ(census.live, tier->size()) << "the index holds exactly the tier's keys";
  EXPECT_GT(index->counters().swept, 0u);
  EXPECT_GE(static_cast<double>(fewest_empty), 0.03 * static_cast<double>(slots))
      << "empty slots ran out: " << fewest_empty << " of " << slots << " (tombstones " << census.tombstones << ")";

  KeyStream zipf(ever, 1.05, 17);
  CountingResolver resolver{tier.get()};
  TestStream stream;
  for (int call = 0; call < 6; ++call) {
    const auto keys = zipf.draw(26624);
    GpuLookupResult r;
    const auto rows = run_lookup(*cache, keys, KeyDtype::kInt64, true, stream.get(), resolver.get(), &r);
    ASSERT_TRUE(same_bits(rows, reference(*tier, keys, false), keys, kDim)) << "call " << call;
  }
  EXPECT_EQ(resolver.calls.load(), 0u);
  EXPECT_GT(cache->defaults_served(), 0u) << "the evicted keys are in no tier";
}

// The miss kernel reads a record in pieces of 16 or 8 bytes by its alignment (records with access
// metadata are only 8-byte aligned at some dims), over 8, 16 or 32 lanes, a lane with one or several
// pieces, the last piece partly padding at odd dims: every shape returns the CPU tier's rows bit for
// bit, and the default for keys in no tier.
TEST(GpuHostTier, EveryRowShapeMatchesTheCpuTier) {
  SKIP_WITHOUT_GPU();
  for (const auto policy : {hps::OverflowPolicy::kEvictRandom, hps::OverflowPolicy::kEvictLeastUsed}) {
    for (const std::size_t dim : {3u, 4u, 12u, 17u, 32u, 36u, 64u, 72u, 128u, 200u, 256u}) {
      SCOPED_TRACE("dim " + std::to_string(dim) + " policy " + hps::to_string(policy));
      TierCache s = make_setup(20000, dim, CacheDtype::kFloat32, false, true, 0.1, 4, policy);
      std::vector<std::int64_t> universe = s.keys;
      const auto absent = distinct_keys(universe.size() / 50 + 1, false, 98);
      for (std::size_t i = 0; i < absent.size(); ++i) universe.insert(universe.begin() + 50 * i + 3, absent[i] ^ 1);
      KeyStream zipf(universe, 1.05, 11);
      CountingResolver resolver{s.tier.get()};
      TestStream stream;
      for (int call = 0; call < 6; ++call) {
        const auto keys = zipf.draw(call % 2 ? 8192 : 1024);
        GpuLookupResult r;
        const auto rows = run_lookup(*s.cache, keys, KeyDtype::kInt64, true, stream.get(), resolver.get(), &r);
        ASSERT_TRUE(same_bits(rows, reference(*s.tier, keys, false), keys, dim)) << "call " << call;
      }
      EXPECT_EQ(resolver.calls.load(), 0u);
      EXPECT_GT(s.cache->host_tier_rows_served(), 0u);
      EXPECT_GT(s.cache->defaults_served(), 0u);
    }
  }
}

// A 32-bit model's int64 keys can be invalid: the call reads the status back (one host wait),
// still throws for an invalid key, and otherwise answers as above.
TEST(GpuHostTier, InvalidKeysStillThrowWithATierAttached) {
  SKIP_WITHOUT_GPU();
  TierCache s = make_setup(20000, 16, CacheDtype::kFloat32, true, true);
  CountingResolver resolver{s.tier.get()};
  TestStream stream;
  std::vector<std::int64_t> keys(s.keys.begin(), s.keys.begin() + 3000);
  for (auto& k : keys) k &= 0xFFFFFFFFLL;  // canonical 32-bit keys
  // The tier holds the sign-extended form for negative int32 keys: store the canonical ones too.
  const auto values = rows_of(keys, 16);
  s.tier->insert(keys.data(), values.data(), keys.size());
  GpuLookupResult r;
  const auto rows = run_lookup(*s.cache, keys, KeyDtype::kInt64, false, stream.get(), resolver.get(), &r);
  EXPECT_TRUE(same_bits(rows, reference(*s.tier, keys, false), keys, 16));
  EXPECT_FALSE(r.no_host_wait);
  EXPECT_EQ(resolver.calls.load(), 0u);
  keys[1234] = std::int64_t{1} << 40;
  EXPECT_THROW(run_lookup(*s.cache, keys, KeyDtype::kInt64, false, stream.get(), resolver.get(), &r),
               hps::InvalidArgument);
}

// With a tier below the hash map, keys the hash map lacks go to the resolver (and only those).
TEST(GpuHostTier, KeysBelowTheHashMapGoToTheResolver) {
  SKIP_WITHOUT_GPU();
  TierCache s = make_setup(20000, 64, CacheDtype::kFloat32, false, false);
  // The "lower tier": another hash map holding the table plus keys the upper one lacks.
  HashMapTier lower(64, HashMapOptions{});
  auto extra = distinct_keys(3000, false, 1234);
  std::vector<std::int64_t> all = s.keys;
  all.insert(all.end(), extra.begin(), extra.end());
  const auto values = rows_of(all, 64);
  lower.insert(all.data(), values.data(), all.size());
  CountingResolver resolver{&lower};
  TestStream stream;
  KeyStream zipf(all, 1.05, 3);
  std::size_t answered_below = 0;
  for (int call = 0; call < 10; ++call) {
    const auto keys = zipf.draw(26624);
    GpuLookupResult r;
    const auto rows = run_lookup(*s.cache, keys, KeyDtype::kInt64, true, stream.get(), resolver.get(), &r);
    ASSERT_TRUE(same_bits(rows, reference(lower, keys, false), keys, 64)) << "call " << call;
    EXPECT_FALSE(r.no_host_wait);
    answered_below += r.missed_positions;
  }
  EXPECT_GT(answered_below, 0u);
  EXPECT_GT(resolver.keys.load(), 0u);
  EXPECT_GT(s.cache->host_tier_rows_served(), 0u);
  EXPECT_EQ(s.cache->defaults_served(), 0u) << "absent from the hash map is not absent from the table";
}

// An index that does not fit its share: attach says why, and lookups are served as before.
TEST(GpuHostTier, IndexTooBigFallsBackToTheHostPath) {
  SKIP_WITHOUT_GPU();
  TierCache s = make_setup(20000, 16, CacheDtype::kFloat32, false, true, 1e-9);
  std::string why;
  hps::HostTierLink link;
  link.tier = s.tier;
  link.last_tier = true;
  link.hbm_share = 1e-9;
  // (make_setup already tried once with this share; a second try must refuse the same way.)
  EXPECT_FALSE(s.cache->attach_host_tier(link, &why));
  EXPECT_NE(why.find("share"), std::string::npos) << why;
  EXPECT_EQ(s.cache->host_tier_index_bytes(), 0u);
  CountingResolver resolver{s.tier.get()};
  TestStream stream;
  KeyStream zipf(s.keys, 1.05, 4);
  const auto keys = zipf.draw(26624);
  GpuLookupResult r;
  const auto rows = run_lookup(*s.cache, keys, KeyDtype::kInt64, true, stream.get(), resolver.get(), &r);
  EXPECT_TRUE(same_bits(rows, reference(*s.tier, keys, false), keys, 16));
  EXPECT_GT(resolver.calls.load(), 0u);
  EXPECT_EQ(s.cache->host_tier_rows_served(), 0u);
}

// A tier that grows past its index through writes (Kafka adding keys): with room in the HBM share
// the index grows (a larger generation, every key in it once, nothing left to the host, and a graph
// captured before the growth reads the grown index when replayed); without room it stops taking
// keys, and the keys it lacks are served through the host, still equal to the CPU tier.
void index_grows_with_the_tier(bool room) {
  constexpr std::size_t kDim = 32, kRows = 20000, kAdded = 200000, kN = 8192;
  std::size_t free_bytes = 0, total_bytes = 0;
  cuda_ok(cudaMemGetInfo(&free_bytes, &total_bytes), "memory info");
  // The first generation of 20,000 rows takes 2.2 MB; without room the share holds it and no more.
  const double share = room ? 0.1 : 3e6 / static_cast<double>(total_bytes);
  TierCache s = make_setup(kRows, kDim, CacheDtype::kFloat32, false, true, share);
  int sm_count = 0;
  cuda_ok(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, 0), "sm count");
  std::string why;
  auto index = hps::cuda::HostTierIndex::create(0, s.tier, true, kDefault, share, sm_count, &why);
  ASSERT_NE(index, nullptr) << why;
  const std::uint64_t first_slots = index->slots();
  const std::size_t first_bytes = s.cache->host_tier_index_bytes();
  EXPECT_EQ(index->growths(), 0u);
  EXPECT_EQ(index->held_generations(), 1u);

  CountingResolver resolver{s.tier.get()};
  TestStream stream;
  const auto added = distinct_keys(kAdded, false, 555);
  std::vector<std::int64_t> universe = s.keys;
  universe.insert(universe.end(), added.begin(), added.end());
  const auto absent = distinct_keys(2000, false, 556);
  for (auto k : absent) universe.push_back(k ^ 3);
  KeyStream zipf(universe, 1.05, 21);

  // Captured before the tier grows (complete index, so the capture is allowed).
  DeviceBytes d_keys(kN * sizeof(std::int64_t));
  DeviceBytes d_out(kN * kDim * sizeof(float));
  cudaGraphExec_t exec = nullptr;
  if (room) {
    GpuLookupResult captured;
    exec = warm_and_capture(*s.cache, zipf.draw(kN), d_keys, d_out, stream.get(), resolver.get(), &captured);
  }

  // The added keys arrive in batches, as updates do.
  for (std::size_t begin = 0; begin < kAdded; begin += 10000) {
    const std::vector<std::int64_t> batch(added.begin() + begin, added.begin() + begin + 10000);
    const auto rows = rows_of(batch, kDim);
    s.tier->insert(batch.data(), rows.data(), batch.size());
  }
  ASSERT_EQ(s.tier->size(), kRows + kAdded);

  if (room) {
    EXPECT_GE(index->growths(), 1u);
    EXPECT_GE(index->slots(), 2 * first_slots);
    // No lookup ran while the tier grew, so each growth's flush freed the older generations: the
    // index holds its current entries, its counters and a staging buffer (16 bytes per key of a
    // batch of 10,000) and no more; an older generation would add at least first_slots entries.
    constexpr std::size_t kEntryBytes = sizeof(hps::cuda::TierEntry);
    EXPECT_EQ(index->held_generations(), 1u);
    EXPECT_GT(index->device_bytes(), index->slots() * kEntryBytes);
    EXPECT_LT(index->device_bytes(), (index->slots() + first_slots) * kEntryBytes);
    EXPECT_TRUE(index->absent_means_default()) << "the grown index holds every key";
    const auto census = index->census();
    EXPECT_EQ(census.live, s.tier->size()) << "every key once in the current generation";
    EXPECT_EQ(census.tombstones, 0u);
    EXPECT_EQ(index->counters().failed_adds, 0u);
    EXPECT_GE(s.cache->host_tier_index_bytes(), 2 * first_slots * kEntryBytes) << "stats count the grown generation";
  } else {
    EXPECT_EQ(index->growths(), 0u);
    EXPECT_EQ(index->held_generations(), 1u);
    EXPECT_EQ(index->slots(), first_slots);
    EXPECT_FALSE(index->absent_means_default()) << "an index that may not grow is incomplete";
    EXPECT_EQ(s.cache->host_tier_index_bytes(), first_bytes);
  }

  for (int call = 0; call < 6; ++call) {
    const auto keys = zipf.draw(kN);
    GpuLookupResult r;
    const auto rows = run_lookup(*s.cache, keys, KeyDtype::kInt64, true, stream.get(), resolver.get(), &r);
    ASSERT_TRUE(same_bits(rows, reference(*s.tier, keys, false), keys, kDim)) << "call " << call;
  }
  if (room) {
    EXPECT_EQ(resolver.calls.load(), 0u) << "every added key was found on the device";
    for (int replay = 0; replay < 3; ++replay) {
      const auto keys = zipf.draw(kN);
      const auto rows = replay_lookup(exec, d_keys, d_out, keys, kDim, stream.get());
      ASSERT_TRUE(same_bits(rows, reference(*s.tier, keys, false), keys, kDim)) << "replay " << replay;
    }
    cudaGraphExecDestroy(exec);
  } else {
    EXPECT_GT(resolver.keys.load(), 0u) << "keys the index lacks go through the host";
  }
  EXPECT_GT(s.cache->host_tier_rows_served(), 0u);
}

TEST(GpuHostTier, IndexGrowsWithTheTier) {
  SKIP_WITHOUT_GPU();
  index_grows_with_the_tier(true);
}

TEST(GpuHostTier, IndexWithoutRoomToGrowFallsBackToTheHostPath) {
  SKIP_WITHOUT_GPU();
  index_grows_with_the_tier(false);
}

// A lookup captured in a CUDA graph and replayed: each replay reads the key buffer as it is then
// and answers every key as the CPU tier does now (also after an update between replays).
// Captures that would need the host fail with InvalidArgument instead of hanging.
TEST(GpuHostTier, CapturedLookupReplays) {
  SKIP_WITHOUT_GPU();
  constexpr std::size_t kDim = 64, kN = 8192;
  TierCache s = make_setup(30000, kDim, CacheDtype::kFloat32, false, true);
  CountingResolver resolver{s.tier.get()};
  TestStream stream;
  KeyStream zipf(s.keys, 1.05, 8);
  DeviceBytes d_keys(kN * sizeof(std::int64_t));
  DeviceBytes d_out(kN * kDim * sizeof(float));
  auto keys = zipf.draw(kN);
  GpuLookupResult captured;
  cudaGraphExec_t exec = warm_and_capture(*s.cache, keys, d_keys, d_out, stream.get(), resolver.get(), &captured);
  EXPECT_TRUE(captured.no_host_wait);
  for (int replay = 0; replay < 6; ++replay) {
    keys = zipf.draw(kN);
    if (replay == 3) {
      // An update between replays (as the server does it: the tier, then the cache).
      std::vector<float> rows(keys.size() * kDim, 3.25f);
      s.tier->insert(keys.data(), rows.data(), 100);
      s.cache->update(keys.data(), rows.data(), 100);
    }
    const auto rows = replay_lookup(exec, d_keys, d_out, keys, kDim, stream.get());
    ASSERT_TRUE(same_bits(rows, reference(*s.tier, keys, false), keys, kDim)) << "replay " << replay;
  }
  EXPECT_EQ(resolver.calls.load(), 0u);
  cudaGraphExecDestroy(exec);

  // uint64 keys can be invalid: refused during capture, and the capture can be ended.
  cudaGraph_t graph = nullptr;
  cuda_ok(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeGlobal), "begin capture");
  EXPECT_THROW(s.cache->lookup(d_keys.as(), KeyDtype::kUInt64, true, kN, d_out.as<float>(),
                               hps::StreamView::cuda(stream.get()), resolver.get(), {}),
               hps::InvalidArgument);
  cudaStreamEndCapture(stream.get(), &graph);
  if (graph != nullptr) cudaGraphDestroy(graph);
  (void)cudaGetLastError();

  // A cache whose hash map has a tier below it needs the host: refused too.
  TierCache below = make_setup(5000, kDim, CacheDtype::kFloat32, false, false);
  cuda_ok(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeGlobal), "begin capture");
  EXPECT_THROW(below.cache->lookup(d_keys.as(), KeyDtype::kInt64, true, kN, d_out.as<float>(),
                                   hps::StreamView::cuda(stream.get()), resolver.get(), {}),
               hps::InvalidArgument);
  graph = nullptr;
  cudaStreamEndCapture(stream.get(), &graph);
  if (graph != nullptr) cudaGraphDestroy(graph);
  (void)cudaGetLastError();
}

// ---- races ----------------------------------------------------------------------------------------
// Lookups on several threads and streams while a writer updates rows in place, erases and
// re-inserts keys (records reused) and, with a tier below the hash map, overflows the hash map
// (evictions). Every returned row must be whole, belong to its key, and be a state the key held
// at some moment during the lookup: never torn, never older than a write that had returned.

/// Row of `key` at `version`: every element the same value, so a mix of versions shows.
float versioned(std::int64_t key, std::uint32_t version) {
  return static_cast<float>((static_cast<std::uint64_t>(key) % 64) * 262144 + version);  // < 2^24
}

struct History {
  // Per key: op i's outcome (version, or 0 = erased); begun/done: the last op started/returned.
  explicit History(std::size_t keys, std::size_t ops) : outcome(keys * ops), begun(keys), done(keys), ops(ops) {}
  std::vector<std::atomic<std::uint32_t>> outcome;
  std::vector<std::atomic<std::uint32_t>> begun, done;
  std::size_t ops;
};

/// What the writer does besides updates and erases of the keys in play: nothing, overflow the hash
/// map (evictions, with a tier below it), or add many keys not in play (the index grows, twice or
/// more, while lookups read it).
enum class Churn { kNone, kEvicting, kGrowing };

void lookups_race_writes(Churn churn) {
  const bool evicting = churn == Churn::kEvicting;
  constexpr std::size_t kDim = 32, kKeys = 4096, kOps = 400, kReaders = 4, kBatch = 8192;
  HashMapOptions options;
  options.num_partitions = 4;
  if (evicting) {
    options.overflow_margin = kKeys / 4 + 256;  // the fillers below push the main keys out
    options.overflow_resolution_target = 0.75;
  }
  auto tier = std::make_shared<HashMapTier>(kDim, options);
  std::vector<std::int64_t> keys(kKeys);
  for (std::size_t i = 0; i < kKeys; ++i) keys[i] = static_cast<std::int64_t>(i * 7919 + 13);
  History history(kKeys, kOps + 1);
  // The lower tier (evicting case): holds every key's latest state; the resolver reads it.
  std::mutex lower_mutex;
  std::unordered_map<std::int64_t, std::uint32_t> lower;
  auto write_rows = [&](const std::vector<std::size_t>& idx, std::uint32_t version) {
    std::vector<std::int64_t> k;
    std::vector<float> rows;
    for (auto i : idx) {
      k.push_back(keys[i]);
      rows.insert(rows.end(), kDim, versioned(keys[i], version));
    }
    return std::make_pair(k, rows);
  };
  {
    std::vector<std::size_t> all(kKeys);
    for (std::size_t i = 0; i < kKeys; ++i) all[i] = i, history.outcome[i * (kOps + 1)] = 1;
    auto [k, rows] = write_rows(all, 1);
    tier->insert(k.data(), rows.data(), k.size());
    for (auto key : k) lower[key] = 1;
  }
  GpuCacheOptions o;
  o.dim = kDim;
  o.capacity = kKeys / 4;  // lookups also race the cache's own evictions
  o.default_value = kDefault;
  o.hit_rate_threshold = 0.0;
  auto cache = GpuCache::create(o);
  hps::make_gpu_visible(*tier);
  hps::HostTierLink link;
  link.tier = tier;
  link.last_tier = !evicting;
  std::string why;
  ASSERT_TRUE(cache->attach_host_tier(link, &why)) << why;
  const std::size_t index_bytes_before = cache->host_tier_index_bytes();
  std::atomic<std::uint64_t> epoch{0};  // the server's MutationScope: odd while a write runs

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> checked{0}, wrong{0}, defaults{0};
  std::mutex message_mutex;
  std::string first_wrong;
  auto reader = [&](int id) {
    TestStream stream;
    std::mt19937_64 rng(100 + id);
    DeviceBytes d_keys(kBatch * sizeof(std::int64_t));
    DeviceBytes d_out(kBatch * kDim * sizeof(float));
    std::vector<std::int64_t> batch(kBatch);
    std::vector<std::size_t> index(kBatch);
    std::vector<std::uint32_t> done_before(kBatch), begun_after(kBatch);
    std::vector<float> rows(kBatch * kDim);
    auto resolve = [&](const std::int64_t* k, std::size_t n, float* out, std::uint8_t* found) {
      std::lock_guard lock(lower_mutex);
      for (std::size_t i = 0; i < n; ++i) {
        auto it = lower.find(k[i]);
        found[i] = it != lower.end();
        std::fill(out + i * kDim, out + (i + 1) * kDim, found[i] ? versioned(k[i], it->second) : kDefault);
      }
    };
    while (!stop.load()) {
      for (std::size_t i = 0; i < kBatch; ++i) {
        index[i] = rng() % kKeys;
        batch[i] = keys[index[i]];
        done_before[i] = history.done[index[i]].load(std::memory_order_acquire);
      }
      const std::uint64_t seen_epoch = epoch.load(std::memory_order_acquire);
      cuda_ok(cudaMemcpyAsync(d_keys.as(), batch.data(), kBatch * sizeof(std::int64_t), cudaMemcpyHostToDevice,
                              stream.get()),
              "keys");
      cache->lookup(d_keys.as(), KeyDtype::kInt64, true, kBatch, d_out.as<float>(), hps::StreamView::cuda(stream.get()),
                    resolve, [&] { return seen_epoch % 2 == 0 && epoch.load(std::memory_order_acquire) == seen_epoch; });
      cuda_ok(cudaMemcpyAsync(rows.data(), d_out.as(), rows.size() * sizeof(float), cudaMemcpyDeviceToHost,
                              stream.get()),
              "out");
      cuda_ok(cudaStreamSynchronize(stream.get()), "sync");
      for (std::size_t i = 0; i < kBatch; ++i) begun_after[i] = history.begun[index[i]].load(std::memory_order_acquire);
      for (std::size_t i = 0; i < kBatch; ++i) {
        const float* row = rows.data() + i * kDim;
        bool ok = std::all_of(row, row + kDim, [&](float v) { return std::memcmp(&v, row, sizeof(float)) == 0; });
        if (ok) {
          // Any state from the last returned op before the call to the last op begun after it.
          ok = false;
          for (std::uint32_t op = done_before[i]; op <= begun_after[i] && !ok; ++op) {
            const std::uint32_t v = history.outcome[index[i] * (kOps + 1) + op].load(std::memory_order_acquire);
            ok = v == 0 ? std::memcmp(row, &kDefault, sizeof(float)) == 0 : row[0] == versioned(batch[i], v);
          }
        }
        if (std::memcmp(row, &kDefault, sizeof(float)) == 0) defaults.fetch_add(1);
        if (!ok && wrong.fetch_add(1) == 0) {
          std::lock_guard lock(message_mutex);
          first_wrong = "key " + std::to_string(batch[i]) + " got " + std::to_string(row[0]) + " ops [" +
                        std::to_string(done_before[i]) + ", " + std::to_string(begun_after[i]) + "]";
        }
      }
      checked.fetch_add(kBatch);
    }
  };
  std::vector<std::thread> readers;
  for (std::size_t r = 0; r < kReaders; ++r) readers.emplace_back(reader, static_cast<int>(r));

  // The writer, as ParameterServer::update/erase: the lower tier, the hash map, then the cache.
  std::mt19937_64 rng(42);
  std::vector<std::uint32_t> op_of(kKeys, 0);
  std::int64_t filler = std::int64_t{1} << 40;
  for (std::uint32_t step = 0; step < kOps; ++step) {
    // 64 keys per step, each one op further.
    std::vector<std::size_t> idx;
    for (int i = 0; i < 64; ++i) {
      const std::size_t k = rng() % kKeys;
      if (std::find(idx.begin(), idx.end(), k) == idx.end() && op_of[k] < kOps) idx.push_back(k);
    }
    const bool erase = step % 5 == 4;
    const std::uint32_t version = step + 2;
    for (auto k : idx) {
      history.outcome[k * (kOps + 1) + op_of[k] + 1].store(erase ? 0 : version, std::memory_order_release);
      history.begun[k].store(op_of[k] + 1, std::memory_order_release);
    }
    epoch.fetch_add(1, std::memory_order_acq_rel);
    auto [k, rows] = write_rows(idx, version);
    {
      std::lock_guard lock(lower_mutex);
      for (auto key : k) {
        if (erase) {
          lower.erase(key);
        } else {
          lower[key] = version;
        }
      }
    }
    if (erase) {
      tier->erase(k.data(), k.size());
      cache->erase(k.data(), k.size());
    } else {
      tier->insert(k.data(), rows.data(), k.size());
      cache->update(k.data(), rows.data(), k.size());
    }
    epoch.fetch_add(1, std::memory_order_acq_rel);
    for (auto key_index : idx) history.done[key_index].store(++op_of[key_index], std::memory_order_release);
    if ((evicting && step % 2 == 0) || churn == Churn::kGrowing) {
      // New keys into the hash map (not in play): partitions overflow and evict main keys, or the
      // index grows to hold them.
      std::vector<std::int64_t> fillers(evicting ? 256 : 1024);
      for (auto& f : fillers) f = filler++;
      std::vector<float> filler_rows(fillers.size() * kDim, 0.0f);
      tier->insert(fillers.data(), filler_rows.data(), fillers.size());
    }
  }
  stop = true;
  for (auto& t : readers) t.join();
  cache->drain();
  EXPECT_EQ(wrong.load(), 0u) << "of " << checked.load() << " rows checked; first: " << first_wrong;
  EXPECT_GT(checked.load(), 0u);
  EXPECT_GT(cache->host_tier_rows_served(), 0u);
  if (evicting) EXPECT_GT(tier->evictions(), 0u);
  if (churn == Churn::kGrowing) {
    // 4,096 + 409,600 keys: the first generation held 87,040 at most; each growth at least doubles.
    EXPECT_GT(cache->host_tier_index_bytes(), 4 * index_bytes_before) << "the index did not grow twice";
  }
  ::testing::Test::RecordProperty("rows_checked", std::to_string(checked.load()));
  ::testing::Test::RecordProperty("host_tier_rows", std::to_string(cache->host_tier_rows_served()));
}

TEST(GpuHostTier, ConcurrentLookupsSeeWholeCurrentRows) {
  SKIP_WITHOUT_GPU();
  lookups_race_writes(Churn::kNone);
}

TEST(GpuHostTier, ConcurrentLookupsSeeWholeCurrentRowsWhileTheHashMapEvicts) {
  SKIP_WITHOUT_GPU();
  lookups_race_writes(Churn::kEvicting);
}

TEST(GpuHostTier, ConcurrentLookupsSeeWholeCurrentRowsWhileTheIndexGrows) {
  SKIP_WITHOUT_GPU();
  lookups_race_writes(Churn::kGrowing);
}

}  // namespace
