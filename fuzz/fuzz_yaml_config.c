/*
 * libFuzzer target: YAML bytes -> llmops_config tree -> a nested schema (objects, lists of
 * objects, string lists, a scalar map, every scalar type) -> docs and free-form reads. Any input
 * must give OK or an error status with a message, never a crash, a hang or a leak.
 */
// clang -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined
//     fuzz/fuzz_yaml_config.c src/base/*.c -o /tmp/fuzz_yaml -ljansson -lyaml -lsodium -lpthread -lm
// /tmp/fuzz_yaml -max_total_time=60 fuzz/corpus/fuzz_yaml_config
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/config.h"

typedef struct {
    int64_t rank;
    double alpha;
    LLMOPS_CONFIG_LIST(const char *) modules;
} fz_lora;

typedef struct {
    int method;
    int64_t epochs;
    double lr;
    bool bf16;
    fz_lora lora;
} fz_training;

typedef struct fz_dataset {
    const char *path;
    int format;
    double weight;
    LLMOPS_CONFIG_LIST(struct fz_dataset) parts; /* a tree: lists of its own type */
} fz_dataset;

typedef struct {
    const char *name;
    const char *model;
    bool dry_run;
    fz_training training;
    LLMOPS_CONFIG_LIST(fz_dataset) datasets;
    LLMOPS_CONFIG_LIST(llmops_config_pair) metadata;
    LLMOPS_CONFIG_LIST(const char *) tags;
} fz_job;

static const char *const k_methods[] = {"lora", "qlora", "full", NULL};
static const char *const k_formats[] = {"jsonl", "csv", "text", NULL};

static const llmops_config_field k_lora_fields[] = {
    {.key = "rank", .type = LLMOPS_CONFIG_TYPE_INT, .offset = offsetof(fz_lora, rank), .def = "8", .min = 1, .max = 1024},
    {.key = "alpha", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = offsetof(fz_lora, alpha), .def = "16", .fmin = 0, .fmax = 1e6},
    {.key = "modules", .type = LLMOPS_CONFIG_TYPE_STRING_LIST, .offset = offsetof(fz_lora, modules), .min = 0, .max = 64},
};
static const llmops_config_schema k_lora = LLMOPS_CONFIG_SCHEMA(fz_lora, k_lora_fields);

static const llmops_config_field k_training_fields[] = {
    {.key = "method", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = offsetof(fz_training, method), .def = "lora", .enum_values = k_methods},
    {.key = "epochs", .type = LLMOPS_CONFIG_TYPE_INT, .offset = offsetof(fz_training, epochs), .def = "1"},
    {.key = "lr", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = offsetof(fz_training, lr), .def = "1e-4"},
    {.key = "bf16", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = offsetof(fz_training, bf16), .def = "true"},
    {.key = "lora", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = offsetof(fz_training, lora), .sub = &k_lora},
};
static const llmops_config_schema k_training = LLMOPS_CONFIG_SCHEMA(fz_training, k_training_fields);

static const llmops_config_schema k_dataset;
static const llmops_config_field k_dataset_fields[] = {
    {.key = "path", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(fz_dataset, path), .flags = LLMOPS_CONFIG_REQUIRED, .min = 1, .max = 4096},
    {.key = "format", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = offsetof(fz_dataset, format), .enum_values = k_formats},
    {.key = "weight", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = offsetof(fz_dataset, weight), .def = "1"},
    {.key = "parts", .type = LLMOPS_CONFIG_TYPE_OBJECT_LIST, .offset = offsetof(fz_dataset, parts), .sub = &k_dataset},
};
static const llmops_config_schema k_dataset = LLMOPS_CONFIG_SCHEMA(fz_dataset, k_dataset_fields);

static const llmops_config_field k_job_fields[] = {
    {.key = "name", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(fz_job, name), .flags = LLMOPS_CONFIG_REQUIRED},
    {.key = "model", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(fz_job, model), .def = "m.gguf"},
    {.key = "dry_run", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = offsetof(fz_job, dry_run)},
    {.key = "training", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = offsetof(fz_job, training), .sub = &k_training},
    {.key = "datasets", .type = LLMOPS_CONFIG_TYPE_OBJECT_LIST, .offset = offsetof(fz_job, datasets), .sub = &k_dataset},
    {.key = "metadata", .type = LLMOPS_CONFIG_TYPE_SCALAR_MAP, .offset = offsetof(fz_job, metadata)},
    {.key = "tags", .type = LLMOPS_CONFIG_TYPE_STRING_LIST, .offset = offsetof(fz_job, tags)},
};
static const llmops_config_schema k_job = LLMOPS_CONFIG_SCHEMA(fz_job, k_job_fields);

/* Touches every bound string so ASan sees a dangling or unterminated one. */
static size_t touch(const char *s) { return s ? strlen(s) : 0; }

static size_t walk_dataset(const fz_dataset *d, int depth) {
    size_t n = touch(d->path);
    if (depth > 300) abort(); /* bounded by the parser's depth cap */
    for (size_t i = 0; i < d->parts.count; i++) n += walk_dataset(&d->parts.items[i], depth + 1);
    return n;
}

static size_t walk_tree(const llmops_config_node *n, int depth) {
    if (!n) return 0;
    if (depth > 300) abort();
    size_t c = 1, k = llmops_config_node_count(n);
    c += touch(llmops_config_node_text(n));
    /* the expanded walk is bounded by max_nodes; keep it cheap by visiting a few children */
    for (size_t i = 0; i < k && i < 4; i++) {
        c += touch(llmops_config_node_text(llmops_config_node_key(n, i)));
        c += walk_tree(llmops_config_node_item(n, i), depth + 1);
    }
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = llmops_alloc_live();
    llmops_config_options opts = {.max_bytes = 1 << 20, .max_nodes = 20000, .max_errors = 4};
    llmops_config *cfg = NULL;
    llmops_error err = {0};
    volatile size_t sink = 0;
    if (llmops_config_parse_buffer(data, size, "fuzz.yaml", &opts, &cfg, &err) == LLMOPS_OK) {
        fz_job job;
        sink += walk_tree(llmops_config_root(cfg), 0);
        sink += (size_t)(llmops_config_get(cfg, "training.lora.rank") != NULL);
        sink += (size_t)(llmops_config_get(cfg, "datasets[0].parts[1].path") != NULL);
        if (llmops_config_bind(cfg, NULL, &k_job, &job, &err) == LLMOPS_OK) {
            sink += touch(job.name) + touch(job.model);
            for (size_t i = 0; i < job.datasets.count; i++) sink += walk_dataset(&job.datasets.items[i], 0);
            for (size_t i = 0; i < job.metadata.count; i++)
                sink += touch(job.metadata.items[i].key) + touch(job.metadata.items[i].value);
            for (size_t i = 0; i < job.tags.count; i++) sink += touch(job.tags.items[i]);
            for (size_t i = 0; i < job.training.lora.modules.count; i++)
                sink += touch(job.training.lora.modules.items[i]);
        } else if (!err.msg[0] || err.code == LLMOPS_OK) {
            abort(); /* a failure always says why */
        }
        fz_training tr;
        if (llmops_config_bind(cfg, "training", &k_training, &tr, &err) != LLMOPS_OK && !err.msg[0]) abort();
        llmops_config_free(cfg);
    } else if (!err.msg[0] || cfg != NULL) {
        abort();
    }
    if (llmops_alloc_live() != live) abort(); /* every allocation went back */
    (void)sink;
    return 0;
}
