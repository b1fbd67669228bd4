// The CPU-memory tier's hooks for lock-free readers (record_hooks.hpp): the record header's
// checksum, the RecordListener notifications (inserts, erases, overflow evictions, record reuse,
// the snapshot on attach) and the HostMemoryRegistrar's ranges. A fake listener and a fake
// registrar stand in for the GPU layer; a reader thread plays the GPU's lock-free reader.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "detail/record_checksum.hpp"
#include "hps/error.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "hps/tiers/record_hooks.hpp"

using hps::HashMapOptions;
using hps::HashMapTier;
using hps::OverflowPolicy;

namespace {

std::uint64_t header_of(const void* record) {
  std::uint64_t h;
  std::memcpy(&h, record, 8);
  return h;
}

std::int64_t key_of(const void* record, const hps::RecordLayout& layout) {
  std::int64_t k;
  std::memcpy(&k, static_cast<const char*>(record) + layout.key_offset, 8);
  return k;
}

// Keeps what a GPU index would hold (key -> record) by applying the notifications in order,
// and the raw event log.
class FakeListener final : public hps::RecordListener {
 public:
  struct Event {
    bool added;
    std::int64_t key;
    const void* record;
  };
  void records_added(const std::int64_t* keys, const void* const* records, std::size_t n) override {
    std::lock_guard lock(mutex);
    std::set<std::int64_t> seen;
    for (std::size_t i = 0; i < n; ++i) {
      EXPECT_TRUE(seen.insert(keys[i]).second) << "key " << keys[i] << " twice in one notification";
      events.push_back({true, keys[i], records[i]});
      index[keys[i]] = records[i];
    }
  }
  void records_removed(const std::int64_t* keys, const void* const* records, std::size_t n) override {
    std::lock_guard lock(mutex);
    for (std::size_t i = 0; i < n; ++i) {
      events.push_back({false, keys[i], records[i]});
      auto it = index.find(keys[i]);
      if (it != index.end() && it->second == records[i]) index.erase(it);
    }
  }
  void flush() override { flushes.fetch_add(1); }

  std::mutex mutex;
  std::vector<Event> events;
  std::map<std::int64_t, const void*> index;
  std::atomic<int> flushes{0};
};

class FakeRegistrar final : public hps::HostMemoryRegistrar {
 public:
  void register_range(void* ptr, std::size_t bytes) override {
    std::lock_guard lock(mutex);
    EXPECT_TRUE(ranges.emplace(static_cast<char*>(ptr), bytes).second);
    total += bytes;
  }
  void unregister_range(void* ptr, std::size_t bytes) noexcept override {
    std::lock_guard lock(mutex);
    auto it = ranges.find(static_cast<char*>(ptr));
    if (it == ranges.end() || it->second != bytes) {
      ++mismatched;
      return;
    }
    ranges.erase(it);
  }
  // Whether [p, p + bytes) lies in registered ranges (adjacent ranges count as one).
  bool covers(const void* p, std::size_t bytes) {
    std::lock_guard lock(mutex);
    const char* at = static_cast<const char*>(p);
    const char* end = at + bytes;
    while (at < end) {
      auto it = ranges.upper_bound(const_cast<char*>(at));
      if (it == ranges.begin()) return false;
      --it;
      if (at >= it->first + it->second) return false;
      at = it->first + it->second;
    }
    return true;
  }
  std::mutex mutex;
  std::map<char*, std::size_t> ranges;
  std::size_t total = 0;
  int mismatched = 0;
};

std::vector<float> row_of(std::int64_t key, std::size_t dim, std::uint32_t version) {
  std::vector<float> row(dim);
  for (std::size_t j = 0; j < dim; ++j) row[j] = static_cast<float>((key % 1000) * 1000 + version % 1000);
  return row;
}

// Whether the tier's contents (by find) equal the listener's index, key for key.
void expect_index_matches_tier(HashMapTier& tier, FakeListener& listener, const std::vector<std::int64_t>& universe) {
  std::vector<float> rows(universe.size() * tier.dim());
  std::vector<std::uint8_t> found(universe.size());
  tier.find(universe.data(), universe.size(), rows.data(), found.data());
  const hps::RecordLayout layout = tier.record_layout();
  std::lock_guard lock(listener.mutex);
  for (std::size_t i = 0; i < universe.size(); ++i) {
    auto it = listener.index.find(universe[i]);
    ASSERT_EQ(found[i] != 0, it != listener.index.end()) << "key " << universe[i];
    if (!found[i]) continue;
    const void* record = it->second;
    EXPECT_EQ(key_of(record, layout), universe[i]);
    const std::uint64_t h = header_of(record);
    EXPECT_EQ(h & hps::kRecordBusy, 0u);
    EXPECT_EQ(h & hps::kRecordLive, hps::kRecordLive);
    EXPECT_EQ(0, std::memcmp(static_cast<const char*>(record) + layout.row_offset, &rows[i * tier.dim()],
                             tier.dim() * sizeof(float)));
  }
}

}  // namespace

TEST(HashMapRecordHooks, LayoutPutsTheHeaderFirstAndAlignsRecords) {
  for (auto policy : {OverflowPolicy::kEvictRandom, OverflowPolicy::kEvictLeastUsed}) {
    for (std::size_t dim : {1u, 2u, 7u, 16u}) {
      HashMapOptions options;
      options.overflow_policy = policy;
      HashMapTier tier(dim, options);
      const hps::RecordLayout layout = tier.record_layout();
      EXPECT_EQ(layout.key_offset, 8u);
      EXPECT_EQ(layout.row_offset, policy == OverflowPolicy::kEvictRandom ? 16u : 24u);
      EXPECT_EQ(layout.record_bytes % 8, 0u);  // every record, and so every row, 8-byte aligned
      EXPECT_GE(layout.record_bytes, layout.row_offset + 4 * dim);
      EXPECT_LT(layout.record_bytes, layout.row_offset + 4 * dim + 8);
    }
  }
}

// The checksum of the key and row the record holds, computed here from the values written.
std::uint64_t checksum(std::int64_t key, const std::vector<float>& row) {
  return hps::record_checksum::of_record(key, row.data(), static_cast<std::uint32_t>(row.size()));
}

TEST(HashMapRecordHooks, HeaderHoldsTheChecksumOfKeyAndRowAndTellsLiveFromDead) {
  HashMapOptions options;
  options.num_partitions = 1;
  HashMapTier tier(4, options);
  const std::int64_t early = 5;
  tier.insert(&early, row_of(early, 4, 1).data(), 1);  // before the registrar: stamped on install
  tier.set_host_memory_registrar(std::make_shared<FakeRegistrar>());
  FakeListener listener;
  tier.add_record_listener(&listener);
  ASSERT_EQ(listener.events.size(), 1u);
  EXPECT_EQ(header_of(listener.events[0].record), checksum(early, row_of(early, 4, 1)) | hps::kRecordLive);
  const std::int64_t key = 42;
  tier.insert(&key, row_of(key, 4, 1).data(), 1);
  ASSERT_EQ(listener.events.size(), 2u);
  const void* record = listener.events[1].record;
  const std::uint64_t h1 = header_of(record);
  EXPECT_EQ(h1, checksum(key, row_of(key, 4, 1)) | hps::kRecordLive);
  // An update in place: same record, the new row's checksum, still live, no notification.
  tier.insert(&key, row_of(key, 4, 2).data(), 1);
  const std::uint64_t h2 = header_of(record);
  EXPECT_EQ(h2, checksum(key, row_of(key, 4, 2)) | hps::kRecordLive);
  EXPECT_NE(h2, h1);
  EXPECT_EQ(listener.events.size(), 2u);
  // Erase: dead, the checksum of what it still holds (a reader with a stale address reads it whole).
  EXPECT_EQ(tier.erase(&key, 1), 1u);
  EXPECT_EQ(header_of(record), checksum(key, row_of(key, 4, 2)));
  // Reuse: the free list hands the same record to the next new key; live again.
  const std::int64_t other = 7;
  tier.insert(&other, row_of(other, 4, 1).data(), 1);
  ASSERT_EQ(listener.events.size(), 4u);
  EXPECT_FALSE(listener.events[2].added);
  EXPECT_EQ(listener.events[2].record, record);
  EXPECT_TRUE(listener.events[3].added);
  EXPECT_EQ(listener.events[3].record, record) << "the freed record is reused";
  EXPECT_EQ(header_of(record), checksum(other, row_of(other, 4, 1)) | hps::kRecordLive);
  EXPECT_EQ(key_of(record, tier.record_layout()), other);
  tier.remove_record_listener(&listener);
}

// The checksum changes with any word of the key or row, and with where a word sits.
TEST(HashMapRecordHooks, ChecksumCoversEveryWordAndItsPosition) {
  const std::vector<float> row = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
  const std::uint64_t base = checksum(9, row);
  EXPECT_EQ(base & hps::record_checksum::kFlagBits, 0u);
  EXPECT_NE(checksum(10, row), base);
  EXPECT_NE(checksum(9 + (std::int64_t{1} << 40), row), base);
  for (std::size_t i = 0; i < row.size(); ++i) {
    std::vector<float> changed = row;
    changed[i] = -changed[i];
    EXPECT_NE(checksum(9, changed), base) << "word " << i;
  }
  std::vector<float> swapped = row;
  std::swap(swapped[0], swapped[1]);
  EXPECT_NE(checksum(9, swapped), base);
}

TEST(HashMapRecordHooks, ListenerSeesSnapshotInsertsErasesAndReuse) {
  HashMapOptions options;
  options.num_partitions = 4;
  options.allocation_rate = 4096;  // many pages
  HashMapTier tier(3, options);
  std::vector<std::int64_t> universe;
  for (std::int64_t k = -500; k < 1500; ++k) universe.push_back(k * 7919);
  // Rows present before the listener arrives come as one snapshot.
  std::vector<float> rows;
  for (std::size_t i = 0; i < 1000; ++i) {
    const auto r = row_of(universe[i], 3, 1);
    rows.insert(rows.end(), r.begin(), r.end());
  }
  tier.insert(universe.data(), rows.data(), 1000);
  FakeListener listener;
  tier.add_record_listener(&listener);
  EXPECT_EQ(listener.index.size(), 1000u);
  EXPECT_GE(listener.flushes.load(), 1);
  expect_index_matches_tier(tier, listener, universe);

  // Inserts of new keys, updates of old ones (no events), erases, re-inserts into freed records.
  std::mt19937_64 rng(3);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::int64_t> batch;
    for (int i = 0; i < 64; ++i) batch.push_back(universe[rng() % universe.size()]);
    const int flushes = listener.flushes.load();
    if (round % 3 == 2) {
      tier.erase(batch.data(), batch.size());
    } else {
      std::vector<float> batch_rows;
      for (auto k : batch) {
        const auto r = row_of(k, 3, static_cast<std::uint32_t>(round));
        batch_rows.insert(batch_rows.end(), r.begin(), r.end());
      }
      tier.insert(batch.data(), batch_rows.data(), batch.size());
    }
    EXPECT_EQ(listener.flushes.load(), flushes + 1) << "one flush per write call";
    expect_index_matches_tier(tier, listener, universe);
  }
  tier.remove_record_listener(&listener);
  const std::size_t events = listener.events.size();
  const std::int64_t fresh = 123456789;
  tier.insert(&fresh, row_of(fresh, 3, 1).data(), 1);
  EXPECT_EQ(listener.events.size(), events) << "no events after remove_record_listener";
}

TEST(HashMapRecordHooks, OverflowEvictionsAreReportedAsRemovals) {
  for (auto policy : {OverflowPolicy::kEvictRandom, OverflowPolicy::kEvictLeastUsed, OverflowPolicy::kEvictOldest}) {
    HashMapOptions options;
    options.num_partitions = 1;
    options.overflow_margin = 100;
    options.overflow_policy = policy;
    options.overflow_resolution_target = 0.5;
    HashMapTier tier(2, options);
    FakeListener listener;
    tier.add_record_listener(&listener);
    std::vector<std::int64_t> universe;
    for (std::int64_t k = 0; k < 1000; ++k) {
      universe.push_back(k);
      tier.insert(&k, row_of(k, 2, 1).data(), 1);
    }
    ASSERT_GT(tier.evictions(), 0u);
    std::size_t removed = 0;
    for (const auto& e : listener.events) removed += e.added ? 0 : 1;
    EXPECT_EQ(removed, tier.evictions());
    EXPECT_EQ(listener.index.size(), tier.size());
    expect_index_matches_tier(tier, listener, universe);
    // Keys inserted in one batch that evicts: added, then removed in order, never lost.
    std::vector<std::int64_t> batch(300);
    std::vector<float> batch_rows;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      batch[i] = 5000 + static_cast<std::int64_t>(i);
      universe.push_back(batch[i]);
      const auto r = row_of(batch[i], 2, 2);
      batch_rows.insert(batch_rows.end(), r.begin(), r.end());
    }
    tier.insert(batch.data(), batch_rows.data(), batch.size());
    EXPECT_EQ(listener.index.size(), tier.size());
    expect_index_matches_tier(tier, listener, universe);
  }
}

TEST(HashMapRecordHooks, RegistrarCoversEveryPublishedRecordAndIsUndone) {
  auto registrar = std::make_shared<FakeRegistrar>();
  {
    HashMapOptions options;
    options.num_partitions = 2;
    options.allocation_rate = 64 << 10;  // several pages
    HashMapTier tier(8, options);
    std::vector<std::int64_t> keys(3000);
    std::vector<float> rows(keys.size() * 8, 1.0f);
    for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<std::int64_t>(i);
    tier.insert(keys.data(), rows.data(), 1000);  // before the registrar: registered on install
    tier.set_host_memory_registrar(registrar);
    EXPECT_THROW(tier.set_host_memory_registrar(registrar), hps::InvalidArgument);
    FakeListener listener;
    tier.add_record_listener(&listener);
    tier.insert(keys.data() + 1000, rows.data(), 2000);  // new pages registered as they fill
    const std::size_t record_bytes = tier.record_layout().record_bytes;
    {
      std::lock_guard lock(listener.mutex);
      ASSERT_EQ(listener.index.size(), keys.size());
      for (const auto& [key, record] : listener.index) {
        EXPECT_TRUE(registrar->covers(record, record_bytes)) << "record of key " << key << " not registered";
      }
    }
    // Pinning commits memory: registered bytes stay near the bytes used, not whole pages.
    EXPECT_LT(registrar->total, keys.size() * record_bytes + 2 * 2 * (std::size_t{4} << 20));
    tier.remove_record_listener(&listener);
  }
  EXPECT_TRUE(registrar->ranges.empty()) << "every range unregistered when the tier goes";
  EXPECT_EQ(registrar->mismatched, 0);
}

// A registrar that refuses (pinned memory exhausted): the write fails with its error, and the rows
// it stored before are still reported and flushed, so the listener's index matches the tier.
TEST(HashMapRecordHooks, AWriteThatThrowsStillReportsWhatItStored) {
  class Refusing final : public hps::HostMemoryRegistrar {
   public:
    void register_range(void*, std::size_t) override {
      if (++calls > 1) throw hps::OutOfMemory("no more pinned memory");
    }
    void unregister_range(void*, std::size_t) noexcept override {}
    int calls = 0;
  };
  HashMapOptions options;
  options.num_partitions = 1;
  options.allocation_rate = 64 << 10;  // a page per ~1,000 records: the second page needs a new registration
  HashMapTier tier(8, options);
  tier.set_host_memory_registrar(std::make_shared<Refusing>());
  FakeListener listener;
  tier.add_record_listener(&listener);
  const int flushes = listener.flushes.load();
  std::vector<std::int64_t> keys(5000);
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<std::int64_t>(i);
  std::vector<float> rows(keys.size() * 8, 2.0f);
  EXPECT_THROW(tier.insert(keys.data(), rows.data(), keys.size()), hps::OutOfMemory);
  EXPECT_GT(tier.size(), 0u);
  EXPECT_LT(tier.size(), keys.size());
  EXPECT_EQ(listener.flushes.load(), flushes + 1) << "flushed although the write threw";
  EXPECT_EQ(listener.index.size(), tier.size());
  expect_index_matches_tier(tier, listener, keys);
  tier.remove_record_listener(&listener);
}

// Installing a registrar stamps and registers every partition, several at once: one that refuses
// (pinned memory exhausted) fails the install with its error, whichever thread met it, and the rows
// stay as they were.
TEST(HashMapRecordHooks, ARegistrarThatRefusesFailsTheInstallWithItsError) {
  class Refusing final : public hps::HostMemoryRegistrar {
   public:
    void register_range(void*, std::size_t) override { throw hps::OutOfMemory("no more pinned memory"); }
    void unregister_range(void*, std::size_t) noexcept override {}
  };
  HashMapOptions options;
  options.num_partitions = 8;
  HashMapTier tier(4, options);
  std::vector<std::int64_t> keys(4000);
  std::vector<float> rows;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    keys[i] = static_cast<std::int64_t>(i);
    const auto r = row_of(keys[i], 4, 1);
    rows.insert(rows.end(), r.begin(), r.end());
  }
  tier.insert(keys.data(), rows.data(), keys.size());
  EXPECT_THROW(tier.set_host_memory_registrar(std::make_shared<Refusing>()), hps::OutOfMemory);
  std::vector<float> got(rows.size());
  std::vector<std::uint8_t> found(keys.size());
  tier.find(keys.data(), keys.size(), got.data(), found.data());
  EXPECT_EQ(std::count(found.begin(), found.end(), 1), static_cast<long>(keys.size()));
  EXPECT_EQ(got, rows);
}

// A reader without locks, as the GPU reads, and with its reads in the worst order for it: the row
// first, then the key, then the header (the GPU's reads of host memory are not ordered). Accepted
// rows must be whole (every element from one version) and belong to the wanted key, while a writer
// updates in place, erases and re-inserts (records reused) and the tier evicts.
TEST(HashMapRecordHooks, ChecksumReaderNeverAcceptsATornRow) {
  // Wide rows and few keys: the reader often meets a record mid-write.
  constexpr std::size_t kDim = 1024;
  constexpr std::int64_t kKeys = 16;
  HashMapOptions options;
  options.num_partitions = 1;
  options.overflow_margin = kKeys - 4;  // inserts beyond it evict
  HashMapTier tier(kDim, options);
  tier.set_host_memory_registrar(std::make_shared<FakeRegistrar>());
  FakeListener listener;
  tier.add_record_listener(&listener);
  const hps::RecordLayout layout = tier.record_layout();
  auto versioned = [](std::int64_t key, std::uint32_t version) {
    std::vector<float> row(kDim);
    for (std::size_t j = 0; j < kDim; ++j) row[j] = static_cast<float>(key * 1000000 + version);
    return row;
  };
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> accepted{0}, rejected{0}, torn{0};
  std::thread reader([&] {
    std::vector<std::pair<std::int64_t, const void*>> snapshot;
    std::vector<std::uint32_t> words(kDim);
    while (!stop.load(std::memory_order_relaxed)) {
      {
        std::lock_guard lock(listener.mutex);
        snapshot.assign(listener.index.begin(), listener.index.end());
      }
      for (const auto& [key, record] : snapshot) {
        auto* rec = const_cast<char*>(static_cast<const char*>(record));
        for (std::size_t j = 0; j < kDim; ++j) {
          words[j] = std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(rec + layout.row_offset + 4 * j))
                         .load(std::memory_order_relaxed);
        }
        const std::int64_t seen_key = std::atomic_ref<std::int64_t>(*reinterpret_cast<std::int64_t*>(rec + layout.key_offset))
                                          .load(std::memory_order_relaxed);
        const std::uint64_t header =
            std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(rec)).load(std::memory_order_relaxed);
        const bool whole = (header & hps::kRecordBusy) == 0 &&
                           hps::record_checksum::of_record(seen_key, words.data(), kDim) ==
                               (header & ~hps::record_checksum::kFlagBits);
        if (!whole || !(header & hps::kRecordLive) || seen_key != key) {
          rejected.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        accepted.fetch_add(1, std::memory_order_relaxed);
        float first;
        std::memcpy(&first, &words[0], 4);
        for (std::size_t j = 1; j < kDim; ++j) {
          if (words[j] != words[0]) {
            torn.fetch_add(1, std::memory_order_relaxed);
            break;
          }
        }
        if (static_cast<std::int64_t>(first) / 1000000 != key) torn.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  std::mt19937_64 rng(11);
  for (std::uint32_t version = 1; version < 300000; ++version) {
    const std::int64_t key = static_cast<std::int64_t>(rng() % kKeys);
    if (version % 7 == 0) {
      tier.erase(&key, 1);
    } else {
      tier.insert(&key, versioned(key, version).data(), 1);
    }
  }
  stop = true;
  reader.join();
  tier.remove_record_listener(&listener);
  EXPECT_EQ(torn.load(), 0u) << "accepted " << accepted.load() << ", rejected " << rejected.load();
  RecordProperty("accepted", std::to_string(accepted.load()));
  RecordProperty("rejected", std::to_string(rejected.load()));
  EXPECT_GT(accepted.load(), 0u);
  EXPECT_GT(rejected.load(), 0u) << "the reader never met a record that changed under it: the test shows nothing";
}
