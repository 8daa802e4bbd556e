#!/bin/sh
# The library as a dependency: `cmake --install` into a throwaway prefix, then
# examples/simple.c built against it with pkg-config (shared, and static with
# --static), with find_package(torchless) from a CMake project, and from a
# parent project that takes the source tree with add_subdirectory(); each
# binary runs the demo model.
#   tests/cli/test_install.sh BUILD_DIR SOURCE_DIR
set -u
B=$1 S=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
M=$S/models/kjv-llama-13m-q8_0.gguf
run() { # NAME BINARY [LD_LIBRARY_PATH]
  if LD_LIBRARY_PATH=${3:-} "$2" "$M" "In the beginning" >"$T/out" 2>&1 && grep -q "generated [0-9]* tokens" "$T/out"; then
    echo "ok: $1"
  else
    echo "FAIL: $1: $(tail -2 "$T/out")"; fail=1
  fi
}
cmake --install "$B" --prefix "$T/prefix" >"$T/install.log" 2>&1 || { echo "FAIL: cmake --install"; tail "$T/install.log"; exit 1; }
P=$T/prefix
for f in include/torchless.h lib/libtorchless.a lib/pkgconfig/torchless.pc lib/cmake/torchless/torchlessConfig.cmake bin/torchless; do
  [ -e "$P/$f" ] || { echo "FAIL: $f not installed"; fail=1; }
done
ls "$P"/lib/libtorchless.so* >/dev/null 2>&1 || { echo "FAIL: no libtorchless.so installed"; fail=1; }

export PKG_CONFIG_PATH=$P/lib/pkgconfig
if cc "$S/examples/simple.c" $(pkg-config --cflags --libs torchless) -o "$T/simple_pc" 2>"$T/cc.log"; then
  run "pkg-config, shared" "$T/simple_pc" "$P/lib"
  ldd "$T/simple_pc" | grep -q "libtorchless.so" || { echo "FAIL: the pkg-config build did not link libtorchless.so"; fail=1; }
else
  echo "FAIL: cc with pkg-config: $(cat "$T/cc.log")"; fail=1
fi
if cc "$S/examples/simple.c" $(pkg-config --cflags torchless) "$P/lib/libtorchless.a" \
  $(pkg-config --static --libs-only-l torchless | sed 's/-ltorchless//') -o "$T/simple_static" 2>"$T/cc2.log"; then
  run "pkg-config --static, libtorchless.a" "$T/simple_static"
else
  echo "FAIL: static link with pkg-config --static: $(cat "$T/cc2.log")"; fail=1
fi

mkdir -p "$T/fp"
cp "$S/examples/simple.c" "$T/fp/"
cat >"$T/fp/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(uses_torchless C)
find_package(torchless 0.1 REQUIRED)
add_executable(simple simple.c)
target_link_libraries(simple PRIVATE torchless::torchless)
CM
if cmake -S "$T/fp" -B "$T/fp/build" -DCMAKE_PREFIX_PATH="$P" >"$T/fp.log" 2>&1 &&
  cmake --build "$T/fp/build" >>"$T/fp.log" 2>&1; then
  run "find_package(torchless)" "$T/fp/build/simple" "$P/lib"
else
  echo "FAIL: find_package build: $(tail -5 "$T/fp.log")"; fail=1
fi

mkdir -p "$T/sub"
cp "$S/examples/simple.c" "$T/sub/"
cat >"$T/sub/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(parent C)
add_subdirectory("$S" torchless EXCLUDE_FROM_ALL)
add_executable(simple simple.c)
target_link_libraries(simple PRIVATE torchless)
CM
if cmake -S "$T/sub" -B "$T/sub/build" -DTL_CUDA=OFF >"$T/sub.log" 2>&1 &&
  cmake --build "$T/sub/build" --target simple -j 2 >>"$T/sub.log" 2>&1; then
  run "add_subdirectory" "$T/sub/build/simple"
  grep -q "^TL_BUILD_TESTS:BOOL=OFF" "$T/sub/build/CMakeCache.txt" ||
    { echo "FAIL: under add_subdirectory the tests are not off by default"; fail=1; }
else
  echo "FAIL: add_subdirectory build: $(tail -5 "$T/sub.log")"; fail=1
fi

# the Debian package: built with cpack, unpacked into a scratch root, the CLI
# run from there and the example built against its pkg-config file
if (cd "$B" && cpack -G DEB -B "$T/deb" >"$T/cpack.log" 2>&1); then
  deb=$(ls "$T"/deb/*.deb | head -1)
  if command -v dpkg-deb >/dev/null && dpkg-deb -x "$deb" "$T/root"; then
    if "$T/root/usr/bin/torchless" run -m "$M" -p "In the beginning" -n 8 >"$T/deb.out" 2>&1; then
      echo "ok: the .deb's CLI runs ($(basename "$deb"))"
    else
      echo "FAIL: the .deb's CLI: $(tail -2 "$T/deb.out")"; fail=1
    fi
    if PKG_CONFIG_PATH=$T/root/usr/lib/pkgconfig cc "$S/examples/simple.c" \
      $(PKG_CONFIG_PATH=$T/root/usr/lib/pkgconfig pkg-config --cflags --libs torchless) -o "$T/simple_deb" 2>"$T/cc3.log"; then
      run "the .deb's library and pkg-config file" "$T/simple_deb" "$T/root/usr/lib"
    else
      echo "FAIL: building against the .deb: $(cat "$T/cc3.log")"; fail=1
    fi
  else
    echo "FAIL: dpkg-deb -x $deb"; fail=1
  fi
else
  echo "FAIL: cpack -G DEB: $(tail -5 "$T/cpack.log")"; fail=1
fi
exit $fail
