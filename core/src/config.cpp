// The configuration parser.
//
// Every section of the JSON format is ONE table of field descriptions (name, shape, default,
// description, why a key does nothing here). Those tables drive everything: parsing, unknown-key
// errors and their suggestions, compatibility warnings, config_to_json() and config_json_schema();
// docs/configuration.md is generated from the schema (tests/cpp/test_config.cpp checks it). So the
// parser, the schema and the documentation cannot drift apart.
//
// Parsing goes in two steps per key: check() turns the JSON value into a canonical value (or throws
// a ConfigError naming the path, what was expected and what was found), then the field's setter
// stores it in the struct.
#include "hps/config.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

#include "hps/error.hpp"

// GCC 12 reports a false -Wmaybe-uninitialized inside libstdc++'s <regex> in sanitizer builds.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace hps {
namespace {

// Ordered, so that errors and warnings follow the order of the document.
using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Enumerations: canonical names, accepted spellings (HugeCTR's aliases) and refused spellings.

struct Spelling {
  const char* text;
  int value;                       // index into EnumSpec::names
  const char* warning = nullptr;   // accepted, but served differently than the name suggests
};

struct Refusal {
  std::vector<const char*> texts;  // spellings HugeCTR accepted that are errors here
  const char* reason;
};

struct EnumSpec {
  std::vector<const char*> names;   // canonical name of each enum value, in enum order
  std::vector<Spelling> spellings;  // every accepted string, canonical names first
  std::vector<Refusal> refusals;

  int value_of(const std::string& canonical) const {
    for (std::size_t i = 0; i < names.size(); ++i)
      if (canonical == names[i]) return static_cast<int>(i);
    return 0;  // unreachable: check() only passes canonical names
  }
  const char* name_of(int value) const {
    return value >= 0 && static_cast<std::size_t>(value) < names.size() ? names[value] : "unknown";
  }
};

const EnumSpec& volatile_db_types() {
  static const EnumSpec spec{
      {"disabled", "hash_map", "redis_cluster"},
      {{"disabled", 0}, {"hash_map", 1}, {"redis_cluster", 2}, {"disable", 0}, {"none", 0},
       {"hashmap", 1}, {"hash", 1}, {"map", 1}, {"parallel_hash_map", 1}, {"parallel_hashmap", 1},
       {"parallel_hash", 1}, {"parallel_map", 1}, {"redis", 2}},
      {{{"multi_process_hash_map", "multi_process_hashmap", "multi_process_hash", "multi_process_map"},
        "the multi-process hash map is not supported; use \"hash_map\" (one process) or "
        "\"redis_cluster\" (shared between processes)"},
       {{"rocks_db", "rocksdb", "rocks"},
        "RocksDB is a persistent database; configure it under persistent_db, not volatile_db"}}};
  return spec;
}

const EnumSpec& persistent_db_types() {
  static const EnumSpec spec{{"disabled", "rocks_db"},
                             {{"disabled", 0}, {"rocks_db", 1}, {"disable", 0}, {"none", 0},
                              {"rocksdb", 1}, {"rocks", 1}},
                             {}};
  return spec;
}

const EnumSpec& update_source_types() {
  static const EnumSpec spec{{"null", "kafka_message_queue"},
                             {{"null", 0}, {"kafka_message_queue", 1}, {"none", 0}, {"kafka_mq", 1},
                              {"kafka", 1}},
                             {}};
  return spec;
}

const EnumSpec& overflow_policies() {
  static const EnumSpec spec{{"evict_random", "evict_least_used", "evict_oldest"},
                             {{"evict_random", 0}, {"evict_least_used", 1}, {"evict_oldest", 2},
                              {"random", 0}, {"least_used", 1}, {"oldest", 2}},
                             {}};
  return spec;
}

const EnumSpec& cache_types() {
  static const EnumSpec spec{
      {"dynamic", "static"},
      {{"dynamic", 0},
       {"static", 1},
       {"uvm", 0,
        "\"uvm\" is served by the dynamic GPU cache here: rows that do not fit in the cache stay in "
        "the CPU-memory tier instead of unified memory"},
       {"stochastic", 0,
        "\"stochastic\" is served by the dynamic GPU cache (HugeCTR did the same: its stochastic "
        "cache was never enabled)"}},
      {}};
  return spec;
}

const EnumSpec& cache_dtypes() {
  static const EnumSpec spec{{"float32", "float16"}, {{"float32", 0}, {"float16", 1}}, {}};
  return spec;
}

// ---------------------------------------------------------------------------------------------
// Small text helpers.

// Invalid UTF-8 is replaced, not thrown about: a message must never fail to be written.
std::string quote(const std::string& s) { return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace); }

/// The first bytes of `s`, at most `n`, cut before a UTF-8 character rather than inside one.
std::string utf8_prefix(const std::string& s, std::size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // s[n] continues a character
  return s.substr(0, n);
}

/// What the user wrote, for "found ..." in messages.
std::string found_text(const Json& v) {
  if (v.is_object()) return "an object";
  if (v.is_array()) return v.empty() ? "an empty array" : "an array";
  // Cut inside a character, a long non-ASCII string made quote() throw nlohmann's type_error out of
  // parse_config instead of a ConfigError (found by fuzz_config).
  if (v.is_string() && v.get_ref<const std::string&>().size() > 60)
    return quote(utf8_prefix(v.get_ref<const std::string&>(), 57) + "...");
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

/// 1 -> "1", 0.8 -> "0.8", FLT_MAX -> "3.40282e+38".
std::string number_text(double x) {
  std::ostringstream out;
  if (std::floor(x) == x && std::fabs(x) < 1e15)
    out << static_cast<long long>(x);
  else
    out << x;
  return out.str();
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
std::optional<std::string> closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const std::string& candidate : candidates) {
    const std::size_t d = edit_distance(word, candidate);
    if (d < best_distance) best_distance = d, best = candidate;
  }
  return best;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? separator : "") + parts[i];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Where in the document a value sits: the JSON path used in every message.

struct Context {
  std::string source;                   // names the text in messages
  std::string base_dir;                 // absolute, or "" for the working directory
  std::vector<std::string>* warnings;   // where accepted-but-unused keys are reported
};

class Where {
 public:
  Where(const Context& context, std::string path) : context_(&context), path_(std::move(path)) {}

  Where key(std::string_view name) const {
    return {*context_, path_.empty() ? std::string(name) : path_ + "." + std::string(name)};
  }
  Where index(std::size_t i) const { return {*context_, path_ + "[" + std::to_string(i) + "]"}; }
  /// Another key of the same object (keys never contain '.').
  Where sibling(std::string_view name) const {
    const std::size_t dot = path_.rfind('.');
    return {*context_, dot == std::string::npos ? std::string(name) : path_.substr(0, dot + 1) + std::string(name)};
  }
  const std::string& path() const { return path_; }
  const Context& context() const { return *context_; }

  template <typename... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    if (path_.empty()) HPS_FAIL(ConfigError, context_->source, ": ", parts...);
    HPS_FAIL(ConfigError, context_->source, ": ", path_, ": ", parts...);
  }
  template <typename... Parts>
  void warn(const Parts&... parts) const {
    context_->warnings->push_back(detail::concat(context_->source, ": ", path_, ": ", parts...));
  }

 private:
  const Context* context_;
  std::string path_;
};

// ---------------------------------------------------------------------------------------------
// Shapes: what a JSON value may look like. One shape gives the check, the words used in messages
// ("an integer >= 1") and the JSON Schema fragment.

enum class Type { kBool, kString, kInteger, kNumber, kByteSize, kEnum, kList, kOneOrList, kObject };
enum class Text { kAny, kNonEmpty, kName, kRegex };

struct Bounds {
  std::optional<double> min, max;
  bool min_exclusive = false, max_exclusive = false;
};

Bounds at_least(double min) { return {min, std::nullopt, false, false}; }
Bounds interval(double min, bool min_exclusive, double max, bool max_exclusive) {
  return {min, max, min_exclusive, max_exclusive};
}

struct Shape {
  Type type = Type::kBool;
  Bounds bounds;                           // kInteger, kNumber, kByteSize
  Text text = Text::kAny;                  // kString
  const EnumSpec* enumeration = nullptr;   // kEnum
  std::shared_ptr<const Shape> item;       // kList, kOneOrList
  bool non_empty = false, unique = false;  // kList, kOneOrList
  std::function<Json()> object_schema;     // kObject
};

Shape boolean() { return {}; }
Shape string(Text text = Text::kAny) {
  Shape s;
  s.type = Type::kString, s.text = text;
  return s;
}
Shape integer(Bounds bounds = at_least(0)) {
  Shape s;
  s.type = Type::kInteger, s.bounds = bounds;
  return s;
}
Shape number(Bounds bounds = {}) {
  Shape s;
  s.type = Type::kNumber, s.bounds = bounds;
  return s;
}
Shape byte_size(double min) {
  Shape s;
  s.type = Type::kByteSize, s.bounds = at_least(min);
  return s;
}
Shape one_of(const EnumSpec& spec) {
  Shape s;
  s.type = Type::kEnum, s.enumeration = &spec;
  return s;
}
Shape list(Shape item, bool non_empty = false, bool unique = false) {
  Shape s;
  s.type = Type::kList, s.item = std::make_shared<const Shape>(std::move(item));
  s.non_empty = non_empty, s.unique = unique;
  return s;
}
/// A single value that applies to every table, or an array of them.
Shape one_or_list(Shape item) {
  Shape s = list(std::move(item), true);
  s.type = Type::kOneOrList;
  return s;
}
Shape object(std::function<Json()> schema) {
  Shape s;
  s.type = Type::kObject, s.object_schema = std::move(schema);
  return s;
}

// Values stored as fp32 take every double that rounds to a finite float: up to (not including) the
// midpoint between FLT_MAX and 2^128, which rounds to infinity. FLT_MAX itself is printed as
// 3.4028235e+38 (the shortest text that reads back as it), a double above FLT_MAX: bounding at
// FLT_MAX refused that text, and config_to_json's own output for a default of FLT_MAX (fuzz_config).
constexpr double kFloatRoundsToInfinity = 3.4028235677973366e38;  // 2^128 - 2^103
/// A double within (-kFloatRoundsToInfinity, kFloatRoundsToInfinity) as the nearest float.
float to_float(double x) {
  constexpr double kFloatMax = std::numeric_limits<float>::max();
  return static_cast<float>(std::clamp(x, -kFloatMax, kFloatMax));
}
constexpr const char* kNameRule = "1 to 120 characters from A-Z, a-z, 0-9, '_' and '-'";
constexpr const char* kSizeUnits = "B|KiB|MiB|GiB|TiB|KB|MB|GB|TB";

std::string bounds_text(const Bounds& b) {
  if (b.min && b.max)
    return std::string(" in ") + (b.min_exclusive ? "(" : "[") + number_text(*b.min) + ", " +
           number_text(*b.max) + (b.max_exclusive ? ")" : "]");
  if (b.min) return (b.min_exclusive ? " > " : " >= ") + number_text(*b.min);
  if (b.max) return (b.max_exclusive ? " < " : " <= ") + number_text(*b.max);
  return "";
}

std::string choices_text(const EnumSpec& spec) {
  std::vector<std::string> names, others;
  for (const char* name : spec.names) names.push_back(quote(name));
  for (const Spelling& s : spec.spellings)
    if (std::find(spec.names.begin(), spec.names.end(), std::string_view(s.text)) == spec.names.end())
      others.push_back(quote(s.text));
  std::string text = join(names, ", ");
  if (!others.empty()) text += " (also accepted: " + join(others, ", ") + ")";
  return text;
}

/// "an integer >= 1", or in the plural "integers >= 1", for "expected ..." messages.
std::string describe(const Shape& s, bool plural = false) {
  auto noun = [plural](const char* one, const char* many) { return std::string(plural ? many : one); };
  switch (s.type) {
    case Type::kBool: return noun("a boolean", "booleans");
    case Type::kString:
      switch (s.text) {
        case Text::kAny: return noun("a string", "strings");
        case Text::kNonEmpty: return noun("a non-empty string", "non-empty strings");
        case Text::kName: return noun("a name of ", "names of ") + kNameRule;
        case Text::kRegex: return noun("a regular expression", "regular expressions");
      }
      break;
    case Type::kInteger: return noun("an integer", "integers") + bounds_text(s.bounds);
    case Type::kNumber: return noun("a number", "numbers") + bounds_text(s.bounds);
    case Type::kByteSize:
      return noun("a byte size", "byte sizes") + " (an integer" + bounds_text(s.bounds) +
             " or a string such as \"256MiB\")";
    case Type::kEnum: return noun("one of ", "strings, each one of ") + choices_text(*s.enumeration);
    case Type::kList:
      return noun(s.non_empty ? "a non-empty array" : "an array", s.non_empty ? "non-empty arrays" : "arrays") +
             " of " + describe(*s.item, true);
    case Type::kOneOrList: return describe(*s.item, plural) + ", or an array of them";
    case Type::kObject: return noun("an object", "objects");
  }
  return "a value";
}

// ---------------------------------------------------------------------------------------------
// check(): validates a JSON value against a shape and returns it in canonical form (enum aliases
// become canonical names, byte-size strings and integral floats become integers).

Json check(const Json& v, const Shape& s, const Where& w);

[[noreturn]] void expected(const Shape& s, const Json& v, const Where& w) {
  w.fail("expected ", describe(s), ", found ", found_text(v));
}

bool within(double x, const Bounds& b) {
  if (b.min && (b.min_exclusive ? x <= *b.min : x < *b.min)) return false;
  if (b.max && (b.max_exclusive ? x >= *b.max : x > *b.max)) return false;
  return true;
}

/// A JSON number with an exact non-negative integral value (1e6 is one, 1.5 and -1 are not).
std::optional<std::uint64_t> whole_number(const Json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (!v.is_number_float()) return std::nullopt;
  const double d = v.get<double>();
  if (!(d >= 0) || d >= 18446744073709551616.0 || std::floor(d) != d) return std::nullopt;
  return static_cast<std::uint64_t>(d);
}

/// "4096", "256MiB", "1 GiB", "10GB" -> bytes. Whole numbers only, so sizes stay exact.
std::optional<std::uint64_t> parse_byte_size(std::string_view text) {
  static const std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"", 1},          {"B", 1},          {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
      {"TiB", 1ull << 40}, {"KB", 1000},    {"MB", 1000000},     {"GB", 1000000000},  {"TB", 1000000000000}};
  std::uint64_t n = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (error != std::errc() || end == text.data() || !std::isdigit(static_cast<unsigned char>(text[0])))
    return std::nullopt;
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  for (const auto& [name, factor] : kUnits)
    if (unit == name) {
      if (n > std::numeric_limits<std::uint64_t>::max() / factor) return std::nullopt;
      return n * factor;
    }
  return std::nullopt;
}

bool is_name(const std::string& s) {
  if (s.empty() || s.size() > 120) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

Json check_string(const Json& v, const Shape& s, const Where& w) {
  if (!v.is_string()) expected(s, v, w);
  const std::string& text = v.get_ref<const std::string&>();
  if ((s.text == Text::kNonEmpty && text.empty()) || (s.text == Text::kName && !is_name(text))) expected(s, v, w);
  if (s.text == Text::kRegex) {
    try {
      std::regex(text, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      w.fail("invalid regular expression ", quote(text), ": ", e.what());
    }
  }
  return v;
}

Json check_integer(const Json& v, const Shape& s, const Where& w) {
  const std::optional<std::uint64_t> n = whole_number(v);
  if (!n || !within(static_cast<double>(*n), s.bounds)) expected(s, v, w);
  return *n;
}

Json check_number(const Json& v, const Shape& s, const Where& w) {
  if (!v.is_number() || !within(v.get<double>(), s.bounds)) expected(s, v, w);
  return v.get<double>();
}

Json check_byte_size(const Json& v, const Shape& s, const Where& w) {
  const std::optional<std::uint64_t> n =
      v.is_string() ? parse_byte_size(v.get_ref<const std::string&>()) : whole_number(v);
  if (!n || !within(static_cast<double>(*n), s.bounds)) expected(s, v, w);
  return *n;
}

Json check_enum(const Json& v, const EnumSpec& spec, const Shape& s, const Where& w) {
  if (!v.is_string()) expected(s, v, w);
  const std::string& text = v.get_ref<const std::string&>();
  for (const Spelling& spelling : spec.spellings)
    if (text == spelling.text) {
      if (spelling.warning) w.warn(spelling.warning);
      return spec.names[spelling.value];
    }
  for (const Refusal& refusal : spec.refusals)
    for (const char* refused : refusal.texts)
      if (text == refused) w.fail(quote(text), ": ", refusal.reason);
  std::vector<std::string> accepted;
  for (const Spelling& spelling : spec.spellings) accepted.emplace_back(spelling.text);
  const std::optional<std::string> suggestion = closest(text, accepted);
  w.fail("expected ", describe(s), ", found ", quote(text),
         suggestion ? "; did you mean " + quote(*suggestion) + "?" : std::string());
}

Json check_list(const Json& v, const Shape& s, const Where& w) {
  if (!v.is_array() || (s.non_empty && v.empty())) expected(s, v, w);
  Json out = Json::array();
  for (std::size_t i = 0; i < v.size(); ++i) {
    out.push_back(check(v[i], *s.item, w.index(i)));
    for (std::size_t j = 0; s.unique && j < i; ++j)
      if (out[j] == out[i]) w.index(i).fail("duplicate value ", found_text(v[i]), " (also at ", w.index(j).path(), ")");
  }
  return out;
}

Json check(const Json& v, const Shape& s, const Where& w) {
  switch (s.type) {
    case Type::kBool:
      if (!v.is_boolean()) expected(s, v, w);
      return v;
    case Type::kString: return check_string(v, s, w);
    case Type::kInteger: return check_integer(v, s, w);
    case Type::kNumber: return check_number(v, s, w);
    case Type::kByteSize: return check_byte_size(v, s, w);
    case Type::kEnum: return check_enum(v, *s.enumeration, s, w);
    case Type::kList: return check_list(v, s, w);
    case Type::kOneOrList:  // of strings (the only use)
      if (v.is_array()) return check_list(v, s, w);
      if (!v.is_string()) expected(s, v, w);
      return check(v, *s.item, w);
    case Type::kObject:
      if (!v.is_object()) expected(s, v, w);
      return v;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// JSON Schema fragments of shapes.

Json number_json(double x) {
  if (std::floor(x) == x && std::fabs(x) < 1e15) return static_cast<std::int64_t>(x);
  return x;
}

void add_bounds(Json& schema, const Bounds& b) {
  if (b.min) schema[b.min_exclusive ? "exclusiveMinimum" : "minimum"] = number_json(*b.min);
  if (b.max) schema[b.max_exclusive ? "exclusiveMaximum" : "maximum"] = number_json(*b.max);
}

Json schema_of(const Shape& s) {
  Json out = Json::object();
  switch (s.type) {
    case Type::kBool: out["type"] = "boolean"; break;
    case Type::kString:
      out["type"] = "string";
      if (s.text == Text::kNonEmpty) out["minLength"] = 1;
      if (s.text == Text::kName) out["pattern"] = "^[A-Za-z0-9_-]{1,120}$";
      if (s.text == Text::kRegex) out["format"] = "regex";
      break;
    case Type::kInteger:
    case Type::kNumber:
      out["type"] = s.type == Type::kInteger ? "integer" : "number";
      add_bounds(out, s.bounds);
      break;
    case Type::kByteSize: {
      Json whole = {{"type", "integer"}};
      add_bounds(whole, s.bounds);
      const Json text = {{"type", "string"}, {"pattern", std::string("^[0-9]+ *(") + kSizeUnits + ")?$"}};
      out["anyOf"] = Json::array({whole, text});
      break;
    }
    case Type::kEnum: {
      out["type"] = "string";
      out["enum"] = Json::array();
      for (const Spelling& spelling : s.enumeration->spellings) out["enum"].push_back(spelling.text);
      break;
    }
    case Type::kList:
      out["type"] = "array";
      out["items"] = schema_of(*s.item);
      if (s.non_empty) out["minItems"] = 1;
      if (s.unique) out["uniqueItems"] = true;
      break;
    case Type::kOneOrList: {
      Shape many = s;
      many.type = Type::kList;
      out["anyOf"] = Json::array({schema_of(*s.item), schema_of(many)});
      break;
    }
    case Type::kObject: out = s.object_schema(); break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fields and sections.

template <typename S>
struct Field {
  Field(std::string name_, Shape shape_, std::string description_)
      : name(std::move(name_)), shape(std::move(shape_)), description(std::move(description_)) {}

  std::string name;
  Shape shape;
  std::string description;
  std::string ignored;  // non-empty: accepted for HugeCTR compatibility, does nothing here, because...
  bool required = false;
  /// Default for the schema and the docs; none when it depends on the machine or on other keys.
  std::optional<Json> default_value;
  /// Stores a checked, canonical value into the struct.
  std::function<void(S&, const Json&, const Where&)> set;
  /// The canonical value for config_to_json(); null leaves the key out. Unset: an input-only key.
  std::function<Json(const S&)> get;

  Field& ignore(std::string why) {
    ignored = std::move(why);
    return *this;
  }
  Field& require() {
    required = true;
    default_value.reset();
    return *this;
  }
  Field& no_default() {
    default_value.reset();
    return *this;
  }
  Field& defaults_to(Json value) {
    default_value = std::move(value);
    return *this;
  }
};

template <typename S>
using Fields = std::vector<Field<S>>;

/// A field stored in one struct member; its default is the member's default.
template <typename S, typename T>
Field<S> bind(const char* name, T S::*member, Shape shape, const char* description) {
  const EnumSpec* spec = shape.enumeration;
  Field<S> f{name, std::move(shape), description};
  // `spec` is used by enum members only (clang warns about the capture in the other instances).
  f.set = [member, spec](S& s, const Json& v, const Where&) {
    (void)spec;
    if constexpr (std::is_enum_v<T>)
      s.*member = static_cast<T>(spec->value_of(v.get<std::string>()));
    else
      s.*member = v.get<T>();
  };
  f.get = [member, spec](const S& s) -> Json {
    (void)spec;
    if constexpr (std::is_enum_v<T>)
      return spec->name_of(static_cast<int>(s.*member));
    else
      return s.*member;
  };
  f.default_value = f.get(S{});
  return f;
}

/// A key's text in the schema and the docs: its description, its values and aliases, and why it
/// does nothing when it does nothing.
template <typename S>
std::string full_description(const Field<S>& f) {
  std::string text = f.description;
  if (f.shape.type == Type::kEnum || (f.shape.item && f.shape.item->type == Type::kEnum)) {
    const EnumSpec& spec = f.shape.type == Type::kEnum ? *f.shape.enumeration : *f.shape.item->enumeration;
    std::vector<std::string> values;
    for (std::size_t i = 0; i < spec.names.size(); ++i) {
      std::vector<std::string> aliases;
      for (const Spelling& s : spec.spellings)
        if (s.value == static_cast<int>(i) && s.text != std::string_view(spec.names[i]))
          aliases.push_back(std::string("`") + s.text + "`");
      values.push_back(std::string("`") + spec.names[i] + "`" +
                       (aliases.empty() ? "" : " (also " + join(aliases, ", ") + ")"));
    }
    text += " Values: " + join(values, "; ") + ".";
    for (const Refusal& refusal : spec.refusals) {
      std::vector<std::string> refused;
      for (const char* r : refusal.texts) refused.push_back(std::string("`") + r + "`");
      text += " Refused: " + join(refused, ", ") + ": " + refusal.reason + ".";
    }
  }
  if (!f.ignored.empty()) text += " Accepted for HugeCTR compatibility; does nothing here: " + f.ignored + ".";
  return text;
}

template <typename S>
void reject_unknown_keys(const Fields<S>& fields, const Json& j, const Where& w) {
  std::vector<std::string> names;
  for (const Field<S>& f : fields) names.push_back(f.name);
  for (const auto& [key, value] : j.items()) {
    if (std::find(names.begin(), names.end(), key) != names.end()) continue;
    const std::optional<std::string> suggestion = closest(key, names);
    if (suggestion) w.key(key).fail("unknown key; did you mean '", *suggestion, "'?");
    w.key(key).fail("unknown key; valid keys here: ", join(names, ", "));
  }
}

/// Parses one JSON object into `into`, which holds the defaults beforehand.
template <typename S>
void parse_section(const Fields<S>& fields, const Json& j, S& into, const Where& w) {
  if (!j.is_object()) w.fail("expected an object, found ", found_text(j));
  reject_unknown_keys(fields, j, w);
  // Declared order, so that a field may rely on the ones before it (the table count).
  for (const Field<S>& f : fields) {
    const Where at = w.key(f.name);
    const auto it = j.find(f.name);
    if (it == j.end()) {
      if (f.required) at.fail("required key is missing");
      continue;
    }
    if (!f.ignored.empty()) at.warn("accepted for HugeCTR compatibility but does nothing here: ", f.ignored);
    f.set(into, check(*it, f.shape, at), at);
  }
}

/// Every key with a value, except compatibility-only keys left at their default: those would
/// only add warnings when the JSON is parsed again.
template <typename S>
Json section_to_json(const Fields<S>& fields, const S& s) {
  Json out = Json::object();
  for (const Field<S>& f : fields) {
    if (!f.get) continue;
    Json value = f.get(s);
    if (value.is_null() || (!f.ignored.empty() && f.default_value && value == *f.default_value)) continue;
    out[f.name] = std::move(value);
  }
  return out;
}

template <typename S>
Json section_schema(const Fields<S>& fields) {
  Json properties = Json::object();
  Json required = Json::array();
  for (const Field<S>& f : fields) {
    Json p = {{"description", full_description(f)}};
    p.update(schema_of(f.shape));
    if (f.default_value) p["default"] = *f.default_value;
    if (!f.ignored.empty()) p["deprecated"] = true;
    properties[f.name] = std::move(p);
    if (f.required) required.push_back(f.name);
  }
  Json schema = {{"type", "object"}, {"properties", std::move(properties)}};
  if (!required.empty()) schema["required"] = std::move(required);
  schema["additionalProperties"] = false;
  return schema;
}

/// A nested section stored in one struct member.
template <typename S, typename T>
Field<S> section(const char* name, T S::*member, const Fields<T>& (*fields)(), const char* description) {
  Field<S> f{name, object([fields] { return section_schema(fields()); }), description};
  f.set = [member, fields](S& s, const Json& v, const Where& w) { parse_section(fields(), v, s.*member, w); };
  f.get = [member, fields](const S& s) -> Json { return section_to_json(fields(), s.*member); };
  return f;
}

// ---------------------------------------------------------------------------------------------
// Paths and machine-dependent defaults.

/// Relative paths are taken from `base_dir` (the config file's folder) or else the working
/// directory; URLs are left alone.
std::string resolve_path(const std::string& path, const std::string& base_dir) {
  if (path.find("://") != std::string::npos) return path;
  fs::path p(path);
  if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
  p = fs::absolute(p).lexically_normal();
  // "a/b/" and "a/b" name the same folder: one spelling, so that configs compare equal.
  if (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p.string();
}

std::size_t default_num_partitions() {
  return std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
}

std::string default_rocksdb_path() {
  std::error_code error;
  fs::path temp = fs::temp_directory_path(error);
  if (error) temp = "/tmp";
  return (temp / "rocksdb").lexically_normal().string();
}

// ---------------------------------------------------------------------------------------------
// The sections. The order of each table is the order of config_to_json() and of the docs.

constexpr const char* kFilterDescription =
    "Regular expressions (ECMAScript) on model names: this tier applies streamed updates of the "
    "models whose whole name matches one of them. HugeCTR's default `^hps_.+$` never matched "
    "anything; the default here follows every model.";
constexpr const char* kInitializeDescription =
    "Load the table files into this tier when the server starts. false: start empty. (HugeCTR "
    "documented this key but never read it from JSON.)";

const Fields<VolatileDbConfig>& volatile_db_fields() {
  using V = VolatileDbConfig;
  static const Fields<V> fields = {
      bind("type", &V::type, one_of(volatile_db_types()),
           "Which tier keeps rows in CPU memory: a hash map inside this process, a Redis Cluster "
           "shared between processes, or none. An absent `volatile_db`, or one without `type`, is "
           "a hash map."),
      bind("address", &V::address, string(),
           "Redis: comma-separated `host:port` seed nodes of the cluster."),
      bind("user_name", &V::user_name, string(), "Redis: user name for AUTH."),
      bind("password", &V::password, string(), "Redis: password for AUTH."),
      bind("num_partitions", &V::num_partitions, integer(at_least(1)),
           "Partitions each table is split into (keys are spread by hash). Default: 16 for a Redis "
           "Cluster; otherwise the number of CPU cores of this machine, at most 16. A table already "
           "in a Redis Cluster keeps the count it was written with (its load marker records it).")
          .no_default(),
      bind("allocation_rate", &V::allocation_rate, byte_size(1),
           "Hash map: bytes of row memory allocated at a time (default 256 MiB). A number of bytes "
           "or a string such as \"64MiB\"."),
      bind("shared_memory_size", &V::shared_memory_size, byte_size(0), "Multi-process hash map: segment size.")
          .ignore("hps has no multi-process hash map"),
      bind("shared_memory_name", &V::shared_memory_name, string(), "Multi-process hash map: segment name.")
          .ignore("hps has no multi-process hash map"),
      bind("shared_memory_auto_remove", &V::shared_memory_auto_remove, boolean(),
           "Multi-process hash map: remove the segment when the last process detaches.")
          .ignore("hps has no multi-process hash map"),
      bind("num_node_connections", &V::num_node_connections, integer(at_least(1)),
           "Redis: connections kept open to each cluster node."),
      bind("max_batch_size", &V::max_batch_size, integer(at_least(1)),
           "Most keys sent to the backend in one operation; larger calls are split. Redis lookups use fewer "
           "when rows are large: at most 256 KiB of rows per HMGET."),
      bind("enable_tls", &V::enable_tls, boolean(),
           "Redis: connect over TLS. Not supported (hps's Redis client, hiredis 0.14, has no TLS): "
           "true with redis_cluster is a config error."),
      bind("tls_ca_certificate", &V::tls_ca_certificate, string(),
           "Redis TLS: CA certificate file, or a folder of them."),
      bind("tls_client_certificate", &V::tls_client_certificate, string(), "Redis TLS: client certificate file."),
      bind("tls_client_key", &V::tls_client_key, string(), "Redis TLS: client private key file."),
      bind("tls_server_name_identification", &V::tls_server_name_identification, string(),
           "Redis TLS: server name sent for SNI."),
      bind("operation_timeout_ms", &V::operation_timeout_ms, integer(at_least(1)),
           "Redis (hps extension): most milliseconds one operation may take. A lookup whose node "
           "does not answer in time (down, slow, failing over) reports those keys missing, so they "
           "fall through to the next tier; a write that cannot complete in time fails."),
      bind("refresh_time_after_fetch", &V::refresh_time_after_fetch, boolean(),
           "Redis, evict_oldest: a lookup refreshes the access time of the rows it finds (least "
           "recently used); false: rows age from when they were written."),
      bind("overflow_margin", &V::overflow_margin, integer(at_least(1)),
           "Most rows one partition holds; an insert past it evicts rows first (a volatile_db without a "
           "persistent_db holds the only copy of its rows: it refuses such a write instead). The "
           "default, 2^64 - 1, means no limit."),
      bind("overflow_policy", &V::overflow_policy, one_of(overflow_policies()),
           "Which rows an overflowing partition evicts: random ones, the least used or the oldest."),
      bind("overflow_resolution_target", &V::overflow_resolution_target, number(interval(0, true, 1, false)),
           "An overflowing partition evicts down to round(overflow_margin * overflow_resolution_target) rows "
           "(a hash map: and at least 1% of overflow_margin)."),
      bind("initial_cache_rate", &V::initial_cache_rate, number(interval(0, false, 1, false)),
           "Share of each table's rows loaded into this tier at start when a persistent tier holds "
           "all of them (1 = every row)."),
      bind("cache_missed_embeddings", &V::cache_missed_embeddings, boolean(),
           "Copy rows found in the persistent tier into this tier. Only rows really found are "
           "copied, never default rows."),
      bind("update_filters", &V::update_filters, list(string(Text::kRegex)), kFilterDescription),
      bind("initialize_after_startup", &V::initialize_after_startup, boolean(), kInitializeDescription),
  };
  return fields;
}

Field<PersistentDbConfig> rocksdb_path() {
  using P = PersistentDbConfig;
  Field<P> f{"path", string(Text::kNonEmpty),
             "Folder of the RocksDB database. A relative path is resolved against the config file's "
             "folder. Default: `rocksdb` in the system's temporary folder."};
  f.set = [](P& p, const Json& v, const Where& w) {
    p.path = resolve_path(v.get<std::string>(), w.context().base_dir);
  };
  f.get = [](const P& p) -> Json { return p.path; };
  return f;  // no default: it depends on the machine
}

const Fields<PersistentDbConfig>& persistent_db_fields() {
  using P = PersistentDbConfig;
  static const Fields<P> fields = {
      bind("type", &P::type, one_of(persistent_db_types()),
           "The persistent tier: RocksDB, or none. It holds every row; the CPU-memory tier and the "
           "GPU caches hold copies."),
      rocksdb_path(),
      bind("num_threads", &P::num_threads, integer(at_least(1)), "Background threads RocksDB may use."),
      bind("read_only", &P::read_only, boolean(),
           "Open the database read-only: it is never written, and updates of its tables fail."),
      bind("max_batch_size", &P::max_batch_size, integer(at_least(1)),
           "Most keys read or written in one RocksDB operation; larger calls are split."),
      bind("update_filters", &P::update_filters, list(string(Text::kRegex)), kFilterDescription),
      bind("initialize_after_startup", &P::initialize_after_startup, boolean(), kInitializeDescription),
      bind("block_cache_size", &P::block_cache_size, byte_size(1),
           "RocksDB (hps extension): most bytes of the store's LRU cache of SST file blocks, one "
           "cache shared by every table of the database (default 256 MiB). It fills up to this cap "
           "as lookups read blocks and then stays there; `stats()` shows its usage "
           "(`tier_counters.persistent_db.block_cache_usage_bytes`). A number of bytes or a string "
           "such as \"64MiB\"."),
      bind("memtable_size", &P::memtable_size, byte_size(static_cast<double>(kMinMemtableBytes)),
           "RocksDB (hps extension): bytes of one memtable, where writes land before they are flushed "
           "to disk (RocksDB's write_buffer_size; default 64 MiB). Each table holds up to two (one "
           "filling, one being flushed), counted in the table's `tier_bytes`. Smaller: less memory, "
           "more flushes and compactions. A number of bytes or a string such as \"16MiB\"."),
  };
  return fields;
}

const Fields<UpdateSourceConfig>& update_source_fields() {
  using U = UpdateSourceConfig;
  static const Fields<U> fields = {
      bind("type", &U::type, one_of(update_source_types()),
           "Where streamed updates come from: a Kafka topic per table (HugeCTR's topic names and "
           "message layout), or nowhere."),
      bind("brokers", &U::brokers, string(), "Kafka: comma-separated `host:port` bootstrap brokers (HugeCTR's semicolons are read as commas)."),
      bind("metadata_refresh_interval_ms", &U::metadata_refresh_interval_ms, integer(at_least(10)),
           "Kafka: how often the consumer refreshes cluster metadata and looks for new topics, in ms."),
      bind("receive_buffer_size", &U::receive_buffer_size, integer(at_least(1024)),
           "Kafka: largest message the consumer accepts, in bytes."),
      bind("poll_timeout_ms", &U::poll_timeout_ms, integer(), "Kafka: longest wait for a message per poll, in ms."),
      bind("max_batch_size", &U::max_batch_size, integer(at_least(1)), "Most key-row pairs applied in one batch."),
      bind("failure_backoff_ms", &U::failure_backoff_ms, integer(), "Wait after a failed poll, in ms."),
      bind("max_commit_interval", &U::max_commit_interval, integer(at_least(1)),
           "Most messages consumed between two commits of the consumer's offsets."),
      bind("group_id", &U::group_id, string(),
           "Kafka (hps extension): the consumer group whose offsets are committed after each applied batch. "
           "Empty: `hps.<hostname>.<hash of persistent_db.path>`, stable across restarts of one store."),
  };
  return fields;
}

// Per-table keys: HugeCTR keeps one array per property; here each array fills one member of every
// TableConfig. `embedding_vecsize_per_table` comes first and fixes the table count.

using TableGetter = std::function<Json(const TableConfig&)>;
using TableSetter = std::function<void(TableConfig&, const Json&, const Where&)>;

/// An array with one entry per table; `broadcast`: a single entry applies to every table.
Field<ModelConfig> per_table(const char* name, Shape shape, const char* description, TableSetter set,
                             TableGetter get, bool broadcast = false) {
  Field<ModelConfig> f{name, std::move(shape), description};
  f.set = [set, broadcast](ModelConfig& m, const Json& v, const Where& w) {
    const std::size_t n = m.tables.size();
    if (v.is_array() && v.size() != n && !(broadcast && v.size() == 1))
      w.fail("has ", v.size(), v.size() == 1 ? " entry" : " entries", " but ",
             w.sibling("embedding_vecsize_per_table").path(), " has ", n,
             broadcast ? " (give one entry per table, or a single entry for all)" : "");
    for (std::size_t i = 0; i < n; ++i) {
      const bool one = !v.is_array() || v.size() == 1;
      set(m.tables[i], one ? (v.is_array() ? v[0] : v) : v[i], v.is_array() ? w.index(one ? 0 : i) : w);
    }
  };
  f.get = [get](const ModelConfig& m) -> Json {
    Json out = Json::array();
    for (const TableConfig& t : m.tables) out.push_back(get(t));
    return out;
  };
  return f.no_default();
}

/// The shortest decimal that reads back as the same float (0.1f -> 0.1, not 0.10000000149011612).
Json float_json(float x) {
  char text[64];
  const auto result = std::to_chars(text, text + sizeof text, x);
  return std::stod(std::string(text, result.ptr));
}

Field<ModelConfig> table_dims() {
  Field<ModelConfig> f{"embedding_vecsize_per_table",
                       list(integer(interval(1, false, static_cast<double>(kMaxDim), false)), true),
                       "Embedding dimension (values per row) of each table. Its length is the number "
                       "of tables of the model."};
  f.set = [](ModelConfig& m, const Json& v, const Where&) {
    m.tables.assign(v.size(), TableConfig{});
    for (std::size_t i = 0; i < v.size(); ++i) {
      m.tables[i].dim = v[i].get<std::size_t>();
      m.tables[i].name = "sparse_embedding" + std::to_string(i);
    }
  };
  f.get = [](const ModelConfig& m) -> Json {
    Json out = Json::array();
    for (const TableConfig& t : m.tables) out.push_back(t.dim);
    return out;
  };
  return f.require();
}

/// Compatibility-only and per table: left out of config_to_json() while every entry is 0 (unset).
Field<ModelConfig> max_query_per_sample() {
  Field<ModelConfig> f = per_table(
      "maxnum_catfeature_query_per_table_per_sample", list(integer(), true), "Most keys per sample for each table.",
      [](TableConfig& t, const Json& v, const Where&) { t.max_query_per_sample = v.get<std::size_t>(); },
      [](const TableConfig& t) -> Json { return t.max_query_per_sample; });
  f.get = [all = f.get](const ModelConfig& m) -> Json {
    Json values = all(m);
    const bool unset = std::all_of(values.begin(), values.end(), [](const Json& v) { return v == 0; });
    return unset ? Json() : values;
  };
  return f;
}

Field<ModelConfig> use_static_table() {
  Field<ModelConfig> f{"use_static_table", boolean(),
                       "true forces `embedding_cache_type` to `static` (HugeCTR's older spelling)."};
  f.set = [](ModelConfig& m, const Json& v, const Where&) {
    if (v.get<bool>()) m.embedding_cache_type = EmbeddingCacheType::kStatic;
  };
  return f.defaults_to(false);  // input only: config_to_json() writes embedding_cache_type
}

const Fields<ModelConfig>& model_fields() {
  using M = ModelConfig;
  constexpr const char* kNoBuffers = "buffers are sized by each call";
  constexpr const char* kDense = "the dense network is not the parameter server's business";
  static const Fields<M> fields = {
      bind("model", &M::name, string(Text::kName),
           "Model name: 1 to 120 characters from A-Z, a-z, 0-9, `_` and `-`, unique in the file.")
          .require(),
      table_dims(),
      per_table(
          "sparse_files", list(string(Text::kNonEmpty), true),
          "Folder of each table's files (`key`, `emb_vector`, optional `meta`). A relative path is "
          "resolved against the config file's folder.",
          [](TableConfig& t, const Json& v, const Where& w) {
            t.sparse_file = resolve_path(v.get<std::string>(), w.context().base_dir);
          },
          [](const TableConfig& t) -> Json { return t.sparse_file; })
          .require(),
      per_table(
          "embedding_table_names", list(string(Text::kName), true, true),
          "Name of each table, unique within the model (same rule as model names). Default: "
          "`sparse_embedding0`, `sparse_embedding1`, ...",
          [](TableConfig& t, const Json& v, const Where&) { t.name = v.get<std::string>(); },
          [](const TableConfig& t) -> Json { return t.name; }),
      per_table(
          "default_value_for_each_table", list(number(interval(-kFloatRoundsToInfinity, true, kFloatRoundsToInfinity, true)), true),
          "Value of every element of the row returned for a key stored nowhere, per table. A single "
          "value applies to every table.",
          [](TableConfig& t, const Json& v, const Where&) { t.default_value = to_float(v.get<double>()); },
          [](const TableConfig& t) -> Json { return float_json(t.default_value); }, true)
          .defaults_to(Json::array({0.0})),
      per_table(
          "embedding_cache_dtype", one_or_list(one_of(cache_dtypes())),
          "How GPU caches store rows (an hps extension): `float16` halves their memory; lookups "
          "return float32 rows either way. One value for every table, or one per table.",
          [](TableConfig& t, const Json& v, const Where&) {
            t.cache_dtype = static_cast<CacheDtype>(cache_dtypes().value_of(v.get<std::string>()));
          },
          [](const TableConfig& t) -> Json { return cache_dtypes().name_of(static_cast<int>(t.cache_dtype)); }, true)
          .defaults_to("float32"),
      bind("gpucache", &M::gpucache, boolean(),
           "Serve lookups through a GPU cache where CUDA is present. false: lookups are answered by "
           "the CPU tiers."),
      bind("gpucacheper", &M::gpucacheper, number(interval(0, true, 1, false)),
           "Capacity of the dynamic GPU cache, as a share of each table's rows."),
      bind("hit_rate_threshold", &M::hit_rate_threshold, number(at_least(0)),
           "GPU cache hit rate at or above which inserting a call's misses into the cache may finish "
           "after the call returns; below it, they are inserted before. Values above 1 mean always "
           "before. The rows returned are the same either way."),
      bind("gpu_visible_host_tier", &M::gpu_visible_host_tier, boolean(),
           "Answer dynamic GPU cache misses on the GPU from the CPU-memory hash map (page-locked and "
           "indexed in GPU memory), without a host round trip (an hps extension). false: misses take "
           "the host path. The environment variable HPS_GPU_VISIBLE_HOST_TIER=0 also turns it off."),
      bind("host_tier_index_hbm_share", &M::host_tier_index_hbm_share, number(interval(0, true, 1, false)),
           "Most of each GPU's memory that one table's index of the CPU-memory hash map may take "
           "(16 bytes per entry, about 34 bytes per row; as the table grows the index grows, its "
           "generations together within this share). A table whose index would not fit serves "
           "its misses through the host, with a warning; one that outgrows it serves the keys "
           "added beyond it through the host, with a warning."),
      bind("cache_refresh_percentage_per_iteration", &M::cache_refresh_percentage_per_iteration,
           number(interval(0, false, 1, false)),
           "Share of the dynamic GPU cache that one refresh step re-reads from the tiers below."),
      bind("deployed_device_list", &M::deployed_device_list,
           list(integer(interval(0, false, 2147483647, false)), true, true),
           "CUDA devices that hold a GPU cache of this model's tables."),
      bind("embedding_cache_type", &M::embedding_cache_type, one_of(cache_types()),
           "GPU cache kind: `dynamic` caches the most used rows; `static` holds the whole table on "
           "the GPU. HugeCTR's `uvm` and `stochastic` are served by the dynamic cache, with a warning."),
      use_static_table(),
      bind("init_ec", &M::init_ec, boolean(), "Fill the GPU cache from the tiers below when the server starts."),
      max_query_per_sample().ignore(kNoBuffers),
      bind("max_batch_size", &M::max_batch_size, integer(at_least(1)), "Most samples per lookup.").ignore(kNoBuffers),
      bind("num_of_worker_buffer_in_pool", &M::num_of_worker_buffer_in_pool, integer(),
           "Lookup buffers per device.")
          .ignore(kNoBuffers),
      bind("num_of_refresher_buffer_in_pool", &M::num_of_refresher_buffer_in_pool, integer(),
           "Refresh buffers per device.")
          .ignore(kNoBuffers),
      bind("thread_pool_size", &M::thread_pool_size, integer(), "Threads for inserting into GPU caches.")
          .ignore("the server sizes its own threads"),
      bind("dense_file", &M::dense_file, string(), "File of the dense network.").ignore(kDense),
      bind("maxnum_des_feature_per_sample", &M::maxnum_des_feature_per_sample, integer(),
           "Dense features per sample.")
          .ignore(kDense),
      bind("network_file", &M::network_file, string(), "Graph file of the dense network.").ignore(kDense),
      bind("label_dim", &M::label_dim, integer(), "Outputs of the dense network per sample.").ignore(kDense),
      bind("slot_num", &M::slot_num, integer(), "Feature slots of the dense network's input.").ignore(kDense),
      bind("non_trainable_params_file", &M::non_trainable_params_file, string(),
           "File of the dense network's non-trainable parameters.")
          .ignore(kDense),
      bind("use_mixed_precision", &M::use_mixed_precision, boolean(), "Run the dense network in fp16.")
          .ignore(kDense),
      bind("scaler", &M::scaler, number(), "Loss scaler of the dense network.").ignore(kDense),
      bind("use_algorithm_search", &M::use_algorithm_search, boolean(),
           "Let the dense network search for GEMM algorithms.")
          .ignore(kDense),
      bind("use_cuda_graph", &M::use_cuda_graph, boolean(), "Run the dense network through CUDA graphs.")
          .ignore(kDense),
      bind("refresh_delay", &M::refresh_delay, number(), "Seconds before the first timed cache refresh.")
          .ignore("there is no refresh timer: call refresh()"),
      bind("refresh_interval", &M::refresh_interval, number(), "Seconds between timed cache refreshes.")
          .ignore("there is no refresh timer: call refresh()"),
      bind("use_context_stream", &M::use_context_stream, boolean(), "Run lookups on the framework's stream.")
          .ignore("the caller's stream is always used"),
      bind("use_hctr_cache_implementation", &M::use_hctr_cache_implementation, boolean(),
           "Choose between HugeCTR's two dynamic cache implementations.")
          .ignore("hps has one dynamic GPU cache implementation"),
      bind("fuse_embedding_table", &M::fuse_embedding_table, boolean(), "Opt this model out of table fusion.")
          .ignore("each table is looked up independently, no fusion is needed"),
      bind("enable_pagelock", &M::enable_pagelock, boolean(), "Static cache: keep rows in pinned host memory.")
          .ignore("not implemented; for tables larger than GPU memory use the `dynamic` cache, which "
                  "keeps the rest in the CPU-memory tier"),
      bind("fp8_quant", &M::fp8_quant, boolean(), "Static cache: store rows as 8-bit floats.")
          .ignore("not implemented; use `embedding_cache_dtype: \"float16\"` to halve GPU cache memory"),
  };
  return fields;
}

Field<Config> models_field() {
  Field<Config> f{"models", list(object([] { return section_schema(model_fields()); }), true),
                  "One entry per model served."};
  f.set = [](Config& c, const Json& v, const Where& w) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      ModelConfig model;
      parse_section(model_fields(), v[i], model, w.index(i));
      for (std::size_t j = 0; j < c.models.size(); ++j)
        if (c.models[j].name == model.name)
          w.index(i).key("model").fail("duplicate model name ", quote(model.name), " (also at ",
                                       w.index(j).key("model").path(), ")");
      c.models.push_back(std::move(model));
    }
  };
  f.get = [](const Config& c) -> Json {
    Json out = Json::array();
    for (const ModelConfig& m : c.models) out.push_back(section_to_json(model_fields(), m));
    return out;
  };
  return f.require();
}

const Fields<Config>& config_fields() {
  static const Fields<Config> fields = {
      bind("supportlonglong", &Config::supportlonglong, boolean(),
           "Key width of every model: true for 64-bit keys, false for 32-bit keys. HugeCTR required "
           "this key although its documentation said it defaults to true; here it defaults to true."),
      bind("fuse_embedding_table", &Config::fuse_embedding_table, boolean(), "Fuse tables of equal dimension.")
          .ignore("each table is looked up independently, no fusion is needed"),
      section("volatile_db", &Config::volatile_db, &volatile_db_fields,
              "The CPU-memory tier: a hash map in this process (also when the key is absent) or a "
              "Redis Cluster."),
      section("persistent_db", &Config::persistent_db, &persistent_db_fields,
              "The persistent tier (RocksDB); disabled by default."),
      section("update_source", &Config::update_source, &update_source_fields,
              "Where streamed updates come from (Kafka); none by default."),
      models_field(),
  };
  return fields;
}

// ---------------------------------------------------------------------------------------------
// Reading JSON text.

/// "line L, column C" of the character at 1-based byte position `byte` (nlohmann's convention).
std::string position_text(const std::string& text, std::size_t byte) {
  const std::size_t index = std::min(byte > 0 ? byte - 1 : 0, text.size());
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < index; ++i) text[i] == '\n' ? (++line, column = 1) : ++column;
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

/// nlohmann's message without its "[json.exception...] parse error at line 3, column 7: " prefix.
std::string parse_error_text(const std::string& what) {
  std::size_t start = what.find("] ");
  start = start == std::string::npos ? 0 : start + 2;
  if (what.compare(start, 11, "parse error") == 0) {
    const std::size_t colon = what.find(": ", start);
    if (colon != std::string::npos) start = colon + 2;
  }
  return what.substr(start);
}

/// Parses JSON text, refusing a key that appears twice in one object with different values (which
/// nlohmann would silently resolve by keeping the last); twice with the same value is a warning
/// (HugeCTR's own documented example repeats a key so).
Json read_json(const std::string& text, const Context& context) {
  struct Frame {
    bool array;
    std::string path;
    std::size_t next_index = 0;
    std::string key;
    bool repeated = false;                // `key` appeared before in this object
    std::map<std::string, Json> values;  // each key's first value
  };
  std::vector<Frame> stack;
  auto member_path = [](const Frame& f) { return f.path.empty() ? f.key : f.path + "." + f.key; };
  auto child_path = [&stack, &member_path]() -> std::string {
    if (stack.empty()) return "";
    Frame& f = stack.back();
    if (f.array) return f.path + "[" + std::to_string(f.next_index++) + "]";
    return member_path(f);
  };
  // The value of an object's current key is complete.
  auto member_done = [&](const Json& value) {
    if (stack.empty() || stack.back().array) return;
    Frame& f = stack.back();
    if (!f.repeated) {
      f.values.emplace(f.key, value);
    } else if (f.values.at(f.key) == value) {
      Where(context, member_path(f)).warn("appears more than once in the same object, with the same value");
    } else {
      Where(context, member_path(f)).fail("key appears more than once in the same object, with different values");
    }
  };
  auto on_event = [&](int, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start: stack.push_back({false, child_path(), 0, {}, false, {}}); break;
      case Json::parse_event_t::array_start: stack.push_back({true, child_path(), 0, {}, false, {}}); break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        stack.pop_back();
        member_done(parsed);
        break;
      case Json::parse_event_t::key:
        stack.back().key = parsed.get<std::string>();
        stack.back().repeated = stack.back().values.count(stack.back().key) > 0;
        break;
      case Json::parse_event_t::value:
        if (!stack.empty() && stack.back().array) ++stack.back().next_index;
        member_done(parsed);
        break;
    }
    return true;
  };
  try {
    return Json::parse(text, on_event);
  } catch (const Json::parse_error& e) {
    HPS_FAIL(ConfigError, context.source, ": ", position_text(text, e.byte), ": invalid JSON: ",
             parse_error_text(e.what()));
  } catch (const Json::exception& e) {
    HPS_FAIL(ConfigError, context.source, ": invalid JSON: ", parse_error_text(e.what()));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API.

const char* to_string(VolatileDbType v) { return volatile_db_types().name_of(static_cast<int>(v)); }
const char* to_string(PersistentDbType v) { return persistent_db_types().name_of(static_cast<int>(v)); }
const char* to_string(UpdateSourceType v) { return update_source_types().name_of(static_cast<int>(v)); }
const char* to_string(OverflowPolicy v) { return overflow_policies().name_of(static_cast<int>(v)); }
const char* to_string(EmbeddingCacheType v) { return cache_types().name_of(static_cast<int>(v)); }
const char* to_string(CacheDtype v) { return cache_dtypes().name_of(static_cast<int>(v)); }

const ModelConfig* Config::find_model(const std::string& name) const {
  for (const ModelConfig& m : models)
    if (m.name == name) return &m;
  return nullptr;
}

std::string table_tag(const std::string& model, const std::string& table) {
  return "hps_et." + model + "." + table;
}

bool model_takes_updates(const Config& config, const std::string& model) {
  std::vector<std::string> filters;
  if (config.volatile_db.type != VolatileDbType::kDisabled) filters = config.volatile_db.update_filters;
  if (config.persistent_db.type != PersistentDbType::kDisabled) {
    filters.insert(filters.end(), config.persistent_db.update_filters.begin(), config.persistent_db.update_filters.end());
  }
  return std::any_of(filters.begin(), filters.end(),
                     [&](const std::string& f) { return std::regex_match(model, std::regex(f)); });
}

namespace {

/// Settings that parse but would not do what they say: warnings, not errors (HugeCTR accepted them).
void warn_about_settings_without_effect(Config& config, const std::string& source) {
  if (config.update_source.type == UpdateSourceType::kKafka &&
      std::none_of(config.models.begin(), config.models.end(),
                   [&](const ModelConfig& m) { return model_takes_updates(config, m.name); })) {
    config.warnings.push_back(source + ": update_source: the update_filters of the tiers in use match none of the "
                              "models, so no streamed update will be applied (they are regular expressions over "
                              "whole model names; HugeCTR's default ^hps_.+$ matches none)");
  }
  if (config.volatile_db.type != VolatileDbType::kDisabled && !config.volatile_db.initialize_after_startup &&
      config.persistent_db.type == PersistentDbType::kDisabled) {
    config.warnings.push_back(source + ": volatile_db.initialize_after_startup: false has no effect without a "
                              "persistent_db: the volatile_db then holds the only copy of the rows and is loaded at start");
  }
}

}  // namespace

Config parse_config(const std::string& json_text, const std::string& source, const std::string& base_dir) {
  Config config;
  config.base_dir = base_dir.empty() ? "" : resolve_path(base_dir, "");
  const Context context{source, config.base_dir, &config.warnings};
  const Json root = read_json(json_text, context);
  // Defaults that depend on the machine; the document may override them.
  config.volatile_db.num_partitions = default_num_partitions();
  config.persistent_db.path = default_rocksdb_path();
  parse_section(config_fields(), root, config, Where(context, ""));
  const Json* volatile_db = root.is_object() && root.contains("volatile_db") ? &root["volatile_db"] : nullptr;
  if (config.volatile_db.type == VolatileDbType::kRedisCluster &&
      !(volatile_db && volatile_db->is_object() && volatile_db->contains("num_partitions"))) {
    config.volatile_db.num_partitions = kRedisPartitions;
  }
  // HugeCTR documented semicolon-separated brokers; librdkafka takes commas.
  std::replace(config.update_source.brokers.begin(), config.update_source.brokers.end(), ';', ',');
  warn_about_settings_without_effect(config, source);
  // The Redis client (hiredis 0.14, Debian's) has no TLS: refuse rather than connect in clear text.
  HPS_EXPECTS(!(config.volatile_db.type == VolatileDbType::kRedisCluster && config.volatile_db.enable_tls), ConfigError,
              source, ": volatile_db.enable_tls: TLS to Redis is not supported (hps's Redis client, hiredis 0.14, "
              "has none); reach the cluster over a trusted network or a TLS tunnel and set enable_tls to false");
  return config;
}

Config load_config_file(const std::string& path) {
  std::error_code error;
  if (fs::is_directory(path, error)) HPS_FAIL(IOError, "cannot read config file ", path, ": it is a folder");
  std::ifstream in(path, std::ios::binary);
  HPS_EXPECTS(in, IOError, "cannot read config file ", path, ": ", std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  HPS_EXPECTS(!in.bad(), IOError, "cannot read config file ", path);
  const fs::path folder = fs::path(path).parent_path();
  return parse_config(text.str(), path, folder.empty() ? "." : folder.string());
}

std::string config_to_json(const Config& config, int indent) {
  return section_to_json(config_fields(), config).dump(indent, ' ', false, Json::error_handler_t::replace);
}

std::string config_json_schema(int indent) {
  Json schema = {{"$schema", "https://json-schema.org/draft/2020-12/schema"},
                 {"title", "hps configuration"},
                 {"description",
                  "Configuration of the hps parameter server; HugeCTR HPS configuration files are "
                  "accepted as they are."}};
  schema.update(section_schema(config_fields()));
  return schema.dump(indent);
}

}  // namespace hps
