# contrib/deb/cpack-pre-build.cmake — run by cpack after it staged the install and before it
# builds the package (CPACK_PRE_BUILD_SCRIPTS in CMakeLists.txt): compresses the man pages
# with gzip -9n, as Debian ships them (man and mandoc read both forms; cmake --install keeps
# them plain).
file(GLOB_RECURSE pages "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*/share/man/man[1-8]/*.[1-8]")
foreach(page ${pages})
  execute_process(COMMAND gzip -9nf "${page}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cpack: gzip -9n ${page} failed (${rc})")
  endif()
endforeach()
list(LENGTH pages n)
message(STATUS "cpack: compressed ${n} man pages")
