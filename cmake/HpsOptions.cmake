# Every build option in one place.
#
# Feature options take AUTO (build the part when its toolkit is found), ON (fail the configure
# step when it is not) or OFF. A CPU-only build is a first-class product.

function(hps_feature_option name doc)
  set(${name} AUTO CACHE STRING "${doc} (AUTO, ON or OFF)")
  set_property(CACHE ${name} PROPERTY STRINGS AUTO ON OFF)
  string(TOUPPER "${${name}}" value)
  if(NOT value MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "${name} must be AUTO, ON or OFF, not '${${name}}'")
  endif()
endfunction()

hps_feature_option(HPS_WITH_CUDA "Build the GPU embedding cache")
hps_feature_option(HPS_WITH_ROCKSDB "Build the RocksDB persistent tier")
hps_feature_option(HPS_WITH_REDIS "Build the Redis Cluster tier")
hps_feature_option(HPS_WITH_KAFKA "Build the Kafka update consumer (librdkafka C headers; the library is loaded at run time)")
hps_feature_option(HPS_WITH_TF "Build the TensorFlow custom ops")
hps_feature_option(HPS_WITH_TORCH_OPS "Build the C++ torch op library (libhps_torch_ops)")
hps_feature_option(HPS_WITH_TENSORRT "Build the TensorRT plugin")

option(HPS_BUILD_TESTS "Build the C++ test suites (ctest)" OFF)
option(HPS_BUILD_PYTHON "Build the Python extension outside a wheel build" OFF)
option(HPS_BUILD_FUZZERS "Build the libFuzzer targets of fuzz/ (clang only; every target with ASan+UBSan)" OFF)
set(HPS_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures of the GPU cache kernels")

# Summary lines, filled by hps_resolve_feature().
set_property(GLOBAL PROPERTY HPS_BUILT "")
set_property(GLOBAL PROPERTY HPS_SKIPPED "")

# hps_resolve_feature(<option> <label> <found> <why-not>): sets HPS_HAVE_<label> in the caller.
function(hps_resolve_feature option label found why_not)
  string(TOUPPER "${${option}}" mode)
  set(enabled OFF)
  if(mode STREQUAL "OFF")
    set_property(GLOBAL APPEND PROPERTY HPS_SKIPPED "${label} (${option}=OFF)")
  elseif(found)
    set(enabled ON)
    set_property(GLOBAL APPEND PROPERTY HPS_BUILT "${label}")
  elseif(mode STREQUAL "ON")
    message(FATAL_ERROR "${option}=ON but ${label} cannot be built: ${why_not}")
  else()
    set_property(GLOBAL APPEND PROPERTY HPS_SKIPPED "${label} (${why_not})")
  endif()
  set(HPS_HAVE_${label} ${enabled} PARENT_SCOPE)
endfunction()

function(hps_print_feature_summary)
  get_property(built GLOBAL PROPERTY HPS_BUILT)
  get_property(skipped GLOBAL PROPERTY HPS_SKIPPED)
  list(JOIN built ", " built_text)
  list(JOIN skipped "; " skipped_text)
  if(NOT skipped_text)
    set(skipped_text "nothing")
  endif()
  message(STATUS "hps ${PROJECT_VERSION}: building core, cpu hash map, ${built_text}; skipping ${skipped_text}")
endfunction()
