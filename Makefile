# AIMLFW-LLMOps build.
#   make                 release build (build/release): libllmops.a, libllmops.so, llmops, test_unit
#   make MODE=debug      ASan+UBSan build (build/debug)
#   make WERROR=1        warnings are errors (CI)
#   make test            release build, then the whole test suite (tests/run.sh)
#   make fuzz            libFuzzer targets (build/fuzz, needs clang)
MODE ?= release
BUILD ?= build/$(MODE)
CC ?= cc
ifeq ($(CC),cc)
  CC := gcc
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
        -Wno-format-nonliteral -Wundef -Wpointer-arith -Wvla
CPPFLAGS := -Iinclude -Isrc -D_GNU_SOURCE -MMD -MP
CSTD := -std=c11 -fPIC -pthread
ifeq ($(MODE),debug)
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
else
  OPT := -O2 -g -DNDEBUG
  LDSAN :=
endif
ifeq ($(WERROR),1)
  WARN += -Werror
endif
CFLAGS ?=
CFLAGS += $(CSTD) $(OPT) $(WARN)
MPI_CPPFLAGS := $(shell pkg-config --cflags-only-I ompi-c 2>/dev/null)
CPPFLAGS += $(MPI_CPPFLAGS)
# libcurl (fetch.c), OpenBLAS (train_ops.c) and libmpi (dist.c) are not linked: they are opened on first use
# (src/base/dynlib.c), so inference never maps them; only their headers are needed to build.
LDLIBS := -ljansson -lyaml -lsodium -lutf8proc -lsqlite3 -ldl -lpthread -lm
LDFLAGS += $(LDSAN)

LIB_SRC := $(sort $(wildcard src/base/*.c src/tensor/*.c src/formats/*.c src/tokenizer/*.c src/model/*.c src/vectordb/*.c src/train/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/unit/*.c tests/base/*.c tests/tensor/*.c tests/formats/*.c tests/tokenizer/*.c tests/model/*.c tests/vectordb/*.c tests/train/*.c))
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

all: $(BUILD)/libllmops.a $(BUILD)/libllmops.so $(BUILD)/llmops $(BUILD)/test_unit

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libllmops.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libllmops.so: $(LIB_OBJ)
	$(CC) -shared $(CFLAGS) $(LDFLAGS) -Wl,-soname,libllmops.so -o $@ $^ $(LDLIBS)

$(BUILD)/llmops: $(CLI_OBJ) $(BUILD)/libllmops.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libllmops.a $(LDLIBS)

$(BUILD)/test_unit: $(TEST_OBJ) $(BUILD)/libllmops.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libllmops.a $(LDLIBS)

# ---- fuzzing (clang + libFuzzer) ---------------------------------------------
FUZZ_CFLAGS := -std=c11 -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -pthread
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_BINS := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(FUZZ_CFLAGS) -c $< -o $@

build/fuzz/%: fuzz/%.c $(FUZZ_LIB_OBJ)
	clang $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_LIB_OBJ) -o $@ $(LDLIBS)

fuzz: $(FUZZ_BINS)

# ---- benchmarks ------------------------------------------------------------------
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCH_BINS := $(BENCH_SRC:bench/%.c=$(BUILD)/%)

$(BUILD)/bench_%: bench/bench_%.c $(BUILD)/libllmops.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libllmops.a $(LDLIBS) -lopenblas

bench: $(BENCH_BINS)

# ---- tests ---------------------------------------------------------------------
test: all
	bash tests/run.sh $(BUILD)

unit: all
	./$(BUILD)/test_unit

clean:
	rm -rf build

.PHONY: all fuzz bench test unit clean
.SECONDARY:

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(FUZZ_LIB_OBJ:.o=.d)
