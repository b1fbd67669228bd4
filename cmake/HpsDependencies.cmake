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

# Redis Cluster: a tier that plugs into the tier factory later.
hps_resolve_feature(HPS_WITH_REDIS REDIS OFF "the Redis Cluster tier is not part of this version yet")

# TensorFlow: the op library of hps.tf, built against the TensorFlow of the Python that builds the
# wheel (its tf.sysconfig flags). Without it the wheel still ships hps.tf, which then tells how to
# build the library (python -m hps.tf.build).
set(_tf_found OFF)
set(_tf_why "TensorFlow is not importable by the Python building hps (install tensorflow-cpu first, or build the op library later with python -m hps.tf.build)")
string(TOUPPER "${HPS_WITH_TF}" _tf_mode)
if(NOT _tf_mode STREQUAL "OFF")
  if(NOT (SKBUILD OR HPS_BUILD_PYTHON))
    set(_tf_why "the op library is part of the Python package build (SKBUILD or HPS_BUILD_PYTHON)")
  else()
    find_package(Python 3.9 COMPONENTS Interpreter QUIET)
    if(Python_EXECUTABLE)
      # One line each: compile flags, link flags (items joined by "|"), include folder, version.
      execute_process(
        COMMAND ${CMAKE_COMMAND} -E env TF_CPP_MIN_LOG_LEVEL=3 ${Python_EXECUTABLE} -c
          "import tensorflow as tf; s = tf.sysconfig; print('|'.join(s.get_compile_flags())); print('|'.join(s.get_link_flags())); print(s.get_include()); print(tf.__version__)"
        OUTPUT_VARIABLE _tf_out ERROR_QUIET RESULT_VARIABLE _tf_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
      if(_tf_rc EQUAL 0)
        string(REPLACE "\n" ";" _tf_lines "${_tf_out}")
        list(LENGTH _tf_lines _tf_count)
        if(_tf_count GREATER_EQUAL 4)
          list(GET _tf_lines -4 HPS_TF_COMPILE_FLAGS)
          list(GET _tf_lines -3 HPS_TF_LINK_FLAGS)
          list(GET _tf_lines -2 HPS_TF_INCLUDE)
          list(GET _tf_lines -1 HPS_TF_VERSION)
          string(REPLACE "|" ";" HPS_TF_COMPILE_FLAGS "${HPS_TF_COMPILE_FLAGS}")
          string(REPLACE "|" ";" HPS_TF_LINK_FLAGS "${HPS_TF_LINK_FLAGS}")
          set(_tf_found ON)
        endif()
      endif()
    endif()
  endif()
endif()
hps_resolve_feature(HPS_WITH_TF TF ${_tf_found} "${_tf_why}")
if(HPS_HAVE_TF)
  message(STATUS "hps: TensorFlow ${HPS_TF_VERSION} for the hps.tf op library (${HPS_TF_INCLUDE})")
endif()
# torch: the C++ op library of hps.torch, built against the torch of the Python that builds the
# wheel (flags from adapters/torch/hps/torch/_flags.py, which imports only torch). Without it
# hps.torch uses its Python op; `python -m hps.torch.build` builds the library later.
set(_torch_found OFF)
set(_torch_why "torch is not importable by the Python building hps (build the op library later with python -m hps.torch.build)")
string(TOUPPER "${HPS_WITH_TORCH_OPS}" _torch_mode)
if(NOT _torch_mode STREQUAL "OFF")
  if(NOT (SKBUILD OR HPS_BUILD_PYTHON))
    set(_torch_why "the op library is part of the Python package build (SKBUILD or HPS_BUILD_PYTHON)")
  else()
    find_package(Python 3.9 COMPONENTS Interpreter QUIET)
    if(Python_EXECUTABLE)
      execute_process(
        COMMAND ${Python_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/adapters/torch/hps/torch/_flags.py
        OUTPUT_VARIABLE _torch_out ERROR_QUIET RESULT_VARIABLE _torch_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
      if(_torch_rc EQUAL 0)
        string(REPLACE "\n" ";" _torch_lines "${_torch_out}")
        list(LENGTH _torch_lines _torch_count)
        if(_torch_count GREATER_EQUAL 4)
          list(GET _torch_lines -4 HPS_TORCH_COMPILE_FLAGS)
          list(GET _torch_lines -3 HPS_TORCH_LINK_FLAGS)
          list(GET _torch_lines -2 HPS_TORCH_VERSION)
          string(REPLACE "|" ";" HPS_TORCH_COMPILE_FLAGS "${HPS_TORCH_COMPILE_FLAGS}")
          string(REPLACE "|" ";" HPS_TORCH_LINK_FLAGS "${HPS_TORCH_LINK_FLAGS}")
          set(_torch_found ON)
        endif()
      endif()
    endif()
  endif()
endif()
hps_resolve_feature(HPS_WITH_TORCH_OPS TORCH_OPS ${_torch_found} "${_torch_why}")
if(HPS_HAVE_TORCH_OPS)
  message(STATUS "hps: torch ${HPS_TORCH_VERSION} for the hps.torch op library")
endif()
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
