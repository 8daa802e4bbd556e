# Cross build for 64-bit Arm Linux with Debian's cross toolchain
# (gcc-aarch64-linux-gnu) and arm64 multiarch libraries (libcjson-dev:arm64,
# libpcre2-dev:arm64, libcmocka-dev:arm64); ctest runs the test binaries under
# qemu-user (qemu-aarch64). scripts/install-deps.sh --neon installs all of it.
#   cmake -S . -B build-neon -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(TL_CROSS_TRIPLET aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${TL_CROSS_TRIPLET}-gcc)
set(CMAKE_AR ${TL_CROSS_TRIPLET}-ar CACHE FILEPATH "")
set(CMAKE_RANLIB ${TL_CROSS_TRIPLET}-ranlib CACHE FILEPATH "")

# qemu-user's default CPU model ("max") has ASIMD and the dot product
# instructions, so both NEON kernel sets run. The binaries run on the arm64
# multiarch runtime (libc6:arm64 in /lib/aarch64-linux-gnu, which the arm64
# libraries above pull in): -L / rather than -L /usr/aarch64-linux-gnu, whose
# loader (libc6-arm64-cross) is a different glibc build than the multiarch
# libc.so.6 it then finds through /etc/ld.so.cache; that mix hangs in
# pthread_create. Linking against the cross libc is fine either way.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/)

# Headers and libraries: Debian's multiarch directories (/usr/include/<triplet>,
# /usr/lib/<triplet>), which the cross gcc searches by itself; find_* look in
# the cross tree and the host's /usr for them, and only on the host for programs.
set(CMAKE_FIND_ROOT_PATH /usr/${TL_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config: only the target's .pc files (the host's would name x86-64 libraries).
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${TL_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
