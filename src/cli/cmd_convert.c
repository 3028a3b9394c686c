#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmops/convert.h"

void usage_convert(FILE *out) {
    fprintf(out,
            "usage: llmops convert IN OUT [--type f32|f16|bf16] [--vocab FILE] [--name NAME]\n"
            "                      [--max-shard-size BYTES]\n\n"
            "Converts a model between formats:\n"
            "  llama2.c checkpoint -> GGUF   (OUT ends in .gguf; the tokenizer.bin beside IN,\n"
            "                                 or tok<vocab>.bin, or --vocab, is embedded)\n"
            "  Hugging Face folder -> GGUF   (config.json, safetensors (sharded too),\n"
            "                                 tokenizer.json, tokenizer_config.json)\n"
            "  GGUF -> GGUF                  (change the float type)\n"
            "  GGUF -> Hugging Face folder   (OUT is a folder: model.safetensors or shards,\n"
            "                                 config.json)\n"
            "GGUF output uses llama.cpp's tensor names and metadata keys, so llama.cpp loads it.\n\n"
            "options:\n"
            "  --type T             element type of the weight matrices: f32, f16 or bf16\n"
            "                       (default: keep the source type; norms and biases stay f32)\n"
            "  --vocab FILE         llama2.c tokenizer.bin for a llama2.c checkpoint\n"
            "  --name NAME          general.name (default: the input's file name)\n"
            "  --max-shard-size N   Hugging Face output: shard above N bytes (default 5e9)\n");
}

int cmd_convert(int argc, char **argv) {
    static const struct option opts[] = {{"type", required_argument, 0, 't'},
                                         {"vocab", required_argument, 0, 'v'},
                                         {"name", required_argument, 0, 'n'},
                                         {"max-shard-size", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    llmops_convert_opts o;
    llmops_convert_opts_init(&o);
    int c;
    while ((c = getopt_long(argc, argv, "t:", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!strcmp(optarg, "f32")) o.out_type = LLMOPS_DTYPE_F32;
            else if (!strcmp(optarg, "f16")) o.out_type = LLMOPS_DTYPE_F16;
            else if (!strcmp(optarg, "bf16")) o.out_type = LLMOPS_DTYPE_BF16;
            else return cli_usage_error("convert", "--type must be f32, f16 or bf16, not '%s'", optarg);
            break;
        case 'v': o.vocab_path = optarg; break;
        case 'n': o.name = optarg; break;
        case 's': {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || *end || !(v >= 1)) return cli_usage_error("convert", "--max-shard-size must be a byte count");
            o.max_shard_bytes = (uint64_t)v;
            break;
        }
        default: return cli_usage_error("convert", "unknown option");
        }
    }
    if (argc - optind != 2) return cli_usage_error("convert", "expected IN and OUT");
    const char *in = argv[optind], *out = argv[optind + 1];
    llmops_error err = {0};
    if (llmops_convert(in, out, &o, &err) != LLMOPS_OK) return cli_fail("%s", err.msg);
    fprintf(stderr, "wrote %s\n", out);
    return 0;
}

void usage_quantize(FILE *out) {
    fprintf(out,
            "usage: llmops quantize IN OUT.gguf TYPE\n\n"
            "Quantizes the weight matrices of a model (GGUF, Hugging Face folder or llama2.c\n"
            "checkpoint) into a GGUF file, bit-compatible with llama.cpp's block layouts.\n"
            "TYPE: q8_0, q4_0, q4_k, q6_k, f16, bf16, f32, or q4_k_m (Q4_K with the sensitive\n"
            "tensors at Q6_K, as llama.cpp's Q4_K_M). Norms and biases stay F32.\n");
}

int cmd_quantize(int argc, char **argv) {
    if (argc - optind != 3) return cli_usage_error("quantize", "expected IN, OUT and TYPE");
    llmops_error err = {0};
    if (llmops_quantize_model(argv[optind], argv[optind + 1], argv[optind + 2], 0, &err)) return cli_fail("%s", err.msg);
    fprintf(stderr, "wrote %s\n", argv[optind + 1]);
    return 0;
}
