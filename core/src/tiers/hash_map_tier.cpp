#include "hps/tiers/hash_map_tier.hpp"

#include <algorithm>
#include <bit>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <numeric>
#include <random>
#include <shared_mutex>
#include <thread>
#include <utility>

#include <sys/mman.h>

#include "detail/hashing.hpp"
#include "detail/record_checksum.hpp"
#include "detail/thread_pool.hpp"
#include "hps/error.hpp"

namespace hps {

HashMapOptions HashMapOptions::from_config(const VolatileDbConfig& config) {
  HashMapOptions options;
  options.num_partitions = std::max<std::size_t>(config.num_partitions, 1);
  options.allocation_rate = config.allocation_rate;
  options.overflow_margin = config.overflow_margin;
  options.overflow_policy = config.overflow_policy;
  options.overflow_resolution_target = config.overflow_resolution_target;
  return options;
}

namespace {

constexpr double kMaxLoadFactor = 0.8;
constexpr std::size_t kLargePartitionBytes = std::size_t{8} << 20;  // rows worth huge pages
constexpr std::size_t kMinIndexSlots = 16;
constexpr std::uint32_t kNoRecord = 0;  // a slot's `record` holds record number + 1; 0 = empty
// Record layout (record_hooks.hpp): header, key, [metadata], row; 8-byte aligned records.
constexpr std::size_t kKeyOffset = 8;
constexpr std::size_t kMetaOffset = 16;
// The arena is registered with a HostMemoryRegistrar (page-locked) in stretches of this many bytes
// as records reach them: pinning commits memory, and a page is mostly untouched address space.
constexpr std::size_t kRegisterUnit = std::size_t{4} << 20;
// Listener notifications are delivered in batches of at most this many records.
constexpr std::size_t kNotifyBatch = std::size_t{1} << 16;

std::size_t round_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }

// The index's growth rule, shared by the partitions and HashMapOptions::index_slots (the plan).
std::size_t slots_to_reserve(std::size_t rows) {
  return static_cast<std::size_t>(static_cast<double>(rows) / kMaxLoadFactor) + 1;
}
bool index_too_full(std::size_t rows, std::size_t slots) {
  return static_cast<double>(rows) > kMaxLoadFactor * static_cast<double>(slots);
}

// One index slot. `hash` is the upper half of the key's 64-bit hash: it picks the home slot
// (multiply-shift onto the slot count) and doubles as a fingerprint, so probing compares keys only
// on a fingerprint match and rehashing never reads the records.
struct Slot {
  std::uint32_t hash;
  std::uint32_t record;
};
static_assert(sizeof(Slot) == 8);

inline std::size_t home_slot(std::uint32_t hash, std::size_t slots) {
  return static_cast<std::size_t>((std::uint64_t{hash} * slots) >> 32);
}

inline std::size_t next_slot(std::size_t slot, std::size_t slots) { return slot + 1 == slots ? 0 : slot + 1; }

// Memory mapped straight from the OS, for the index's slot arrays and the arena's pages: a rehash
// hands an old slot array back at once (a heap block could stay in the process after it was
// freed), and large regions that will be filled ask for transparent huge pages. A lookup touches
// rows at random over gigabytes, and with 4 KiB pages nearly every row costs a TLB miss and a page
// walk on top of its DRAM access. (A partition's first value page asks only when reserve()
// announced many rows: a small table would otherwise take 2 MiB of memory per partition.)
class MappedRegion {
 public:
  MappedRegion() = default;
  MappedRegion(std::size_t bytes, const char* what, bool huge) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    HPS_EXPECTS(p != MAP_FAILED, OutOfMemory, "volatile_db: cannot map ", bytes, " bytes for ", what);
    if (huge && bytes >= kHugePage) ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: fine if refused
    data_ = static_cast<char*>(p);  // anonymous mappings start zeroed
  }
  ~MappedRegion() { release(); }
  MappedRegion(MappedRegion&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  MappedRegion& operator=(MappedRegion&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  char* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;
  void release() {
    if (data_) ::munmap(data_, bytes_);
  }
  char* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// The index's slot array (zeroed: every slot empty).
class SlotArray {
 public:
  SlotArray() = default;
  explicit SlotArray(std::size_t n) : region_(n * sizeof(Slot), "an index", true), n_(n) {}
  std::size_t size() const { return n_; }
  Slot& operator[](std::size_t i) { return data()[i]; }
  const Slot& operator[](std::size_t i) const { return data()[i]; }
  const Slot* begin() const { return data(); }
  const Slot* end() const { return data() + n_; }

 private:
  Slot* data() const { return reinterpret_cast<Slot*>(region_.data()); }
  MappedRegion region_;
  std::size_t n_ = 0;
};

}  // namespace

// A partition: an open-addressing index over an arena of fixed-size records
// {header, int64 key, [uint32 access metadata, 4 bytes unused], float row[dim]} kept in pages that never move.
class HashMapTier::Partition {
 public:
  Partition(std::size_t dim, const HashMapOptions& options, std::uint64_t seed)
      : dim_(dim),
        options_(options),
        // 4 bytes of access metadata take 8, so rows stay 8-byte aligned for the GPU's wide reads of
        // them (host_tier_kernels.cu); with 4 * dim a multiple of 8 the record is no larger for it.
        meta_bytes_(options.overflow_policy == OverflowPolicy::kEvictRandom ? 0 : 8),
        row_offset_(kMetaOffset + meta_bytes_),
        record_bytes_(options.record_bytes(dim)),
        rng_(seed) {
    // Pages hold a power-of-two number of records so a record number splits into page and offset
    // with a shift and a mask.
    std::size_t per_page = 1;
    while (per_page * 2 * record_bytes_ <= std::max<std::size_t>(options.allocation_rate, record_bytes_)) per_page *= 2;
    page_shift_ = static_cast<unsigned>(std::countr_zero(per_page));
    slots_ = SlotArray(kMinIndexSlots);
  }

  ~Partition() {
    // Before the pages are unmapped (members are destroyed after this body).
    for (const auto& [ptr, bytes] : registered_ranges_) registrar_->unregister_range(ptr, bytes);
  }
  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;

  std::size_t record_bytes() const { return record_bytes_; }
  std::size_t row_offset() const { return row_offset_; }

  mutable std::shared_mutex mutex;

  std::size_t size() const { return size_; }
  std::size_t evictions() const { return evictions_; }

  std::size_t memory_bytes() const {
    // Bytes touched: records up to the high-water mark, the index and the bookkeeping. Untouched
    // page tails are reserved address space that the OS has not backed yet.
    return std::size_t{high_water_} * record_bytes_ + slots_.size() * sizeof(Slot) +
           free_records_.capacity() * sizeof(std::uint32_t) + pages_.capacity() * sizeof(void*);
  }

  void reserve(std::size_t rows) {
    const std::size_t wanted = slots_to_reserve(rows);
    if (wanted > slots_.size()) rehash(wanted);
    expect_large_ = expect_large_ || rows * record_bytes_ >= kLargePartitionBytes;
  }

  // --- reads (caller holds the shared lock) ------------------------------------------------------

  // Probes for (key, hash): returns the record number + 1, or kNoRecord.
  std::uint32_t probe(std::int64_t key, std::uint32_t hash) const {
    const std::size_t n = slots_.size();
    for (std::size_t s = home_slot(hash, n);; s = next_slot(s, n)) {
      const Slot slot = slots_[s];
      if (slot.record == kNoRecord) return kNoRecord;
      if (slot.hash == hash && record_key(slot.record - 1) == key) return slot.record;
    }
  }

  void prefetch_home(std::uint32_t hash) const { __builtin_prefetch(&slots_[home_slot(hash, slots_.size())]); }

  // First slot whose fingerprint matches (a guess, verified later against the record's key).
  std::uint32_t guess(std::uint32_t hash) const {
    const std::size_t n = slots_.size();
    for (std::size_t s = home_slot(hash, n);; s = next_slot(s, n)) {
      const Slot slot = slots_[s];
      if (slot.record == kNoRecord || slot.hash == hash) return slot.record;
    }
  }

  void prefetch_record(std::uint32_t record_plus1) const {
    const char* rec = record_ptr(record_plus1 - 1);
    for (std::size_t off = 0; off < record_bytes_; off += 64) __builtin_prefetch(rec + off);
  }

  bool record_matches(std::uint32_t record_plus1, std::int64_t key) const {
    return record_key(record_plus1 - 1) == key;
  }

  void copy_row(std::uint32_t record_plus1, float* out) const {
    std::memcpy(out, record_ptr(record_plus1 - 1) + row_offset_, dim_ * 4);
  }

  // Access metadata is written under the shared lock, so through relaxed atomics.
  void touch(std::uint32_t record_plus1, std::uint32_t now) const {
    if (meta_bytes_ == 0) return;
    auto* meta = reinterpret_cast<std::uint32_t*>(record_ptr(record_plus1 - 1) + kMetaOffset);
    std::atomic_ref<std::uint32_t> word(*meta);
    if (options_.overflow_policy == OverflowPolicy::kEvictOldest) {
      word.store(now, std::memory_order_relaxed);
    } else {
      const std::uint32_t count = word.load(std::memory_order_relaxed);
      if (count != UINT32_MAX) word.store(count + 1, std::memory_order_relaxed);
    }
  }

  template <typename Fn>
  void for_each_record(Fn&& fn) const {
    for (const Slot& slot : slots_) {
      if (slot.record != kNoRecord) fn(record_key(slot.record - 1), record_ptr(slot.record - 1) + row_offset_);
    }
  }

  // --- writes (caller holds the exclusive lock) ---------------------------------------------------

  // Stores (key, row); returns true when the key was new. `overwrite` false keeps an existing row.
  bool put(std::int64_t key, std::uint32_t hash, const float* row, bool overwrite, std::uint32_t now) {
    const std::uint32_t existing = probe(key, hash);
    if (existing != kNoRecord) {
      if (overwrite) {
        char* rec = record_ptr(existing - 1);
        const std::uint64_t sum = checksum_bits(key, row);
        begin_write(rec);
        std::memcpy(rec + row_offset_, row, dim_ * 4);
        end_write(rec, true, sum);
        if (options_.overflow_policy == OverflowPolicy::kEvictOldest) set_meta(existing - 1, now);
      }
      return false;
    }
    if (size_ >= options_.overflow_margin) resolve_overflow();
    if (index_too_full(size_ + 1, slots_.size())) rehash(slots_.size() * 2);
    const std::uint32_t record = allocate_record();
    char* rec = record_ptr(record);
    const std::uint64_t sum = checksum_bits(key, row);
    begin_write(rec);  // a reused record may still be read by a lock-free reader with a stale address
    std::memcpy(rec + kKeyOffset, &key, 8);
    std::memcpy(rec + row_offset_, row, dim_ * 4);
    end_write(rec, true, sum);
    if (meta_bytes_) set_meta(record, options_.overflow_policy == OverflowPolicy::kEvictOldest ? now : 0);
    link(hash, record + 1);
    ++size_;
    note(Event::kAdded, key, rec);
    return true;
  }

  bool remove(std::int64_t key, std::uint32_t hash) {
    const std::size_t n = slots_.size();
    for (std::size_t s = home_slot(hash, n);; s = next_slot(s, n)) {
      const Slot slot = slots_[s];
      if (slot.record == kNoRecord) return false;
      if (slot.hash == hash && record_key(slot.record - 1) == key) {
        char* rec = record_ptr(slot.record - 1);
        const std::uint64_t sum = checksum_bits(key, rec + row_offset_);
        begin_write(rec);
        end_write(rec, false, sum);
        unlink_at(s);
        note(Event::kRemoved, key, rec);
        return true;
      }
    }
  }

  // --- lock-free readers (caller holds the exclusive lock) ------------------------------------------

  // Registers the stretches that hold records now, and from now on those that new records reach;
  // every record made so far (free ones too: a reader may hold a stale address) gets its checksum.
  void set_registrar(std::shared_ptr<HostMemoryRegistrar> registrar) {
    registrar_ = std::move(registrar);
    for (std::uint32_t record = 0; record < high_water_; ++record) {
      char* rec = record_ptr(record);
      const bool live = (header(rec).load(std::memory_order_relaxed) & kRecordLive) != 0;
      const std::uint64_t sum = checksum_bits(record_key(record), rec + row_offset_);
      begin_write(rec);
      end_write(rec, live, sum);
    }
    for (std::size_t p = 0; p < pages_.size(); ++p) {
      const std::size_t records = std::min<std::size_t>(high_water_ - (p << page_shift_), std::size_t{1} << page_shift_);
      ensure_registered(p, records * record_bytes_);
    }
  }

  void add_listener(RecordListener* listener) {
    listeners_.push_back(listener);
    std::vector<std::int64_t> keys;
    std::vector<const void*> records;
    keys.reserve(std::min(size_, kNotifyBatch));
    records.reserve(keys.capacity());
    for (const Slot& slot : slots_) {
      if (slot.record == kNoRecord) continue;
      keys.push_back(record_key(slot.record - 1));
      records.push_back(record_ptr(slot.record - 1));
      if (keys.size() == kNotifyBatch) {
        listener->records_added(keys.data(), records.data(), keys.size());
        keys.clear();
        records.clear();
      }
    }
    if (!keys.empty()) listener->records_added(keys.data(), records.data(), keys.size());
  }

  void remove_listener(RecordListener* listener) {
    deliver();
    listeners_.erase(std::remove(listeners_.begin(), listeners_.end(), listener), listeners_.end());
  }

  // Hands the notifications queued in this critical section to the listeners (lock still held).
  void deliver() {
    if (pending_keys_.empty()) return;
    for (RecordListener* listener : listeners_) {
      if (pending_kind_ == Event::kAdded) {
        listener->records_added(pending_keys_.data(), pending_records_.data(), pending_keys_.size());
      } else {
        listener->records_removed(pending_keys_.data(), pending_records_.data(), pending_keys_.size());
      }
    }
    pending_keys_.clear();
    pending_records_.clear();
  }

 private:
  char* record_ptr(std::uint32_t record) const {
    const std::size_t mask = (std::size_t{1} << page_shift_) - 1;
    return pages_[record >> page_shift_].data() + (record & mask) * record_bytes_;
  }

  std::int64_t record_key(std::uint32_t record) const {
    std::int64_t key;
    std::memcpy(&key, record_ptr(record) + kKeyOffset, 8);
    return key;
  }

  void set_meta(std::uint32_t record, std::uint32_t value) { std::memcpy(record_ptr(record) + kMetaOffset, &value, 4); }

  std::uint32_t get_meta(std::uint32_t record) const {
    std::uint32_t value;
    std::memcpy(&value, record_ptr(record) + kMetaOffset, 4);
    return value;
  }

  // The writer side of the record header (record_hooks.hpp): the busy store, a release fence, the
  // data, a release store of the new header. The fences keep the compiler from moving the data
  // writes across the header writes. Only writers holding the partition's exclusive lock call
  // these, so the header has one writer at a time. Once a registrar makes the arena readable by
  // the GPU, the new header holds the checksum of the record's key and row (the GPU's reads of
  // mapped host memory are not ordered among themselves; the checksum lets it read header, key and
  // row at once); before, no reader goes without the lock, and the header holds the flags alone.
  static std::atomic_ref<std::uint64_t> header(char* rec) {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(rec));
  }
  static void begin_write(char* rec) {
    auto h = header(rec);
    h.store(h.load(std::memory_order_relaxed) | kRecordBusy, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
  }
  // `sum`: checksum_bits() of what the record holds once written, computed by the caller before
  // begin_write, so the record stays busy (and GPU readers retry) only while its bytes are copied.
  static void end_write(char* rec, bool live, std::uint64_t sum) {
    header(rec).store(sum | (live ? kRecordLive : 0), std::memory_order_release);
  }
  // The header's checksum bits for a record holding `key` and `row` (none before a registrar).
  std::uint64_t checksum_bits(std::int64_t key, const void* row) const {
    return registrar_ ? record_checksum::of_record(key, row, static_cast<std::uint32_t>(dim_)) : 0;
  }

  enum class Event { kAdded, kRemoved };
  // Queues a notification; a change of kind delivers the queue first, so listeners hear every
  // key's changes in order.
  void note(Event kind, std::int64_t key, const char* rec) {
    if (listeners_.empty()) return;
    if (!pending_keys_.empty() && (pending_kind_ != kind || pending_keys_.size() == kNotifyBatch)) deliver();
    pending_kind_ = kind;
    pending_keys_.push_back(key);
    pending_records_.push_back(rec);
  }

  // Registers page p's bytes [0, used) (rounded up to kRegisterUnit) if a registrar is installed.
  void ensure_registered(std::size_t page, std::size_t used) {
    if (!registrar_) return;
    if (registered_.size() <= page) registered_.resize(page + 1, 0);
    if (used <= registered_[page]) return;
    const std::size_t end = std::min(round_up(used, kRegisterUnit), pages_[page].bytes());
    char* from = pages_[page].data() + registered_[page];
    registrar_->register_range(from, end - registered_[page]);
    registered_ranges_.emplace_back(from, end - registered_[page]);
    registered_[page] = end;
  }

  std::uint32_t allocate_record() {
    if (!free_records_.empty()) {
      const std::uint32_t record = free_records_.back();
      free_records_.pop_back();
      return record;
    }
    HPS_EXPECTS(high_water_ < UINT32_MAX - 1, OutOfMemory,
                "a volatile_db partition holds at most 4294967294 rows; raise volatile_db.num_partitions");
    const std::size_t page = high_water_ >> page_shift_;
    if (page == pages_.size()) {
      // Backed by the OS only where touched, so a large allocation_rate costs address space only.
      pages_.emplace_back((std::size_t{1} << page_shift_) * record_bytes_, "a value page",
                          expect_large_ || !pages_.empty());
    }
    const std::size_t in_page = high_water_ - (page << page_shift_);
    ensure_registered(page, (in_page + 1) * record_bytes_);  // before the record can be published
    return high_water_++;
  }

  void link(std::uint32_t hash, std::uint32_t record_plus1) {
    const std::size_t n = slots_.size();
    std::size_t s = home_slot(hash, n);
    while (slots_[s].record != kNoRecord) s = next_slot(s, n);
    slots_[s] = Slot{hash, record_plus1};
  }

  // Removes slot s and shifts later members of its probe run back (no tombstones, so probe
  // lengths never degrade).
  void unlink_at(std::size_t s) {
    const std::size_t n = slots_.size();
    free_records_.push_back(slots_[s].record - 1);
    --size_;
    std::size_t hole = s;
    for (std::size_t j = next_slot(s, n);; j = next_slot(j, n)) {
      const Slot slot = slots_[j];
      if (slot.record == kNoRecord) break;
      const std::size_t home = home_slot(slot.hash, n);
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const bool home_between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
      if (!home_between) {
        slots_[hole] = slot;
        hole = j;
      }
    }
    slots_[hole] = Slot{0, kNoRecord};
  }

  void rehash(std::size_t wanted) {
    SlotArray old = std::move(slots_);
    slots_ = SlotArray(std::max(wanted, kMinIndexSlots));
    for (const Slot& slot : old) {
      if (slot.record != kNoRecord) link(slot.hash, slot.record);
    }
  }

  // Evicts down to round(margin * target) rows: random victims, or the least used / oldest by
  // a linear-time selection over the access metadata.
  void resolve_overflow() {
    const auto target = static_cast<std::size_t>(
        static_cast<double>(options_.overflow_margin) * options_.overflow_resolution_target + 0.5);
    const std::size_t keep = std::min(target, options_.overflow_margin - 1);
    if (size_ <= keep) return;
    // At least 1% of the margin at a time: with a target near 1 each insert would otherwise scan
    // the whole partition to evict one row.
    const std::size_t victims = std::min(size_, std::max(size_ - keep, options_.overflow_margin / 100));
    std::vector<std::pair<std::uint32_t, std::uint32_t>> candidates;  // (metadata, slot index)
    candidates.reserve(size_);
    for (std::size_t s = 0; s < slots_.size(); ++s) {
      if (slots_[s].record == kNoRecord) continue;
      const std::uint32_t rank =
          meta_bytes_ ? get_meta(slots_[s].record - 1) : static_cast<std::uint32_t>(rng_());
      candidates.emplace_back(rank, static_cast<std::uint32_t>(s));
    }
    std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(victims - 1),
                     candidates.end());
    // Slot positions move during backward-shift deletion, so collect the victims' keys first.
    std::vector<std::pair<std::int64_t, std::uint32_t>> doomed;
    doomed.reserve(victims);
    for (std::size_t i = 0; i < victims; ++i) {
      const Slot slot = slots_[candidates[i].second];
      doomed.emplace_back(record_key(slot.record - 1), slot.hash);
    }
    for (const auto& [key, hash] : doomed) remove(key, hash);
    evictions_ += victims;
  }

  std::size_t dim_;
  HashMapOptions options_;
  std::size_t meta_bytes_;
  std::size_t row_offset_;
  std::size_t record_bytes_;
  unsigned page_shift_ = 0;
  SlotArray slots_;
  std::vector<MappedRegion> pages_;
  std::vector<std::uint32_t> free_records_;
  std::uint32_t high_water_ = 0;
  std::size_t size_ = 0;
  std::size_t evictions_ = 0;
  bool expect_large_ = false;  // reserve() announced enough rows to fill huge pages
  std::mt19937_64 rng_;
  // GPU visibility (record_hooks.hpp); all empty unless the GPU layer installed them.
  std::shared_ptr<HostMemoryRegistrar> registrar_;
  std::vector<std::size_t> registered_;  // per page: bytes registered from its start
  std::vector<std::pair<char*, std::size_t>> registered_ranges_;
  std::vector<RecordListener*> listeners_;
  Event pending_kind_ = Event::kAdded;
  std::vector<std::int64_t> pending_keys_;
  std::vector<const void*> pending_records_;
};

namespace {

// Hands a partition's queued notifications to its listeners when a write's critical section ends,
// also when the write throws (declared after the lock, so it runs before the unlock).
class DeliverOnExit {
 public:
  explicit DeliverOnExit(HashMapTier::Partition& part) : part_(part) {}
  ~DeliverOnExit();
  DeliverOnExit(const DeliverOnExit&) = delete;
  DeliverOnExit& operator=(const DeliverOnExit&) = delete;

 private:
  HashMapTier::Partition& part_;
};

// Keys of one call grouped by partition (a stable counting sort), with their hashes, so each
// partition's lock is taken once per call and the work is O(n) whatever the partition count.
struct Grouping {
  std::vector<std::uint32_t> hash_hi;  // per position: upper hash half (home slot + fingerprint)
  std::vector<std::uint32_t> order;    // positions, partition by partition, in input order within one
  std::vector<std::size_t> begin;      // partition p owns order[begin[p] .. begin[p + 1])
};

/// The low half of a key's hash picks its partition; the high half its slot and fingerprint.
std::size_t partition_of_hash(std::uint64_t h, std::size_t partitions) {
  return static_cast<std::size_t>((std::uint64_t{static_cast<std::uint32_t>(h)} * partitions) >> 32);
}

Grouping& group_by_partition(const std::int64_t* keys, std::size_t n, std::size_t partitions) {
  thread_local Grouping g;  // reused across calls: no allocation on the hot path once warm
  g.hash_hi.resize(n);
  g.order.resize(n);
  g.begin.assign(partitions + 1, 0);
  thread_local std::vector<std::uint32_t> part_of;
  part_of.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t h = splitmix64(keys[i]);
    g.hash_hi[i] = static_cast<std::uint32_t>(h >> 32);
    const auto p = static_cast<std::uint32_t>(partition_of_hash(h, partitions));
    part_of[i] = p;
    ++g.begin[p + 1];
  }
  for (std::size_t p = 0; p < partitions; ++p) g.begin[p + 1] += g.begin[p];
  thread_local std::vector<std::size_t> cursor;
  cursor.assign(g.begin.begin(), g.begin.end() - 1);
  for (std::size_t i = 0; i < n; ++i) g.order[cursor[part_of[i]]++] = static_cast<std::uint32_t>(i);
  return g;
}

// Looks up `count` positions of one partition with a software pipeline: the index slot of key
// i + 2A is prefetched while the record of key i + A is prefetched and key i is copied, so many
// DRAM misses are in flight at once instead of one after another.
std::size_t find_in_partition(const HashMapTier::Partition& part, const std::int64_t* keys, const Grouping& g,
                              const std::uint32_t* positions, std::size_t count, std::size_t dim, float* rows,
                              std::uint8_t* found, std::uint32_t now) {
  constexpr std::size_t kAhead = 8;
  constexpr std::size_t kRing = 2 * kAhead;  // guesses live from stage two until stage three
  std::uint32_t guesses[kRing];
  std::size_t hits = 0;
  for (std::size_t i = 0; i < count + 2 * kAhead; ++i) {
    if (i < count) part.prefetch_home(g.hash_hi[positions[i]]);
    if (i >= kAhead && i - kAhead < count) {
      const std::uint32_t guess = part.guess(g.hash_hi[positions[i - kAhead]]);
      guesses[(i - kAhead) % kRing] = guess;
      if (guess != 0) part.prefetch_record(guess);
    }
    if (i >= 2 * kAhead) {
      const std::size_t k = i - 2 * kAhead;
      const std::uint32_t pos = positions[k];
      std::uint32_t record = guesses[k % kRing];
      // A fingerprint match on another key (rare) falls back to a full probe.
      if (record != 0 && !part.record_matches(record, keys[pos])) record = part.probe(keys[pos], g.hash_hi[pos]);
      if (record != 0) {
        part.copy_row(record, rows + std::size_t{pos} * dim);
        part.touch(record, now);
        found[pos] = 1;
        ++hits;
      } else {
        found[pos] = 0;
      }
    }
  }
  return hits;
}

}  // namespace

DeliverOnExit::~DeliverOnExit() {
  try {
    part_.deliver();
  } catch (...) {  // out of memory queueing a notification: the listener misses it (a faster path lost, never a row)
  }
}

HashMapTier::HashMapTier(std::size_t dim, const HashMapOptions& options) : dim_(dim), options_(options) {
  HPS_EXPECTS(dim > 0, InvalidArgument, "hash map tier: dim must be positive");
  HPS_EXPECTS(dim <= kMaxDim, InvalidArgument, "hash map tier: dim ", dim, " exceeds the limit of ", kMaxDim,
              " values per row");
  HPS_EXPECTS(options.num_partitions > 0, InvalidArgument, "hash map tier: num_partitions must be positive");
  HPS_EXPECTS(options.overflow_margin > 0, InvalidArgument, "hash map tier: overflow_margin must be positive");
  partitions_.reserve(options.num_partitions);
  for (std::size_t p = 0; p < options.num_partitions; ++p) {
    partitions_.push_back(std::make_unique<Partition>(dim, options, 0x9e3779b97f4a7c15ULL * (p + 1)));
  }
}

HashMapTier::~HashMapTier() = default;

std::size_t HashMapTier::find(const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found) {
  if (n == 0) return 0;
  const std::uint32_t now = clock_.fetch_add(1, std::memory_order_relaxed) + 1;
  const Grouping& g = group_by_partition(keys, n, partitions_.size());
  std::size_t hits = 0;
  for (std::size_t p = 0; p < partitions_.size(); ++p) {
    const std::size_t count = g.begin[p + 1] - g.begin[p];
    if (count == 0) continue;
    std::shared_lock lock(partitions_[p]->mutex);
    hits += find_in_partition(*partitions_[p], keys, g, g.order.data() + g.begin[p], count, dim_, rows, found, now);
  }
  return hits;
}

// Every write call ends by flushing the listeners: finish() on the way out without an error (its
// errors reach the caller), the destructor when the call threw (the rows stored before the error
// were reported and must still reach lock-free readers; the first error is the one reported).
// (Not std::uncaught_exceptions(): where a binary carries its own static copy of the C++ runtime,
// as the GPU machine's toolchain builds them, it counts in the other copy.)
class HashMapTier::ListenerFlush {
 public:
  explicit ListenerFlush(HashMapTier& tier) : tier_(tier) {}
  ~ListenerFlush() {
    if (finished_) return;
    try {
      tier_.flush_listeners();
    } catch (...) {
    }
  }
  void finish() {
    finished_ = true;
    tier_.flush_listeners();
  }
  ListenerFlush(const ListenerFlush&) = delete;
  ListenerFlush& operator=(const ListenerFlush&) = delete;

 private:
  HashMapTier& tier_;
  bool finished_ = false;
};

namespace {

/// insert() into a tier that must not evict (HashMapOptions::evict_on_overflow false): the whole
/// batch, or nothing when it would take a partition past overflow_margin.
void insert_whole_or_refuse(std::vector<std::unique_ptr<HashMapTier::Partition>>& partitions,
                            const HashMapOptions& options, std::size_t dim, const std::int64_t* keys,
                            const float* rows, const Grouping& g, std::uint32_t now) {
  // Every partition the batch touches, locked in ascending order (other calls hold one partition
  // at a time, so no cycle), so the room checked is the room written into.
  std::vector<std::unique_lock<std::shared_mutex>> locks;
  for (std::size_t p = 0; p < partitions.size(); ++p) {
    if (g.begin[p] != g.begin[p + 1]) locks.emplace_back(partitions[p]->mutex);
  }
  std::vector<std::int64_t> added;
  for (std::size_t p = 0; p < partitions.size(); ++p) {
    added.clear();
    for (std::size_t i = g.begin[p]; i < g.begin[p + 1]; ++i) {
      const std::uint32_t pos = g.order[i];
      if (partitions[p]->probe(keys[pos], g.hash_hi[pos]) == kNoRecord) added.push_back(keys[pos]);
    }
    std::sort(added.begin(), added.end());
    const auto new_keys = static_cast<std::size_t>(std::unique(added.begin(), added.end()) - added.begin());
    const std::size_t held = partitions[p]->size();
    HPS_EXPECTS(held + new_keys <= options.overflow_margin, NoRoom, "volatile_db: partition ", p, " of ",
                partitions.size(), " would hold ", held + new_keys, " rows, more than overflow_margin ",
                options.overflow_margin,
                "; the hash map is the table's only tier (no persistent_db), so it cannot evict rows to make "
                "room: raise overflow_margin (nothing of this write was stored)");
  }
  for (std::size_t p = 0; p < partitions.size(); ++p) {
    if (g.begin[p] == g.begin[p + 1]) continue;
    DeliverOnExit deliver(*partitions[p]);
    for (std::size_t i = g.begin[p]; i < g.begin[p + 1]; ++i) {
      const std::uint32_t pos = g.order[i];
      partitions[p]->put(keys[pos], g.hash_hi[pos], rows + std::size_t{pos} * dim, true, now);
    }
  }
}

}  // namespace

void HashMapTier::insert(const std::int64_t* keys, const float* rows, std::size_t n) {
  if (n == 0) return;
  const std::uint32_t now = clock_.fetch_add(1, std::memory_order_relaxed) + 1;
  const Grouping& g = group_by_partition(keys, n, partitions_.size());
  ListenerFlush listener_flush(*this);
  // (Without a margin nothing ever overflows: the plain path, one partition lock at a time.)
  if (!options_.evict_on_overflow && options_.overflow_margin != HashMapOptions{}.overflow_margin) {
    insert_whole_or_refuse(partitions_, options_, dim_, keys, rows, g, now);
    listener_flush.finish();
    return;
  }
  for (std::size_t p = 0; p < partitions_.size(); ++p) {
    if (g.begin[p] == g.begin[p + 1]) continue;
    std::unique_lock lock(partitions_[p]->mutex);
    DeliverOnExit deliver(*partitions_[p]);
    for (std::size_t i = g.begin[p]; i < g.begin[p + 1]; ++i) {
      const std::uint32_t pos = g.order[i];
      partitions_[p]->put(keys[pos], g.hash_hi[pos], rows + std::size_t{pos} * dim_, true, now);
    }
  }
  listener_flush.finish();
}

std::size_t HashMapTier::insert_if_absent(const std::int64_t* keys, const float* rows, std::size_t n,
                                          const std::function<bool()>& still_valid) {
  if (n == 0) return 0;
  const std::uint32_t now = clock_.fetch_add(1, std::memory_order_relaxed) + 1;
  const Grouping& g = group_by_partition(keys, n, partitions_.size());
  std::size_t inserted = 0;
  ListenerFlush listener_flush(*this);
  for (std::size_t p = 0; p < partitions_.size(); ++p) {
    if (g.begin[p] == g.begin[p + 1]) continue;
    std::unique_lock lock(partitions_[p]->mutex);
    if (still_valid && !still_valid()) break;
    DeliverOnExit deliver(*partitions_[p]);
    for (std::size_t i = g.begin[p]; i < g.begin[p + 1]; ++i) {
      const std::uint32_t pos = g.order[i];
      inserted += partitions_[p]->put(keys[pos], g.hash_hi[pos], rows + std::size_t{pos} * dim_, false, now);
    }
  }
  listener_flush.finish();
  return inserted;
}

std::size_t HashMapTier::erase(const std::int64_t* keys, std::size_t n) {
  if (n == 0) return 0;
  const Grouping& g = group_by_partition(keys, n, partitions_.size());
  std::size_t erased = 0;
  ListenerFlush listener_flush(*this);
  for (std::size_t p = 0; p < partitions_.size(); ++p) {
    if (g.begin[p] == g.begin[p + 1]) continue;
    std::unique_lock lock(partitions_[p]->mutex);
    DeliverOnExit deliver(*partitions_[p]);
    for (std::size_t i = g.begin[p]; i < g.begin[p + 1]; ++i) {
      const std::uint32_t pos = g.order[i];
      erased += partitions_[p]->remove(keys[pos], g.hash_hi[pos]);
    }
  }
  listener_flush.finish();
  return erased;
}

std::size_t HashMapTier::size() const {
  std::size_t total = 0;
  for (const auto& part : partitions_) {
    std::shared_lock lock(part->mutex);
    total += part->size();
  }
  return total;
}

std::size_t HashMapOptions::capacity() const {
  return overflow_margin > SIZE_MAX / num_partitions ? SIZE_MAX : overflow_margin * num_partitions;
}

std::size_t HashMapOptions::partition_of(std::int64_t key, std::size_t partitions) {
  return partition_of_hash(splitmix64(key), partitions);
}

std::size_t HashMapTier::capacity() const { return options_.capacity(); }

std::size_t HashMapTier::memory_bytes() const {
  std::size_t total = sizeof(*this);
  for (const auto& part : partitions_) {
    std::shared_lock lock(part->mutex);
    total += part->memory_bytes();
  }
  return total;
}

std::size_t HashMapTier::evictions() const {
  std::size_t total = 0;
  for (const auto& part : partitions_) {
    std::shared_lock lock(part->mutex);
    total += part->evictions();
  }
  return total;
}

RecordLayout HashMapTier::record_layout() const {
  RecordLayout layout;
  layout.record_bytes = partitions_.front()->record_bytes();
  layout.key_offset = kKeyOffset;
  layout.row_offset = partitions_.front()->row_offset();
  layout.dim = dim_;
  return layout;
}

void HashMapTier::set_host_memory_registrar(std::shared_ptr<HostMemoryRegistrar> registrar) {
  HPS_EXPECTS(registrar != nullptr, InvalidArgument, "hash map tier: null host memory registrar");
  std::unique_lock guard(listeners_mutex_);
  HPS_EXPECTS(registrar_ == nullptr, InvalidArgument, "hash map tier: a host memory registrar is already installed");
  registrar_ = registrar;
  // Partitions in parallel: each stamps the checksum of every record it holds (two multiplies per 4
  // bytes of row), which for a large table would take seconds on one core.
  const std::size_t threads =
      std::min<std::size_t>(partitions_.size(), std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(threads - 1);
  pool.parallel_for(partitions_.size(), [&](std::size_t p) {
    std::unique_lock lock(partitions_[p]->mutex);
    partitions_[p]->set_registrar(registrar);
  });
}

void HashMapTier::add_record_listener(RecordListener* listener) {
  HPS_EXPECTS(listener != nullptr, InvalidArgument, "hash map tier: null record listener");
  {
    std::unique_lock guard(listeners_mutex_);
    listeners_.push_back(listener);
    has_listeners_.store(true, std::memory_order_release);
    for (const auto& part : partitions_) {
      std::unique_lock lock(part->mutex);
      part->add_listener(listener);
    }
  }
  listener->flush();
}

void HashMapTier::remove_record_listener(RecordListener* listener) {
  std::unique_lock guard(listeners_mutex_);  // waits for write calls flushing it
  for (const auto& part : partitions_) {
    std::unique_lock lock(part->mutex);
    part->remove_listener(listener);
  }
  listeners_.erase(std::remove(listeners_.begin(), listeners_.end(), listener), listeners_.end());
  has_listeners_.store(!listeners_.empty(), std::memory_order_release);
}

void HashMapTier::flush_listeners() {
  if (!has_listeners_.load(std::memory_order_acquire)) return;
  std::shared_lock guard(listeners_mutex_);
  for (RecordListener* listener : listeners_) listener->flush();
}

void HashMapTier::reserve(std::size_t rows) {
  const std::size_t per_partition = options_.reserved_per_partition(rows);
  for (const auto& part : partitions_) {
    std::unique_lock lock(part->mutex);
    part->reserve(per_partition);
  }
}

std::size_t HashMapOptions::record_bytes(std::size_t dim) const {
  const std::size_t meta_bytes = overflow_policy == OverflowPolicy::kEvictRandom ? 0 : 8;
  return round_up(kMetaOffset + meta_bytes + 4 * dim, 8);
}

std::size_t HashMapOptions::reserved_per_partition(std::size_t rows) const {
  // Keys spread evenly over partitions; 5% headroom absorbs the imbalance of a random split.
  const std::size_t share = rows / num_partitions;
  return std::min(share + share / 20 + 16, overflow_margin);
}

std::size_t HashMapOptions::index_slots(std::size_t reserved, std::size_t held) {
  std::size_t slots = kMinIndexSlots;
  if (reserved > 0) slots = std::max(slots, slots_to_reserve(reserved));
  while (index_too_full(held, slots)) slots *= 2;
  return slots;
}

HashMapFootprint hash_map_footprint(const HashMapOptions& options, std::size_t dim, std::size_t reserved,
                                    const std::vector<std::size_t>& keys) {
  HPS_EXPECTS(keys.size() == options.num_partitions, InvalidArgument, "hash map footprint: ", keys.size(),
              " key counts for ", options.num_partitions, " partitions");
  HashMapFootprint plan;
  plan.record_bytes = options.record_bytes(dim);
  const std::size_t per_partition = reserved > 0 ? options.reserved_per_partition(reserved) : 0;
  for (std::size_t count : keys) {
    const std::size_t held = std::min(count, options.overflow_margin);
    plan.rows += held;
    plan.index_slots += HashMapOptions::index_slots(per_partition, held);
  }
  plan.records_bytes = plan.rows * plan.record_bytes;
  plan.index_bytes = plan.index_slots * 8;  // sizeof(Slot)
  return plan;
}

void HashMapTier::for_each(std::size_t chunk_rows,
                           const std::function<void(const std::int64_t*, const float*, std::size_t)>& fn) {
  HPS_EXPECTS(chunk_rows > 0, InvalidArgument, "for_each: chunk_rows must be positive");
  std::vector<std::int64_t> keys;
  std::vector<float> rows;
  for (const auto& part : partitions_) {
    {
      // Copy the partition out so `fn` runs without the lock (it may write to this tier).
      std::shared_lock lock(part->mutex);
      keys.clear();
      rows.clear();
      keys.reserve(part->size());
      rows.reserve(part->size() * dim_);
      part->for_each_record([&](std::int64_t key, const char* row) {
        keys.push_back(key);
        const auto* values = reinterpret_cast<const float*>(row);
        rows.insert(rows.end(), values, values + dim_);
      });
    }
    for (std::size_t first = 0; first < keys.size(); first += chunk_rows) {
      const std::size_t n = std::min(chunk_rows, keys.size() - first);
      fn(keys.data() + first, rows.data() + first * dim_, n);
    }
  }
}

}  // namespace hps
