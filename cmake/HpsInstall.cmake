# Installing the core: libhps_core, the public headers and a CMake package (find_package(hps CONFIG)
# giving the imported target hps::core, with a version file).
#
# Two layouts:
#   cmake --install   <prefix>/lib/libhps_core.so, <prefix>/include/hps/..., <prefix>/lib/cmake/hps/
#   the wheel         hps/libhps_core.so (next to _core, which finds it through $ORIGIN),
#                     hps/include/hps/..., hps/lib/cmake/hps/ (python -m hps.sysconfig --cmake-dir)
# The package's paths are relative to where it is installed, so both work wherever they land.

include(CMakePackageConfigHelpers)
include(GNUInstallDirs)

if(SKBUILD)
  set(HPS_INSTALL_LIBDIR hps)
  set(HPS_INSTALL_INCLUDEDIR hps/include)
  set(HPS_INSTALL_CMAKEDIR hps/lib/cmake/hps)
else()
  set(HPS_INSTALL_LIBDIR ${CMAKE_INSTALL_LIBDIR})
  set(HPS_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR})
  set(HPS_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/hps)
endif()

# hps_install_core(<target> <public include dir>)
function(hps_install_core target include_dir)
  install(TARGETS ${target} EXPORT hpsTargets
          LIBRARY DESTINATION ${HPS_INSTALL_LIBDIR}
          ARCHIVE DESTINATION ${HPS_INSTALL_LIBDIR}
          RUNTIME DESTINATION ${HPS_INSTALL_LIBDIR}
          INCLUDES DESTINATION ${HPS_INSTALL_INCLUDEDIR})
  install(DIRECTORY ${include_dir}/hps DESTINATION ${HPS_INSTALL_INCLUDEDIR}
          FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
  install(EXPORT hpsTargets NAMESPACE hps:: FILE hpsTargets.cmake DESTINATION ${HPS_INSTALL_CMAKEDIR})
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/hpsConfig.cmake.in
                                ${PROJECT_BINARY_DIR}/hpsConfig.cmake
                                INSTALL_DESTINATION ${HPS_INSTALL_CMAKEDIR})
  # Same major version: the C ABI (HPS_C_ABI_VERSION) and the C++ API change only with it.
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/hpsConfigVersion.cmake
                                   VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/hpsConfig.cmake ${PROJECT_BINARY_DIR}/hpsConfigVersion.cmake
          DESTINATION ${HPS_INSTALL_CMAKEDIR})
endfunction()
