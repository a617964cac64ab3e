# Header-only: one (release) configuration is all there is to install.
set(VCPKG_BUILD_TYPE release)

vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    # PLACEHOLDER: set REPO to the published repository and SHA512 to the hash
    # vcpkg prints for the v${VERSION} tarball when this port is first installed
    # (it reports the expected value when the hash is 0).
    REPO dilemma-project/dilemma
    REF "v${VERSION}"
    SHA512 0
    HEAD_REF main
)

# The installed config finds utf8proc and CBC through pkg-config.
vcpkg_find_acquire_program(PKGCONFIG)

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DDILEMMA_BUILD_TESTS=OFF
        -DDILEMMA_BUILD_EXAMPLES=OFF
        -DDILEMMA_BUILD_BENCHMARKS=OFF
        -DDILEMMA_INSTALL=ON
        "-DPKG_CONFIG_EXECUTABLE=${PKGCONFIG}"
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/dilemma)

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug")

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
