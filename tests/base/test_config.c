/* Tests of the YAML configuration layer (include/llmops/config.h). */
#include <float.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/config.h"
#include "llmops/fileio.h"

/* ---- the schema of a fine-tuning job: every field type ------------------------------------ */

typedef struct {
    int64_t rank;
    double alpha;
    double dropout;
    LLMOPS_CONFIG_LIST(const char *) target_modules;
} lora_cfg;

typedef struct {
    int method;
    int64_t epochs;
    double learning_rate;
    bool bf16;
    lora_cfg lora;
} training_cfg;

typedef struct {
    const char *path;
    int format;
    double weight;
} dataset_cfg;

typedef struct {
    const char *name;
    const char *model;
    const char *output_dir;
    bool dry_run;
    training_cfg training;
    LLMOPS_CONFIG_LIST(dataset_cfg) datasets;
    LLMOPS_CONFIG_LIST(llmops_config_pair) metadata;
    LLMOPS_CONFIG_LIST(const char *) tags;
} job_cfg;

static const char *const k_methods[] = {"lora", "qlora", "full", NULL};
static const char *const k_formats[] = {"jsonl", "csv", "text", NULL};

static const llmops_config_field k_lora_fields[] = {
    {.key = "rank", .type = LLMOPS_CONFIG_TYPE_INT, .offset = offsetof(lora_cfg, rank), .def = "8",
     .min = 1, .max = 1024, .doc = "LoRA rank r"},
    {.key = "alpha", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = offsetof(lora_cfg, alpha), .def = "32",
     .fmin = 0, .fmax = DBL_MAX, .doc = "scaling numerator (scale = alpha / rank)"},
    {.key = "dropout", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = offsetof(lora_cfg, dropout),
     .def = "0.05", .fmin = 0, .fmax = 1, .doc = "dropout on the adapter input"},
    {.key = "target_modules", .type = LLMOPS_CONFIG_TYPE_STRING_LIST,
     .offset = offsetof(lora_cfg, target_modules), .doc = "projections that get an adapter"},
};
static const llmops_config_schema k_lora = LLMOPS_CONFIG_SCHEMA(lora_cfg, k_lora_fields);

static const llmops_config_field k_training_fields[] = {
    {.key = "method", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = offsetof(training_cfg, method),
     .def = "lora", .enum_values = k_methods, .doc = "fine-tuning method"},
    {.key = "epochs", .type = LLMOPS_CONFIG_TYPE_INT, .offset = offsetof(training_cfg, epochs),
     .def = "1", .min = 1, .max = INT64_MAX, .doc = "passes over the data"},
    {.key = "learning_rate", .type = LLMOPS_CONFIG_TYPE_FLOAT,
     .offset = offsetof(training_cfg, learning_rate), .def = "1e-4", .fmin = 0, .fmax = 1,
     .doc = "peak learning rate | AdamW"},
    {.key = "bf16", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = offsetof(training_cfg, bf16),
     .def = "true", .doc = "compute in bfloat16"},
    {.key = "lora", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = offsetof(training_cfg, lora),
     .sub = &k_lora, .doc = "adapter settings"},
};
static const llmops_config_schema k_training = LLMOPS_CONFIG_SCHEMA(training_cfg, k_training_fields);

static const llmops_config_field k_dataset_fields[] = {
    {.key = "path", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(dataset_cfg, path),
     .flags = LLMOPS_CONFIG_REQUIRED, .min = 1, .max = 4096, .doc = "file or folder"},
    {.key = "format", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = offsetof(dataset_cfg, format),
     .def = "jsonl", .enum_values = k_formats, .doc = "record format"},
    {.key = "weight", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = offsetof(dataset_cfg, weight),
     .def = "1.0", .fmin = 0, .fmax = 100, .doc = "sampling weight"},
};
static const llmops_config_schema k_dataset = LLMOPS_CONFIG_SCHEMA(dataset_cfg, k_dataset_fields);

static const llmops_config_field k_job_fields[] = {
    {.key = "name", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(job_cfg, name),
     .flags = LLMOPS_CONFIG_REQUIRED, .min = 1, .max = 64, .doc = "job name"},
    {.key = "model", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(job_cfg, model),
     .flags = LLMOPS_CONFIG_REQUIRED, .doc = "base model"},
    {.key = "output_dir", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(job_cfg, output_dir),
     .def = "out/", .doc = "where checkpoints go"},
    {.key = "dry_run", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = offsetof(job_cfg, dry_run),
     .doc = "validate only"},
    {.key = "training", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = offsetof(job_cfg, training),
     .sub = &k_training, .doc = "optimisation settings"},
    {.key = "datasets", .type = LLMOPS_CONFIG_TYPE_OBJECT_LIST, .offset = offsetof(job_cfg, datasets),
     .sub = &k_dataset, .min = 1, .max = 16, .doc = "training data"},
    {.key = "metadata", .type = LLMOPS_CONFIG_TYPE_SCALAR_MAP, .offset = offsetof(job_cfg, metadata),
     .doc = "free-form labels"},
    {.key = "tags", .type = LLMOPS_CONFIG_TYPE_STRING_LIST, .offset = offsetof(job_cfg, tags),
     .doc = "search tags"},
};
static const llmops_config_schema k_job = LLMOPS_CONFIG_SCHEMA(job_cfg, k_job_fields);

static const char *data_path(const char *name) {
    static char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s/tests/base/data/config/%s", test_repo_root(), name);
    return buf;
}

/* Loads `yaml` as "job.yaml" against k_job; returns the status, err filled. */
static llmops_status load_job(const char *yaml, job_cfg *job, llmops_error *err) {
    llmops_config *cfg = NULL;
    llmops_status st = llmops_config_load_buffer(yaml, strlen(yaml), "job.yaml", &k_job, job, &cfg, err);
    llmops_config_free(cfg);
    return st;
}

#define HEAD "name: x\nmodel: m\ndatasets: [{path: d}]\n" /* 3 lines that satisfy the required keys */

/* ---- binding ---------------------------------------------------------------------------- */

TEST(config_schema_is_valid) {
    llmops_error err = {0};
    CHECK_OK(llmops_config_schema_check(&k_job, &err), err);
}

TEST(config_binds_every_field_kind) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_config *cfg = NULL;
    job_cfg job;
    CHECK_OK(llmops_config_load_file(data_path("job_valid.yaml"), &k_job, &job, &cfg, &err), err);
    CHECK_EQ_STR(job.name, "demo-job");
    CHECK_EQ_STR(job.model, "models/tinyllama.gguf");
    CHECK_EQ_STR(job.output_dir, "out/");                  /* default */
    CHECK(job.dry_run == false);                            /* zero */
    CHECK_EQ_INT(job.training.method, 1);                   /* qlora */
    CHECK_EQ_INT(job.training.epochs, 3);
    CHECK(job.training.learning_rate == 2.0e-4);
    CHECK(job.training.bf16 == false);                      /* given, overrides default true */
    CHECK_EQ_INT(job.training.lora.rank, 16);
    CHECK(job.training.lora.alpha == 32.0);                 /* default */
    CHECK(job.training.lora.dropout == 0.05);               /* default */
    CHECK_EQ_INT(job.training.lora.target_modules.count, 2);
    CHECK_EQ_STR(job.training.lora.target_modules.items[0], "q_proj");
    CHECK_EQ_STR(job.training.lora.target_modules.items[1], "v_proj");
    CHECK_EQ_INT(job.datasets.count, 2);
    CHECK_EQ_STR(job.datasets.items[0].path, "data/train.jsonl");
    CHECK_EQ_INT(job.datasets.items[0].format, 0);
    CHECK(job.datasets.items[0].weight == 1.0);             /* default inside a list element */
    CHECK_EQ_STR(job.datasets.items[1].path, "data/extra.csv");
    CHECK_EQ_INT(job.datasets.items[1].format, 1);
    CHECK(job.datasets.items[1].weight == 0.5);
    CHECK_EQ_INT(job.metadata.count, 3);
    CHECK_EQ_STR(job.metadata.items[0].key, "owner");
    CHECK_EQ_STR(job.metadata.items[0].value, "alice");
    CHECK_EQ_STR(job.metadata.items[1].key, "ticket");
    CHECK_EQ_STR(job.metadata.items[1].value, "1234");
    CHECK_EQ_STR(job.metadata.items[2].value, "quoted: yes");
    CHECK_EQ_INT(job.tags.count, 2);
    CHECK_EQ_STR(job.tags.items[0], "nightly");
    CHECK_EQ_STR(job.tags.items[1], "v1");
    llmops_config_free(cfg);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(config_defaults_when_absent) {
    llmops_error err = {0};
    job_cfg job;
    llmops_config *cfg = NULL;
    const char *y = HEAD "training:\n  lora:\n";           /* lora: null = not given */
    CHECK_OK(llmops_config_load_buffer(y, strlen(y), "job.yaml", &k_job, &job, &cfg, &err), err);
    CHECK_EQ_INT(job.training.method, 0);
    CHECK_EQ_INT(job.training.epochs, 1);
    CHECK(job.training.learning_rate == 1e-4);
    CHECK(job.training.bf16 == true);
    CHECK_EQ_INT(job.training.lora.rank, 8);
    CHECK_EQ_INT(job.training.lora.target_modules.count, 0);
    CHECK(job.training.lora.target_modules.items == NULL);
    CHECK_EQ_INT(job.metadata.count, 0);
    CHECK_EQ_STR(job.datasets.items[0].path, "d");
    llmops_config_free(cfg);
}

TEST(config_scalar_syntax) {
    llmops_error err = {0};
    job_cfg job;
    llmops_config *cfg = NULL;
    const char *y = HEAD "training:\n  epochs: 0x1_0\n  learning_rate: .5\n  bf16: TRUE\n"
                         "  lora: {rank: +0o17, alpha: -0}\n";
    CHECK_OK(llmops_config_load_buffer(y, strlen(y), "job.yaml", &k_job, &job, &cfg, &err), err);
    CHECK_EQ_INT(job.training.epochs, 16);
    CHECK(job.training.learning_rate == 0.5);
    CHECK(job.training.bf16);
    CHECK_EQ_INT(job.training.lora.rank, 15);
    CHECK(job.training.lora.alpha == 0.0);
    llmops_config_free(cfg);
    /* a quoted or !!str scalar is a string even when it looks like a number */
    y = "name: !!str 123\nmodel: '1.5'\ndatasets: [{path: true}]\n";
    CHECK_OK(llmops_config_load_buffer(y, strlen(y), "job.yaml", &k_job, &job, &cfg, &err), err);
    CHECK_EQ_STR(job.name, "123");
    CHECK_EQ_STR(job.model, "1.5");
    CHECK_EQ_STR(job.datasets.items[0].path, "true");
    llmops_config_free(cfg);
}

/* ---- errors: exact file:line:col and key path ---------------------------------------------- */

TEST(config_error_unknown_key) {
    llmops_error err = {0};
    job_cfg job;
    CHECK_ERR(load_job(HEAD "training:\n  lora:\n    rnak: 8\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:6:5: training.lora.rnak: unknown key (did you mean 'rank'?)");
    CHECK_ERR(load_job(HEAD "colour: red\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:4:1: colour: unknown key");
    CHECK(strstr(err.msg, "did you mean") == NULL);
    CHECK(job.name == NULL); /* out is zeroed on failure */
}

TEST(config_error_wrong_type) {
    llmops_error err = {0};
    job_cfg job;
    CHECK_ERR(load_job(HEAD "training:\n  epochs: three\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:11: training.epochs: expected an integer, got 'three'");
    CHECK_ERR(load_job(HEAD "training:\n  epochs: \"3\"\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:11: training.epochs: expected an integer, got a quoted string \"3\"");
    CHECK_ERR(load_job(HEAD "training:\n  epochs: [3]\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:11: training.epochs: expected an integer, got a list");
    CHECK_ERR(load_job(HEAD "training:\n  learning_rate: fast\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:18: training.learning_rate: expected a number, got 'fast'");
    CHECK_ERR(load_job(HEAD "training: 5\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:4:11: training: expected a mapping, got a scalar");
    CHECK_ERR(load_job("name: x\nmodel: m\ndatasets:\n  - path: d\n  - path: [a, b]\n", &job, &err),
              LLMOPS_ERR_CONFIG, err, "job.yaml:5:11: datasets[1].path: expected a string, got a list");
    CHECK_ERR(load_job(HEAD "datasets: {path: d}\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:4:1: datasets: duplicate key (first defined at line 3, column 1)");
    CHECK_ERR(load_job("name: x\nmodel: m\ndatasets: {path: d}\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:3:11: datasets: expected a list, got a mapping");
    CHECK_ERR(load_job(HEAD "metadata:\n  a: [1]\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:6: metadata.a: expected a scalar value, got a list");
    CHECK_ERR(load_job(HEAD "tags: [a, {b: c}]\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:4:11: tags[1]: expected a string, got a mapping");
    CHECK_ERR(load_job(HEAD "training:\n  bf16: yes\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:9: training.bf16: expected true or false, got 'yes' (YAML 1.1 booleans are not accepted)");
    CHECK_ERR(load_job(HEAD "training:\n  bf16: 'true'\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:9: training.bf16: expected true or false, got a quoted string \"true\"");
}

TEST(config_error_range_and_enum) {
    llmops_error err = {0};
    job_cfg job;
    CHECK_ERR(load_job(HEAD "training:\n  lora:\n    rank: 0\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:6:11: training.lora.rank: 0 is out of range [1, 1024]");
    CHECK_ERR(load_job(HEAD "training:\n  epochs: -2\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:11: training.epochs: -2 is out of range (at least 1)");
    CHECK_ERR(load_job(HEAD "training:\n  epochs: 9223372036854775808\n", &job, &err), LLMOPS_ERR_CONFIG,
              err, "training.epochs: 9223372036854775808 does not fit in a 64-bit integer");
    CHECK_ERR(load_job(HEAD "training:\n  epochs: 010\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:11: training.epochs: '010': a leading zero is ambiguous");
    CHECK_ERR(load_job(HEAD "training:\n  learning_rate: 2\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:18: training.learning_rate: 2 is out of range [0, 1]");
    CHECK_ERR(load_job(HEAD "training:\n  learning_rate: .nan\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "training.learning_rate: .nan: infinite and NaN values are not allowed");
    CHECK_ERR(load_job(HEAD "training:\n  method: lorra\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:5:11: training.method: 'lorra' is not one of: lora, qlora, full");
    CHECK_ERR(load_job("name: ''\nmodel: m\ndatasets: [{path: d}]\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:1:7: name: length 0 is out of range [1, 64]");
    CHECK_ERR(load_job("name: x\nmodel: m\ndatasets: []\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:3:11: datasets: 0 items is out of range [1, 16]");
}

TEST(config_error_missing_required) {
    llmops_error err = {0};
    job_cfg job;
    CHECK_ERR(load_job("model: m\ndatasets: [{path: d}]\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:1:1: name: missing required key");
    CHECK_ERR(load_job("name: ~\nmodel: m\ndatasets: [{path: d}]\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:1:7: name: required key has no value");
    /* inside a list element: the element's mapping is the enclosing one */
    CHECK_ERR(load_job("name: x\nmodel: m\ndatasets:\n  - path: a\n  - format: csv\n    weight: 2\n", &job,
                       &err),
              LLMOPS_ERR_CONFIG, err, "job.yaml:5:5: datasets[1].path: missing required key");
    llmops_config *cfg = NULL;
    CHECK_ERR(llmops_config_load_file(data_path("nested_error.yaml"), &k_job, &job, &cfg, &err),
              LLMOPS_ERR_CONFIG, err,
              "nested_error.yaml:6:13: datasets[1].format: 'parquet' is not one of: jsonl, csv, text");
    CHECK(cfg == NULL);
}

typedef struct {
    const char *cert;
    int64_t port;
} tls_cfg;
typedef struct {
    int64_t port;
    tls_cfg tls;
} server_cfg;
static const llmops_config_field k_tls_fields[] = {
    {.key = "cert", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(tls_cfg, cert),
     .flags = LLMOPS_CONFIG_REQUIRED, .doc = "PEM certificate"},
    {.key = "port", .type = LLMOPS_CONFIG_TYPE_INT, .offset = offsetof(tls_cfg, port), .def = "8443",
     .min = 1, .max = 65535},
};
static const llmops_config_schema k_tls = LLMOPS_CONFIG_SCHEMA(tls_cfg, k_tls_fields);
static const llmops_config_field k_server_fields[] = {
    {.key = "port", .type = LLMOPS_CONFIG_TYPE_INT, .offset = offsetof(server_cfg, port), .def = "8080",
     .min = 1, .max = 65535},
    {.key = "tls", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = offsetof(server_cfg, tls), .sub = &k_tls},
};
static const llmops_config_schema k_server = LLMOPS_CONFIG_SCHEMA(server_cfg, k_server_fields);

TEST(config_error_missing_in_absent_object) {
    llmops_error err = {0};
    server_cfg srv;
    llmops_config *cfg = NULL;
    const char *y = "# server\n\n  port: 80\n";
    /* tls is absent: its required key is reported at the enclosing (top) mapping */
    CHECK_ERR(llmops_config_load_buffer(y, strlen(y), "srv.yaml", &k_server, &srv, &cfg, &err),
              LLMOPS_ERR_CONFIG, err, "srv.yaml:3:3: tls.cert: missing required key");
    y = "port: 80\ntls:\n";
    CHECK_ERR(llmops_config_load_buffer(y, strlen(y), "srv.yaml", &k_server, &srv, &cfg, &err),
              LLMOPS_ERR_CONFIG, err, "srv.yaml:2:5: tls.cert: missing required key");
}

TEST(config_error_several_at_once) {
    llmops_error err = {0};
    llmops_config *cfg = NULL;
    llmops_config_options o = {.max_errors = 3};
    const char *y = "name: x\nmodel: m\nfoo: 1\ntraining: {epochs: x, method: y, bf16: z}\n";
    CHECK_OK(llmops_config_parse_buffer(y, strlen(y), "job.yaml", &o, &cfg, &err), err);
    job_cfg job;
    CHECK_ERR(llmops_config_bind(cfg, NULL, &k_job, &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:3:1: foo: unknown key\n"
              "job.yaml:4:20: training.epochs: expected an integer, got 'x'\n"
              "job.yaml:4:31: training.method: 'y' is not one of: lora, qlora, full");
    CHECK(strstr(err.msg, "bf16") == NULL); /* stopped at 3 */
    llmops_config_free(cfg);
}

TEST(config_error_yaml_syntax) {
    llmops_error err = {0};
    job_cfg job;
    CHECK_ERR(load_job("name: [a, b\nmodel: m\n", &job, &err), LLMOPS_ERR_FORMAT, err,
              "job.yaml:2:6: did not find expected ',' or ']'");
    CHECK_ERR(load_job("name: x\n  model: m\n", &job, &err), LLMOPS_ERR_FORMAT, err,
              "job.yaml:2:8: mapping values are not allowed in this context");
    CHECK_ERR(load_job("name: \"x\n", &job, &err), LLMOPS_ERR_FORMAT, err,
              "job.yaml:2:1: found unexpected end of stream");
    CHECK_ERR(load_job("name: \xff\n", &job, &err), LLMOPS_ERR_FORMAT, err,
              "job.yaml:1:7: invalid leading UTF-8 octet");
    CHECK_ERR(load_job("name: x\n---\nname: y\n", &job, &err), LLMOPS_ERR_FORMAT, err,
              "job.yaml:2:1: a second document");
    CHECK_ERR(load_job("name: !custom x\n", &job, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "job.yaml:1:7: name: unsupported tag '!custom'");
    CHECK_ERR(load_job("? [a]\n: 1\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:1:3: mapping keys must be scalars");
    CHECK_ERR(load_job("name: \"a\\0b\"\n", &job, &err), LLMOPS_ERR_FORMAT, err,
              "job.yaml:1:7: name: a scalar contains a NUL character");
}

TEST(config_error_top_level_list) {
    llmops_error err = {0};
    job_cfg job;
    llmops_config *cfg = NULL;
    CHECK_ERR(llmops_config_load_file(data_path("list_top.yaml"), &k_job, &job, &cfg, &err), LLMOPS_ERR_CONFIG,
              err, "list_top.yaml:1:1: the top level must be a mapping, got a list");
    CHECK_ERR(load_job("just a string\n", &job, &err), LLMOPS_ERR_CONFIG, err,
              "job.yaml:1:1: the top level must be a mapping, got a scalar");
    /* free-form reading of the same file works */
    CHECK_OK(llmops_config_parse_file(data_path("list_top.yaml"), NULL, &cfg, &err), err);
    CHECK(llmops_config_node_kind_of(llmops_config_root(cfg)) == LLMOPS_CONFIG_NODE_SEQ);
    CHECK_EQ_STR(llmops_config_node_text(llmops_config_get(cfg, "[1].name")), "two");
    llmops_config_free(cfg);
}

TEST(config_empty_file) {
    llmops_error err = {0};
    llmops_config *cfg = NULL;
    CHECK_OK(llmops_config_parse_file(data_path("empty.yaml"), NULL, &cfg, &err), err);
    CHECK(llmops_config_root(cfg) == NULL);
    CHECK(llmops_config_get(cfg, "a") == NULL);
    /* an empty document binds as an empty mapping: defaults apply, required keys are missing */
    server_cfg srv;
    const llmops_config_field port_only[] = {k_server_fields[0]};
    const llmops_config_schema k_port = LLMOPS_CONFIG_SCHEMA(server_cfg, port_only);
    CHECK_OK(llmops_config_bind(cfg, NULL, &k_port, &srv, &err), err);
    CHECK_EQ_INT(srv.port, 8080);
    llmops_config_free(cfg);
    job_cfg job;
    CHECK_ERR(llmops_config_load_file(data_path("empty.yaml"), &k_job, &job, &cfg, &err), LLMOPS_ERR_CONFIG, err,
              "empty.yaml:1:1: name: missing required key");
    CHECK_OK(llmops_config_load_buffer("# only a comment\n~\n", 19, "c.yaml", &k_port, &srv, &cfg, &err), err);
    CHECK_EQ_INT(srv.port, 8080);
    llmops_config_free(cfg);
}

TEST(config_bind_a_part) {
    llmops_error err = {0};
    llmops_config *cfg = NULL;
    CHECK_OK(llmops_config_parse_file(data_path("job_valid.yaml"), NULL, &cfg, &err), err);
    lora_cfg lora;
    CHECK_OK(llmops_config_bind(cfg, "training.lora", &k_lora, &lora, &err), err);
    CHECK_EQ_INT(lora.rank, 16);
    CHECK(lora.dropout == 0.05);
    dataset_cfg ds;
    CHECK_OK(llmops_config_bind(cfg, "datasets[1]", &k_dataset, &ds, &err), err);
    CHECK_EQ_STR(ds.path, "data/extra.csv");
    CHECK_ERR(llmops_config_bind(cfg, "training", &k_lora, &lora, &err), LLMOPS_ERR_CONFIG, err,
              "job_valid.yaml:5:3: training.method: unknown key");
    llmops_config_free(cfg);
}

/* ---- anchors and aliases -------------------------------------------------------------------- */

TEST(config_aliases) {
    llmops_error err = {0};
    llmops_config *cfg = NULL;
    job_cfg job;
    CHECK_OK(llmops_config_load_file(data_path("job_aliases.yaml"), &k_job, &job, &cfg, &err), err);
    CHECK_EQ_STR(job.name, "aliased-job");
    CHECK_EQ_STR(job.model, "aliased-job");
    CHECK_EQ_INT(job.datasets.count, 3);
    CHECK_EQ_STR(job.datasets.items[1].path, "data/shared.jsonl");
    CHECK(job.datasets.items[1].weight == 2.0);
    CHECK_EQ_STR(job.datasets.items[2].path, "data/other.jsonl");
    CHECK_EQ_STR(job.metadata.items[0].value, "aliased-job");
    /* an alias shares the anchored node, with the anchor's position */
    const llmops_config_node *a = llmops_config_get(cfg, "datasets[0]");
    CHECK(a != NULL && a == llmops_config_get(cfg, "datasets[1]"));
    CHECK_EQ_INT(llmops_config_node_line(a), 4);
    llmops_config_free(cfg);

    CHECK_ERR(load_job("a: &x [1, *x]\n", &job, &err), LLMOPS_ERR_FORMAT, err,
              "job.yaml:1:11: a[1]: alias *x refers to a node that contains it (recursive alias)");
    CHECK_ERR(load_job("a: *nope\n", &job, &err), LLMOPS_ERR_FORMAT, err, "job.yaml:1:4: a: undefined alias *nope");
    CHECK_ERR(load_job("base: &b {name: x}\njob:\n  <<: *b\n", &job, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "job.yaml:3:3: job: merge keys ('<<') are not supported");
}

TEST(config_billion_laughs) {
    llmops_buf b;
    llmops_buf_init(&b, 1 << 20);
    llmops_error err = {0};
    CHECK_OK(llmops_buf_puts(&b, "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n", &err), err);
    for (int i = 1; i < 10; i++)
        CHECK_OK(llmops_buf_printf(&b, &err, "l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n",
                                   i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1),
                 err);
    llmops_config *cfg = NULL;
    llmops_status st = llmops_config_parse_buffer(b.data, b.len, "lol.yaml", NULL, &cfg, &err);
    llmops_buf_free(&b);
    CHECK_EQ_INT(st, LLMOPS_ERR_LIMIT);
    CHECK(cfg == NULL);
    CHECK_MSG(strstr(err.msg, "lol.yaml:6:") && strstr(err.msg, "expands the document past the limit of 250000 nodes"),
              "%s", err.msg);
}

/* ---- caps -------------------------------------------------------------------------------------- */

TEST(config_deep_nesting) {
    char y[1024];
    size_t n = 0;
    for (int i = 0; i < 100; i++) y[n++] = '[';
    for (int i = 0; i < 100; i++) y[n++] = ']';
    y[n] = '\0';
    llmops_error err = {0};
    llmops_config *cfg = NULL;
    CHECK_ERR(llmops_config_parse_buffer(y, n, "deep.yaml", NULL, &cfg, &err), LLMOPS_ERR_LIMIT, err,
              "deep.yaml:1:65: [0][0][0]");
    CHECK(strstr(err.msg, "nesting is deeper than the limit of 64 levels"));
    llmops_config_options o = {.max_depth = 200};
    CHECK_OK(llmops_config_parse_buffer(y, n, "deep.yaml", &o, &cfg, &err), err);
    llmops_config_free(cfg);
    /* block style, with keys in the path */
    CHECK_ERR(llmops_config_parse_buffer("a:\n b:\n  c: 1\n", 14, "d.yaml", &(llmops_config_options){.max_depth = 2},
                                         &cfg, &err),
              LLMOPS_ERR_LIMIT, err, "d.yaml:3:3: a.b: nesting is deeper than the limit of 2 levels");
}

TEST(config_huge_inputs) {
    llmops_error err = {0};
    llmops_config *cfg = NULL;
    size_t big = LLMOPS_CONFIG_DEFAULT_MAX_BYTES + 1;
    char *y = malloc(big);
    CHECK(y != NULL);
    memset(y, '#', big);
    llmops_status st = llmops_config_parse_buffer(y, big, "big.yaml", NULL, &cfg, &err);
    free(y);
    CHECK_EQ_INT(st, LLMOPS_ERR_LIMIT);
    CHECK_MSG(strstr(err.msg, "big.yaml: 8388609 bytes is larger than the limit of 8388608 bytes"), "%s", err.msg);

    /* a file over the cap is refused before it is parsed */
    FILE *fp = fopen(test_tmpfile("big.yaml"), "w");
    CHECK(fp != NULL);
    for (int i = 0; i < 2000; i++) fprintf(fp, "k%d: %d\n", i, i);
    fclose(fp);
    llmops_config_options o = {.max_bytes = 1000};
    CHECK_ERR(llmops_config_parse_file(test_tmpfile("big.yaml"), &o, &cfg, &err), LLMOPS_ERR_LIMIT, err,
              "larger than the limit of 1000 bytes");
    /* too many nodes */
    o = (llmops_config_options){.max_nodes = 1000};
    CHECK_ERR(llmops_config_parse_file(test_tmpfile("big.yaml"), &o, &cfg, &err), LLMOPS_ERR_LIMIT, err,
              "the document has more than 1000 nodes");
    CHECK(strstr(err.msg, "big.yaml:500:"));
    /* the same file within the default caps, and a big mapping's duplicate check */
    CHECK_OK(llmops_config_parse_file(test_tmpfile("big.yaml"), NULL, &cfg, &err), err);
    CHECK_EQ_INT(llmops_config_node_count(llmops_config_root(cfg)), 2000);
    CHECK_EQ_STR(llmops_config_node_text(llmops_config_get(cfg, "k1999")), "1999");
    llmops_config_free(cfg);
    fp = fopen(test_tmpfile("dup.yaml"), "w");
    CHECK(fp != NULL);
    for (int i = 0; i < 300; i++) fprintf(fp, "k%d: %d\n", i, i);
    fprintf(fp, "k7: again\nk3: again\n");
    fclose(fp);
    CHECK_ERR(llmops_config_parse_file(test_tmpfile("dup.yaml"), NULL, &cfg, &err), LLMOPS_ERR_CONFIG, err,
              "dup.yaml:301:1: k7: duplicate key (first defined at line 8, column 1)");
}

/* ---- free-form reading -------------------------------------------------------------------------- */

TEST(config_node_accessors) {
    llmops_error err = {0};
    llmops_config *cfg = NULL;
    CHECK_OK(llmops_config_parse_file(data_path("job_valid.yaml"), NULL, &cfg, &err), err);
    CHECK(strstr(llmops_config_origin(cfg), "job_valid.yaml"));
    const llmops_config_node *root = llmops_config_root(cfg);
    CHECK(llmops_config_node_kind_of(root) == LLMOPS_CONFIG_NODE_MAP);
    CHECK_EQ_INT(llmops_config_node_count(root), 6);
    CHECK_EQ_STR(llmops_config_node_text(llmops_config_node_key(root, 2)), "training");
    const llmops_config_node *rank = llmops_config_get(cfg, "training.lora.rank");
    CHECK_EQ_STR(llmops_config_node_text(rank), "16");
    CHECK(llmops_config_node_is_plain(rank));
    CHECK_EQ_INT(llmops_config_node_line(rank), 10);
    CHECK_EQ_INT(llmops_config_node_col(rank), 11);
    const llmops_config_node *p = llmops_config_get(cfg, "datasets[1].path");
    CHECK_EQ_STR(llmops_config_node_text(p), "data/extra.csv");
    CHECK(!llmops_config_node_is_plain(p));
    CHECK_EQ_INT(llmops_config_node_line(p), 15);
    CHECK_EQ_INT(llmops_config_node_col(p), 11);
    const llmops_config_node *mods = llmops_config_get(cfg, "training.lora.target_modules");
    CHECK(llmops_config_node_kind_of(mods) == LLMOPS_CONFIG_NODE_SEQ);
    CHECK_EQ_INT(llmops_config_node_count(mods), 2);
    CHECK_EQ_STR(llmops_config_node_text(llmops_config_node_item(mods, 1)), "v_proj");
    CHECK(llmops_config_node_item(mods, 2) == NULL);
    CHECK(llmops_config_node_text(mods) == NULL);
    CHECK(llmops_config_node_get(llmops_config_get(cfg, "training"), "lora.rank") == rank);
    CHECK(llmops_config_get(cfg, "") == root);
    CHECK(llmops_config_get(cfg, "training.nope") == NULL);
    CHECK(llmops_config_get(cfg, "datasets[2]") == NULL);
    CHECK(llmops_config_get(cfg, "datasets[x]") == NULL);
    CHECK(llmops_config_get(cfg, "datasets.path") == NULL);
    CHECK(llmops_config_get(cfg, "training..lora") == NULL);
    CHECK(llmops_config_get(cfg, "name[0]") == NULL);
    llmops_config_free(cfg);

    CHECK_OK(llmops_config_parse_buffer("a: ~\nb:\nc: 'null'\n", 18, NULL, NULL, &cfg, &err), err);
    CHECK(llmops_config_node_is_null(llmops_config_get(cfg, "a")));
    CHECK(llmops_config_node_is_null(llmops_config_get(cfg, "b")));
    CHECK(!llmops_config_node_is_null(llmops_config_get(cfg, "c")));
    CHECK_EQ_STR(llmops_config_origin(cfg), "<buffer>");
    llmops_config_free(cfg);
}

/* ---- documentation --------------------------------------------------------------------------------- */

TEST(config_docs) {
    llmops_buf out;
    llmops_buf_init(&out, 1 << 20);
    llmops_error err = {0};
    CHECK_OK(llmops_config_write_docs(&k_job, NULL, &out, &err), err);
    const char *md = out.data;
    static const char *const want[] = {
        "| Key | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n",
        "| `name` | string | *required* | length [1, 64] | job name |\n",
        "| `output_dir` | string | `out/` |  | where checkpoints go |\n",
        "| `dry_run` | bool | `false` |  | validate only |\n",
        "| `training` | object |",
        "| `training.method` | enum | `lora` | `lora`, `qlora`, `full` | fine-tuning method |\n",
        "| `training.epochs` | int | `1` | (at least 1) | passes over the data |\n",
        "| `training.learning_rate` | float | `1e-4` | [0, 1] | peak learning rate \\| AdamW |\n",
        "| `training.bf16` | bool | `true` |  | compute in bfloat16 |\n",
        "| `training.lora.rank` | int | `8` | [1, 1024] | LoRA rank r |\n",
        "| `training.lora.alpha` | float | `32` | (at least 0) |",
        "| `training.lora.target_modules` | list of strings | `[]` |",
        "| `datasets` | list of objects | `[]` | [1, 16] items | training data |\n",
        "| `datasets[].path` | string | *required* |",
        "| `datasets[].weight` | float | `1.0` | [0, 100] | sampling weight |\n",
        "| `metadata` | map of string to scalar | `{}` |",
        "| `tags` | list of strings |",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_MSG(strstr(md, want[i]), "docs lack \"%s\":\n%s", want[i], md);
    /* every key of every schema appears */
    size_t rows = 0;
    for (const char *s = md; (s = strstr(s, "\n| `")); s++) rows++;
    CHECK_EQ_INT(rows, 8 + 5 + 4 + 3);
    llmops_buf_free(&out);

    llmops_buf_init(&out, 1 << 20);
    CHECK_OK(llmops_config_write_docs(&k_lora, "training.lora", &out, &err), err);
    CHECK(strstr(out.data, "| `training.lora.dropout` | float | `0.05` | [0, 1] |"));
    llmops_buf_free(&out);
    llmops_buf_init(&out, 100);
    CHECK_ERR(llmops_config_write_docs(&k_job, NULL, &out, &err), LLMOPS_ERR_LIMIT, err, "cap");
    llmops_buf_free(&out);
}

/* A tree: a node holds a list of nodes. */
typedef struct tree_node {
    const char *name;
    LLMOPS_CONFIG_LIST(struct tree_node) children;
} tree_node;
static const llmops_config_schema k_tree;
static const llmops_config_field k_tree_fields[] = {
    {.key = "name", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(tree_node, name)},
    {.key = "children", .type = LLMOPS_CONFIG_TYPE_OBJECT_LIST, .offset = offsetof(tree_node, children),
     .sub = &k_tree},
};
static const llmops_config_schema k_tree = LLMOPS_CONFIG_SCHEMA(tree_node, k_tree_fields);

TEST(config_recursive_schema) {
    llmops_error err = {0};
    llmops_config *cfg = NULL;
    tree_node t;
    const char *y = "name: root\nchildren:\n  - name: a\n    children: [{name: a1}]\n  - name: b\n";
    CHECK_OK(llmops_config_load_buffer(y, strlen(y), "t.yaml", &k_tree, &t, &cfg, &err), err);
    CHECK_EQ_INT(t.children.count, 2);
    CHECK_EQ_STR(t.children.items[0].children.items[0].name, "a1");
    CHECK_EQ_STR(t.children.items[1].name, "b");
    llmops_config_free(cfg);
    llmops_buf out;
    llmops_buf_init(&out, 1 << 16);
    CHECK_OK(llmops_config_write_docs(&k_tree, NULL, &out, &err), err);
    CHECK(strstr(out.data, "| `children[].name` |") && !strstr(out.data, "children[].children[]"));
    llmops_buf_free(&out);
}

TEST(config_schema_bugs) {
    llmops_error err = {0};
    static const llmops_config_field bad_def[] = {
        {.key = "rank", .type = LLMOPS_CONFIG_TYPE_INT, .offset = 0, .def = "0", .min = 1, .max = 8}};
    static const llmops_config_schema s1 = LLMOPS_CONFIG_SCHEMA(int64_t, bad_def);
    CHECK_ERR(llmops_config_schema_check(&s1, &err), LLMOPS_ERR_INTERNAL, err,
              "config schema rank: default: 0 is out of range [1, 8]");
    static const llmops_config_field past_end[] = {{.key = "x", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = 4}};
    static const llmops_config_schema s2 = LLMOPS_CONFIG_SCHEMA(int64_t, past_end);
    CHECK_ERR(llmops_config_schema_check(&s2, &err), LLMOPS_ERR_INTERNAL, err, "does not fit in 8 bytes");
    static const llmops_config_field no_enum[] = {{.key = "x", .type = LLMOPS_CONFIG_TYPE_ENUM}};
    static const llmops_config_schema s3 = LLMOPS_CONFIG_SCHEMA(int64_t, no_enum);
    CHECK_ERR(llmops_config_schema_check(&s3, &err), LLMOPS_ERR_INTERNAL, err, "x: enum without values");
    static const llmops_config_field dup[] = {{.key = "x", .type = LLMOPS_CONFIG_TYPE_BOOL},
                                              {.key = "x", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = 1}};
    static const llmops_config_schema s4 = LLMOPS_CONFIG_SCHEMA(int64_t, dup);
    CHECK_ERR(llmops_config_schema_check(&s4, &err), LLMOPS_ERR_INTERNAL, err, "x: duplicate key");
    job_cfg job;
    llmops_config *cfg = NULL;
    CHECK_ERR(llmops_config_load_buffer("rank: 2\n", 8, "s.yaml", &s1, &job, &cfg, &err), LLMOPS_ERR_INTERNAL,
              err, "default");
}

/* ---- allocation failures ----------------------------------------------------------------------------- */

TEST(config_alloc_failures) {
    /* a nested config with aliases, a big mapping (sorted duplicate check) and every field kind */
    llmops_buf y;
    llmops_buf_init(&y, 1 << 20);
    llmops_error err = {0};
    char *valid = NULL;
    size_t vlen = 0;
    CHECK_OK(llmops_file_read_all(data_path("job_aliases.yaml"), 1 << 20, &valid, &vlen, &err), err);
    CHECK_OK(llmops_buf_append(&y, valid, vlen, &err), err);
    llmops_free(valid);
    CHECK_OK(llmops_buf_puts(&y, "training:\n  lora: {rank: 4, target_modules: [a, b, c]}\n  method: full\n", &err),
             err);
    long live = llmops_alloc_live();
    long n = 0, fired_count = 0;
    for (;; n++) {
        llmops_config *cfg = NULL;
        job_cfg job;
        llmops_alloc_fail_nth(n);
        llmops_status st = llmops_config_load_buffer(y.data, y.len, "job.yaml", &k_job, &job, &cfg, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        CHECK_MSG(st == LLMOPS_OK || st == LLMOPS_ERR_NOMEM, "n=%ld: %s: %s", n, llmops_status_str(st), err.msg);
        if (st == LLMOPS_OK) {
            CHECK_EQ_INT(job.training.lora.target_modules.count, 3);
            CHECK_EQ_STR(job.datasets.items[1].path, "data/shared.jsonl");
        } else {
            CHECK(cfg == NULL && job.name == NULL);
            CHECK(strstr(err.msg, "out of memory"));
        }
        llmops_config_free(cfg);
        CHECK_MSG(llmops_alloc_live() == live, "n=%ld: %ld allocations leaked", n, llmops_alloc_live() - live);
        if (!fired) break;
        fired_count++;
    }
    CHECK(fired_count >= 5);
    /* a mapping big enough for the sorted duplicate check, parsed without a schema */
    llmops_buf big;
    llmops_buf_init(&big, 1 << 20);
    CHECK_OK(llmops_buf_puts(&big, "s: &s text\n", &err), err);
    for (int i = 0; i < 40; i++) CHECK_OK(llmops_buf_printf(&big, &err, "key%d: &a%d [v, *s]\n", i, i), err);
    CHECK_OK(llmops_buf_puts(&big, "key5: dup\n", &err), err);
    long live_big = llmops_alloc_live();
    for (n = 0;; n++) {
        llmops_config *cfg = NULL;
        llmops_alloc_fail_nth(n);
        llmops_status st = llmops_config_parse_buffer(big.data, big.len, "big.yaml", NULL, &cfg, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        CHECK_MSG(st == LLMOPS_ERR_CONFIG || st == LLMOPS_ERR_NOMEM, "n=%ld: %s", n, err.msg);
        CHECK(cfg == NULL);
        CHECK_EQ_INT(llmops_alloc_live(), live_big);
        if (!fired) {
            CHECK(strstr(err.msg, "big.yaml:42:1: key5: duplicate key (first defined at line 7, column 1)"));
            break;
        }
    }
    llmops_buf_free(&big);
    /* the same for the docs writer and a failing bind into a separate part */
    for (n = 0;; n++) {
        llmops_buf out;
        llmops_buf_init(&out, 1 << 20);
        llmops_alloc_fail_nth(n);
        llmops_status st = llmops_config_write_docs(&k_job, NULL, &out, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        llmops_buf_free(&out);
        CHECK(st == LLMOPS_OK || st == LLMOPS_ERR_NOMEM);
        CHECK_EQ_INT(llmops_alloc_live(), live);
        if (!fired) break;
    }
    llmops_buf_free(&y);
}
