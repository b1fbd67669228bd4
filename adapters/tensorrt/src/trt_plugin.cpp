// The TensorRT shell of HPS_TRT: IPluginV3 (core, build and runtime capabilities) and its creator,
// registered when the library loads and returned by getCreators(). Every decision is delegated to
// the TensorRT-free core (fields, state, shapes, lookup); this file only translates types and turns
// exceptions into TensorRT's error returns.
//
// Ownership: TensorRT owns the plugins it creates or clones (it deletes them); the creator is a
// process-lifetime singleton. Threading: TensorRT may call enqueue on several execution contexts
// at once, each on its own clone (attachToContext); clones share the hps server, which is
// thread-safe. Everything else runs on the builder's or runtime's thread.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "hps_trt/error.hpp"
#include "hps_trt/fields.hpp"
#include "hps_trt/lookup.hpp"
#include "hps_trt/shapes.hpp"
#include "hps_trt/state.hpp"

#define HPS_TRT_EXPORT extern "C" __attribute__((visibility("default")))

namespace hps_trt {
namespace {

using namespace nvinfer1;

std::atomic<ILoggerFinder*> g_logger_finder{nullptr};

/// Errors go to TensorRT's logger when it gave us one (setLoggerFinder), else to stderr.
void report(const std::string& where, const char* what) noexcept {
  try {
    const std::string message = where + ": " + what;
    ILoggerFinder* finder = g_logger_finder.load();
    ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr) {
      logger->log(ILogger::Severity::kERROR, message.c_str());
    } else {
      std::fprintf(stderr, "%s\n", message.c_str());
    }
  } catch (...) {
  }
}

void report(const std::string& where, const std::exception& error) noexcept { report(where, error.what()); }

ElementType element_type(DataType type) {
  switch (type) {
    case DataType::kFLOAT: return ElementType::kFloat32;
    case DataType::kHALF: return ElementType::kFloat16;
    case DataType::kINT32: return ElementType::kInt32;
    case DataType::kINT64: return ElementType::kInt64;
    default: return ElementType::kOther;
  }
}

class HpsPlugin final : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime {
 public:
  HpsPlugin(const PluginConfig& config, std::string plugin_namespace)
      : lookup_(config), namespace_(std::move(plugin_namespace)), state_(serialize(config)) {
    bind_state();
  }
  HpsPlugin(const HpsPlugin& other) : lookup_(other.lookup_), namespace_(other.namespace_), state_(other.state_) {
    bind_state();
  }

  // ---- IPluginV3 ----
  IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
    switch (type) {
      case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
      case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
      case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
  }

  IPluginV3* clone() noexcept override {
    try {
      return new HpsPlugin(*this);
    } catch (const std::exception& error) {
      report("HPS_TRT clone", error);
      return nullptr;
    }
  }

  // ---- core ----
  AsciiChar const* getPluginName() const noexcept override { return kPluginName; }
  AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return namespace_.c_str(); }

  // ---- build ----
  int32_t configurePlugin(DynamicPluginTensorDesc const*, int32_t nbInputs, DynamicPluginTensorDesc const*,
                          int32_t nbOutputs) noexcept override {
    return check_io(nbInputs, nbOutputs) ? 0 : -1;
  }

  int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override {
    if (!check_io(nbInputs, nbOutputs)) return -1;
    const ElementType keys = element_type(inputTypes[0]);
    if (keys != ElementType::kInt32 && keys != ElementType::kInt64) {
      report("HPS_TRT", "keys must be INT32 or INT64 tensors");
      return -1;
    }
    outputTypes[0] = lookup_.config().output_type == OutputType::kFloat16 ? DataType::kHALF : DataType::kFLOAT;
    return 0;
  }

  int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                          int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept override {
    try {
      if (!check_io(nbInputs, nbOutputs)) return -1;
      const std::vector<std::int64_t> unknown(static_cast<std::size_t>(std::max(inputs[0].nbDims, 0)), -1);
      const auto dims = output_dims(unknown.data(), inputs[0].nbDims, lookup_.config().emb_vec_size);  // checks the rank
      outputs[0].nbDims = static_cast<int32_t>(dims.size());
      for (int32_t i = 0; i < inputs[0].nbDims; ++i) outputs[0].d[i] = inputs[0].d[i];
      outputs[0].d[inputs[0].nbDims] = exprBuilder.constant(lookup_.config().emb_vec_size);
      return 0;
    } catch (const std::exception& error) {
      report("HPS_TRT getOutputShapes", error);
      return -1;
    }
  }

  bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override {
    if (nbInputs != 1 || nbOutputs != 1 || pos < 0 || pos > 1) return false;
    return supports(pos, element_type(inOut[pos].desc.type), inOut[pos].desc.format == TensorFormat::kLINEAR,
                    lookup_.config());
  }

  int32_t getNbOutputs() const noexcept override { return 1; }

  size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs, DynamicPluginTensorDesc const*,
                          int32_t) const noexcept override {
    try {
      if (nbInputs != 1) return 0;
      return workspace_bytes(key_count(inputs[0].max.d, inputs[0].max.nbDims), lookup_.config());
    } catch (const std::exception& error) {
      report("HPS_TRT getWorkspaceSize", error);
      return 0;
    }
  }

  // ---- runtime ----
  int32_t onShapeChange(PluginTensorDesc const*, int32_t nbInputs, PluginTensorDesc const*,
                        int32_t nbOutputs) noexcept override {
    return check_io(nbInputs, nbOutputs) ? 0 : -1;
  }

  int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*, void const* const* inputs,
                  void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
    try {
      const std::size_t n = key_count(inputDesc[0].dims.d, inputDesc[0].dims.nbDims);
      int device = 0;
      // The engine's device is current on the thread that enqueues (TensorRT's contract).
      if (cudaGetDevice(&device) != cudaSuccess) throw PluginError("no current CUDA device");
      lookup_.enqueue(inputs[0], element_type(inputDesc[0].type), n, outputs[0], workspace, device, stream);
      return 0;
    } catch (const std::exception& error) {
      report("HPS_TRT enqueue", error);
      return -1;
    }
  }

  IPluginV3* attachToContext(IPluginResourceContext*) noexcept override { return clone(); }

  PluginFieldCollection const* getFieldsToSerialize() noexcept override { return &fields_; }

 private:
  static bool check_io(int32_t inputs, int32_t outputs) noexcept {
    if (inputs == 1 && outputs == 1) return true;
    report("HPS_TRT", ("takes 1 input (keys) and gives 1 output (rows), got " + std::to_string(inputs) +
                       " and " + std::to_string(outputs)).c_str());
    return false;
  }

  void bind_state() {
    field_ = PluginField(kStateField, state_.data(), PluginFieldType::kUNKNOWN, static_cast<int32_t>(state_.size()));
    fields_.nbFields = 1;
    fields_.fields = &field_;
  }

  TableLookup lookup_;
  std::string namespace_;
  std::vector<std::uint8_t> state_;  // the serialized configuration, what getFieldsToSerialize hands out
  PluginField field_;
  PluginFieldCollection fields_;
};

class HpsPluginCreator final : public IPluginCreatorV3One {
 public:
  HpsPluginCreator() {
    for (const FieldView& field : creation_fields()) {
      names_.emplace_back(field.name, nullptr, static_cast<PluginFieldType>(field.type), field.length);
    }
    collection_.nbFields = static_cast<int32_t>(names_.size());
    collection_.fields = names_.data();
  }

  IPluginV3* createPlugin(AsciiChar const* name, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
    try {
      if (fc == nullptr) throw PluginError("no field collection given");
      // A deserialized engine hands back the one state field; a network definition, the node's fields.
      for (int32_t i = 0; i < fc->nbFields; ++i) {
        if (fc->fields[i].name != nullptr && std::string(fc->fields[i].name) == kStateField) {
          if (fc->fields[i].type != PluginFieldType::kUNKNOWN || fc->fields[i].length < 0) {
            throw PluginError(std::string("field ") + kStateField + " must be UNKNOWN bytes");
          }
          return new HpsPlugin(deserialize(fc->fields[i].data, static_cast<std::size_t>(fc->fields[i].length)),
                               namespace_);
        }
      }
      std::vector<FieldView> views;
      views.reserve(static_cast<std::size_t>(std::max(fc->nbFields, 0)));
      for (int32_t i = 0; i < fc->nbFields; ++i) {
        const PluginField& f = fc->fields[i];
        views.push_back({f.name, f.data, static_cast<FieldType>(f.type), f.length});
      }
      return new HpsPlugin(parse_fields(views.data(), static_cast<std::int32_t>(views.size())), namespace_);
    } catch (const std::exception& error) {
      report(std::string("HPS_TRT createPlugin ") + (name != nullptr ? name : ""), error);
      return nullptr;
    }
  }

  PluginFieldCollection const* getFieldNames() noexcept override { return &collection_; }
  AsciiChar const* getPluginName() const noexcept override { return kPluginName; }
  AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return namespace_.c_str(); }

 private:
  std::vector<PluginField> names_;
  PluginFieldCollection collection_{};
  std::string namespace_;  // "" as HugeCTR's
};

HpsPluginCreator& creator() {
  static HpsPluginCreator instance;
  return instance;
}

using GetRegistry = IPluginRegistry* (*)() noexcept;

/// TensorRT's getPluginRegistry, if libnvinfer is in the process. With `load`, loads libnvinfer of
/// the major version this was compiled against first (an LD_PRELOAD of the plugin runs before the
/// host loads TensorRT; dlopen then returns the same library the host gets later).
GetRegistry find_registry(bool load) {
  void* symbol = dlsym(RTLD_DEFAULT, "getPluginRegistry");
  if (symbol == nullptr && load) {
    const std::string soname = "libnvinfer.so." + std::to_string(NV_TENSORRT_MAJOR);
    if (void* library = dlopen(soname.c_str(), RTLD_NOW | RTLD_GLOBAL)) symbol = dlsym(library, "getPluginRegistry");
  }
  return reinterpret_cast<GetRegistry>(symbol);
}

std::atomic<bool> g_registered_on_load{false};

/// Registration on load, so `ctypes.CDLL(path, RTLD_GLOBAL)` or LD_PRELOAD is all a host needs.
/// HPS_TRT_NO_AUTOREGISTER=1 turns it off (then use getCreators / IPluginRegistry::loadLibrary).
struct RegisterOnLoad {
  RegisterOnLoad() {
    const char* off = std::getenv("HPS_TRT_NO_AUTOREGISTER");
    if (off != nullptr && off[0] != '\0' && off[0] != '0') return;
    if (GetRegistry get = find_registry(true)) {
      IPluginRegistry* registry = get();
      if (registry != nullptr && registry->registerCreator(creator(), "")) g_registered_on_load = true;
    }
  }
} g_register_on_load;

}  // namespace
}  // namespace hps_trt

/// The creators of this library, for IPluginRegistry::loadLibrary. loadLibrary registers what this
/// returns and fails if one is registered already, so the registration made on load is handed over.
HPS_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  using namespace hps_trt;
  if (g_registered_on_load.exchange(false)) {
    if (GetRegistry get = find_registry(false)) get()->deregisterCreator(creator());
  }
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator()};
  nbCreators = 1;
  return creators;
}

/// TensorRT passes its logger finder to plugin libraries it loads; errors are logged through it.
HPS_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { hps_trt::g_logger_finder = finder; }
