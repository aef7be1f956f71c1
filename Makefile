# Tuma's front door. Every target first installs what is missing (scripts/deps), so a fresh
# Debian machine needs nothing else. The build itself is Meson + Ninja in ./build.
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps build test asan bench run clean

all: build

deps:
	@./scripts/deps

$(BUILD)/build.ninja:
	./scripts/deps
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# Everything the project checks: every Criterion suite (unit, property, crash, journal, queue).
test: build
	meson test -C $(BUILD) --print-errorlogs

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	test -f $(ASAN_BUILD)/build.ninja || \
	  meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(ASAN_BUILD) --print-errorlogs --timeout-multiplier 3

# The benchmark set of bench/RESULTS.md (a few minutes).
bench: build
	./bench/run.sh $(BUILD)

# Until the switch exists, the demo is the durable ledger at work.
run: build
	./$(BUILD)/bench/tuma-bench ledger --accounts 10000 --transfers 1000000 --batch 8190

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
