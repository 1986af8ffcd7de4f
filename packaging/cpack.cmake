# Debian packages from the install() rules, one per component:
#   libexmem0     runtime      libexmem.so.0*, libexmem-preload.so
#   libexmem-dev  development  headers, libexmem.so, libexmem.a (+ libexmem_host.a),
#                              exmem.pc, the CMake package, the Rust crate's source
#                              (/usr/share/exmem/rust/exmem)
#   exmem         cli          the exmem command and its scenarios
# Build them with packaging/build-debs (a tree configured for prefix /usr), or
# `cmake --build <tree> --target package` in any tree: the packages install
# where the tree was configured to (CMAKE_INSTALL_PREFIX), which for Debian
# must be /usr. They land in <tree>/packages.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME exmem)
set(CPACK_PACKAGE_VENDOR "exmem")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_PACKAGE_CONTACT "exmem maintainers <exmem@invalid>")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "exmem maintainers <exmem@invalid>")
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # name_version-release_arch.deb
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps: libc6, libstdc++6, libfmt9 ...
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)  # libexmem0's shlibs file
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# Each package's Description is its component's (first line: the synopsis).
# CPackDeb puts the project-wide summary before it unless the summary is
# CPack's own default, hence this value, which no package shows.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime development cli)
set(exmem_deb_version "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libexmem0)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION "exclusive memory for secrets (shared library)
libexmem allocates memory for secrets from memfd_secret(2) regions: pages the
kernel removed from its direct map, out of reach of other processes (even
root), core dumps and swap; where memfd_secret is unavailable, locked memory.
Objects are wiped when freed.

This package holds the shared library and libexmem-preload.so, which moves a
program's secret allocations into exclusive memory through LD_PRELOAD.")

set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libexmem-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS "libexmem0 (= ${exmem_deb_version})")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SUGGESTS "pkg-config, cmake, cargo")
set(CPACK_COMPONENT_DEVELOPMENT_DESCRIPTION "exclusive memory for secrets (development files)
libexmem allocates memory for secrets from memfd_secret(2) regions, removed
from the kernel direct map, or locked memory where memfd_secret is
unavailable.

This package holds the C and C++ headers, the static library, the pkg-config
file (exmem), the CMake package (find_package(exmem): exmem::shared,
exmem::exmem) and the Rust crate's source in /usr/share/exmem/rust/exmem,
for a path dependency.")

set(CPACK_DEBIAN_CLI_PACKAGE_NAME exmem)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_CLI_DESCRIPTION "exclusive memory: probe the kernel and model its cost
The exmem command probes what the running kernel offers for memfd_secret(2)
(exmem probe), simulates what exclusive memory costs the direct map and the
page allocator at scale (exmem sim, exmem study), and records traces (exmem
trace).")

if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "exmem: the Debian packages of this tree install under ${CMAKE_INSTALL_PREFIX} "
                 "(packaging/build-debs configures a tree for /usr)")
endif()
include(CPack)
