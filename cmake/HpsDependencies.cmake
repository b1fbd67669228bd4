# Finds what the optional parts need and decides, per HPS_WITH_* option, what gets built.

find_package(Threads REQUIRED)

# nlohmann-json: required (the config parser). Its CMake package, or the bare header.
find_package(nlohmann_json 3.9 CONFIG QUIET)
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_path(HPS_NLOHMANN_INCLUDE nlohmann/json.hpp)
  if(NOT HPS_NLOHMANN_INCLUDE)
    message(FATAL_ERROR "nlohmann-json not found: install nlohmann-json3-dev (Debian) or pass -DCMAKE_PREFIX_PATH")
  endif()
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  target_include_directories(nlohmann_json::nlohmann_json INTERFACE "${HPS_NLOHMANN_INCLUDE}")
endif()

# CUDA: the GPU embedding cache.
set(_cuda_found OFF)
set(_cuda_why "no CUDA compiler found")
string(TOUPPER "${HPS_WITH_CUDA}" _cuda_mode)
if(NOT _cuda_mode STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES ${HPS_CUDA_ARCHITECTURES})
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit)
    if(CUDAToolkit_FOUND)
      set(_cuda_found ON)
    else()
      set(_cuda_why "CUDA toolkit libraries not found")
    endif()
  endif()
endif()
hps_resolve_feature(HPS_WITH_CUDA CUDA ${_cuda_found} "${_cuda_why}")

# RocksDB: the persistent tier.
set(_rocksdb_found OFF)
string(TOUPPER "${HPS_WITH_ROCKSDB}" _rocksdb_mode)
if(NOT _rocksdb_mode STREQUAL "OFF")
  find_package(RocksDB CONFIG QUIET)
  if(TARGET RocksDB::rocksdb-shared)
    set(_rocksdb_found ON)
    set(HPS_ROCKSDB_TARGET RocksDB::rocksdb-shared)
  elseif(TARGET RocksDB::rocksdb)
    set(_rocksdb_found ON)
    set(HPS_ROCKSDB_TARGET RocksDB::rocksdb)
  endif()
endif()
hps_resolve_feature(HPS_WITH_ROCKSDB ROCKSDB ${_rocksdb_found} "RocksDB not found (Debian: librocksdb-dev)")

# Redis and TensorFlow adapters are separate targets that plug in here later.
hps_resolve_feature(HPS_WITH_REDIS REDIS OFF "the Redis Cluster tier is not part of this version yet")
hps_resolve_feature(HPS_WITH_TF TF OFF "the TensorFlow adapter is not part of this version yet")

# TensorRT: the plugin shell compiles against TensorRT's public headers (NvInferRuntime.h, which
# includes cuda_runtime_api.h, hence CUDA) and links no TensorRT library. Hints: TensorRT_ROOT
# (its include/ folder) or HPS_TENSORRT_INCLUDE (the folder itself).
set(_trt_found OFF)
set(_trt_why "TensorRT headers (NvInferRuntime.h) not found: set TensorRT_ROOT or HPS_TENSORRT_INCLUDE")
string(TOUPPER "${HPS_WITH_TENSORRT}" _trt_mode)
if(NOT _trt_mode STREQUAL "OFF")
  find_path(HPS_TENSORRT_INCLUDE NvInferRuntime.h
            HINTS ${TensorRT_ROOT} $ENV{TensorRT_ROOT} $ENV{TENSORRT_ROOT}
            PATH_SUFFIXES include
            PATHS /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr/local/tensorrt/include)
  if(HPS_TENSORRT_INCLUDE AND NOT EXISTS "${HPS_TENSORRT_INCLUDE}/NvInferRuntime.h")
    set(_trt_why "HPS_TENSORRT_INCLUDE=${HPS_TENSORRT_INCLUDE} holds no NvInferRuntime.h")
  elseif(HPS_TENSORRT_INCLUDE AND NOT HPS_HAVE_CUDA)
    set(_trt_why "TensorRT headers found at ${HPS_TENSORRT_INCLUDE}, but no CUDA toolkit (they need cuda_runtime_api.h)")
  elseif(HPS_TENSORRT_INCLUDE)
    set(_trt_found ON)
  endif()
endif()
hps_resolve_feature(HPS_WITH_TENSORRT TENSORRT ${_trt_found} "${_trt_why}")
