# Baton. `make` builds the XDP objects and the Swift products; `make test`
# runs every test (root, kernel with BPF); `make bench` prints the benchmark.
ARCH       := $(shell uname -m)
BPF_CLANG  ?= clang
BPF_CFLAGS := -target bpf -O2 -g -Wall -Werror -Wno-unused-function \
              -I/usr/include/$(ARCH)-linux-gnu -Ibpf/include -ISources/CBatonABI/include
BPF_OUT    := bpf/build
BPF_OBJS   := $(BPF_OUT)/steer.bpf.o $(BPF_OUT)/tools.bpf.o $(BPF_OUT)/decap.bpf.o
BPF_DEPS   := $(wildcard bpf/include/*.h) Sources/CBatonABI/include/baton_abi.h
SWIFT      ?= swift
SWIFT_FLAGS ?=

.PHONY: all setup bpf build release test bench demo fuzz openapi clean

all: build

# The system packages and bpffs (scripts/setup): quick when all is there, so every target
# that builds runs it first, and `make demo` or `make test` is the first command on a fresh
# machine (as root).
setup:
	@scripts/setup

bpf: $(BPF_OBJS)

$(BPF_OUT)/%.bpf.o: bpf/%.bpf.c $(BPF_DEPS) | setup
	@mkdir -p $(BPF_OUT)
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@

build: bpf
	$(SWIFT) build $(SWIFT_FLAGS)

release: bpf
	$(SWIFT) build -c release $(SWIFT_FLAGS)

test: bpf
	SWIFT="$(SWIFT)" scripts/check-module-graph
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	BUILD="$$($(SWIFT) build $(SWIFT_FLAGS) --show-bin-path)" scripts/check-units
	$(SWIFT) test --skip-build --no-parallel $(SWIFT_FLAGS)
	FUZZ_MAX_EXAMPLES=$(TEST_FUZZ_EXAMPLES) FUZZ_SEED=$(TEST_FUZZ_SEED) $(MAKE) fuzz

# The API fuzzing (schemathesis against docs/openapi.json, scripts/fuzz-api). `make test`
# runs it with a fixed seed and fewer examples; `make fuzz` alone draws new cases each run.
TEST_FUZZ_EXAMPLES ?= 100
TEST_FUZZ_SEED ?= 4242
fuzz: bpf
	SWIFT="$(SWIFT)" SWIFT_FLAGS="$(SWIFT_FLAGS)" scripts/fuzz-api $(FUZZ_ARGS)

# The API's code from its document: Sources/BatonOpenAPI is generated from docs/openapi.json
# (swift-openapi-generator, built once into .build-openapi) and committed, so that building
# Baton never builds the generator. Run after editing the document; a test fails until then.
OPENAPI_GEN := .build-openapi/debug/swift-openapi-generator
openapi:
	$(SWIFT) build --package-path scripts/openapi --scratch-path .build-openapi --product swift-openapi-generator
	rm -f Sources/BatonOpenAPI/*.swift
	$(OPENAPI_GEN) generate docs/openapi.json --config scripts/openapi/openapi-generator-config.yaml \
		--output-directory Sources/BatonOpenAPI
	sha256sum docs/openapi.json scripts/openapi/openapi-generator-config.yaml Sources/BatonOpenAPI/*.swift \
		> scripts/openapi/generated.sha256

# `make demo` moves a call between batond daemons; DEMO=anchor an anchored session, DEMO=sip a
# SIP call to the user's other device (baton-demo --help; more options in DEMO_ARGS).
DEMO ?= transfer
demo: bpf
	$(SWIFT) build --product batond $(SWIFT_FLAGS)
	$(SWIFT) build --product baton-demo $(SWIFT_FLAGS)
	$(SWIFT) run --skip-build baton-demo --scenario $(DEMO) $(DEMO_ARGS)

bench: release
	$(SWIFT) run -c release --skip-build baton-bench $(BENCH_ARGS)

clean:
	rm -rf $(BPF_OUT) .build
