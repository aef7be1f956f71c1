# Tuma's front door. Every target first installs what is missing (scripts/deps), so a fresh
# Debian machine needs nothing else. The build itself is Meson + Ninja in ./build.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 8

.PHONY: all deps build test asan fuzz fuzz-smoke bench soak run clean

all: build

deps:
	@./scripts/deps

$(BUILD)/build.ninja:
	./scripts/deps
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# Everything the project checks: every Criterion suite (unit, property, crash, journal, queue),
# then a short run of every fuzzer.
test: build
	meson test -C $(BUILD) --print-errorlogs
	$(MAKE) fuzz-smoke

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	test -f $(ASAN_BUILD)/build.ninja || \
	  meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(ASAN_BUILD) --print-errorlogs --timeout-multiplier 3

# libFuzzer targets (proto/fuzz/), built with clang in their own build directory, each run on a
# temporary copy of its committed seed corpus; any crash, leak or sanitizer report fails.
# Crashing inputs are kept in $(FUZZ_BUILD)/fuzz-artifacts/.
$(FUZZ_BUILD)/build.ninja:
	./scripts/deps
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Dtests=false

fuzz-smoke: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) fuzz
	./proto/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) fuzz
	./proto/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The benchmark set of bench/RESULTS.md (a few minutes).
bench: build
	./bench/run.sh $(BUILD)

# Not in CI: 10 minutes (SOAK_SECONDS) of three operators paying each other through tumad while
# the switch and the operators are killed, disconnected and frozen at random, then every
# operator's view reconciled with the switch and the ledger (bench/soak.sh; figures in
# bench/RESULTS.md).
SOAK_SECONDS ?= 600
soak: build
	./bench/soak.sh $(BUILD) $(SOAK_SECONDS)

# The demo: tumad on loopback (data in var/demo) and three simulated operators paying each
# other for 30 s, then outcomes, positions and the ledger's own check (DURATION=0: until Ctrl-C).
DURATION ?= 30
run: build
	./$(BUILD)/cli/tuma demo --duration $(DURATION)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
