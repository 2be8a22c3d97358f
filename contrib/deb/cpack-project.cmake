# contrib/deb/cpack-project.cmake — read by cpack for each generator (CPACK_PROJECT_CONFIG_FILE
# in CMakeLists.txt). A Debian package must be built from a /usr install: with another prefix
# the config would land in PREFIX/etc, not /etc, and the units would name paths dpkg does not
# own. Stops cpack -G DEB with the command that configures the build right.
if(CPACK_GENERATOR STREQUAL "DEB" AND NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR
          "cpack -G DEB: the build is configured with CMAKE_INSTALL_PREFIX="
          "'${CPACK_PACKAGING_INSTALL_PREFIX}', expected /usr; reconfigure with "
          "cmake -DCMAKE_INSTALL_PREFIX=/usr and run cpack again")
endif()
