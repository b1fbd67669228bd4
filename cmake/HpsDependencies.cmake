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

# Kafka: the update consumer. Only librdkafka's C header is needed to build: the library itself
# is loaded at run time (core/src/updates/librdkafka.hpp says where it is looked for).
set(_kafka_found OFF)
string(TOUPPER "${HPS_WITH_KAFKA}" _kafka_mode)
if(NOT _kafka_mode STREQUAL "OFF")
  find_path(HPS_RDKAFKA_INCLUDE librdkafka/rdkafka.h)
  if(HPS_RDKAFKA_INCLUDE)
    set(_kafka_found ON)
  endif()
endif()
hps_resolve_feature(HPS_WITH_KAFKA KAFKA ${_kafka_found} "librdkafka/rdkafka.h not found (Debian: librdkafka-dev)")

# Redis, TensorFlow and TensorRT adapters are separate targets that plug in here later.
hps_resolve_feature(HPS_WITH_REDIS REDIS OFF "the Redis Cluster tier is not part of this version yet")
hps_resolve_feature(HPS_WITH_TF TF OFF "the TensorFlow adapter is not part of this version yet")
hps_resolve_feature(HPS_WITH_TENSORRT TENSORRT OFF "the TensorRT plugin is not part of this version yet")
