# ctest `install_consumer`: installs this build into a scratch prefix (cmake --install), builds
# tests/out_of_tree against it with find_package(hps CONFIG) and runs the C consumer on the table
# the c_api test wrote (key 1003 of its table t0 has the row 1003 * 0.25 + j).
# Usage: cmake -DBUILD_DIR=<hps build> -DSOURCE_DIR=<tests/out_of_tree> -DWORK=<scratch>
#              -DCONFIG=<ps.json> -P check_installed.cmake
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK})
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK}/prefix)
# Either layout (cmake/HpsInstall.cmake): lib/ + include/ + lib/cmake/hps, or a wheel build's
# hps/ + hps/include + hps/lib/cmake/hps.
file(GLOB_RECURSE installed LIST_DIRECTORIES false ${WORK}/prefix/*)
foreach(f libhps_core.so hps/c_api.h hps/tiers/tier.hpp hps/gpu/gpu_cache.hpp cmake/hps/hpsConfig.cmake
          cmake/hps/hpsConfigVersion.cmake)
  set(found ${installed})
  list(FILTER found INCLUDE REGEX "/${f}$")
  if(NOT found)
    message(FATAL_ERROR "cmake --install did not install .../${f} under ${WORK}/prefix")
  endif()
  if(f MATCHES "hpsConfig.cmake$")
    get_filename_component(cmake_dir "${found}" DIRECTORY)
  endif()
endforeach()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK}/build -Dhps_DIR=${cmake_dir})
run(${CMAKE_COMMAND} --build ${WORK}/build)
run(${WORK}/build/consumer_c ${CONFIG} m t0 1003)
string(STRIP "${out}" out)
if(NOT out MATCHES "row 1003: 250.75 251.75 252.75 253.75$")
  message(FATAL_ERROR "unexpected output: '${out}'")
endif()
message(STATUS "installed hps: ${out}")
