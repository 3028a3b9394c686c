/* llmops generate: stream text from a model, with timings on stderr. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmops/adapter.h"
#include "llmops/chat_template.h"
#include "llmops/fileio.h"
#include "llmops/generate.h"
#include "llmops/threadpool.h"

void usage_generate(FILE *out) {
    fprintf(out,
            "usage: llmops generate -m MODEL [-p PROMPT | -f FILE | --chat MESSAGES.json] [-n N] [--temp T]\n"
            "                       [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S]\n"
            "                       [--threads N] [--ctx N] [--stop TEXT]... [--chat-template NAME] [--no-bos]\n"
            "                       [--lora ADAPTER [--lora-scale S]]...\n\n"
            "Streams generated text to stdout; prompt and generation speed go to stderr.\n"
            "MODEL is a GGUF file, a Hugging Face folder or a llama2.c checkpoint.\n\n"
            "options:\n"
            "  -p TEXT              the prompt (default: empty, i.e. start from BOS)\n"
            "  -f FILE              read the prompt from FILE\n"
            "  --chat FILE          a JSON array of {\"role\", \"content\"} messages, rendered with the\n"
            "                       model's chat template (or --chat-template NAME: chatml, llama2,\n"
            "                       llama3, mistral, phi3, zephyr, gemma)\n"
            "  -n N                 tokens to generate (default 128)\n"
            "  --temp T             temperature, 0 = greedy (default 0.8)\n"
            "  --top-k K            (default 40, 0 = off)   --top-p P (default 0.95)   --min-p P (default 0.05)\n"
            "  --repeat-penalty R   (default 1 = off)       --seed S (default 0x5eed)\n"
            "  --threads N          (default: physical cores)  --ctx N  KV cache size (default: model, max 4096)\n"
            "  --stop TEXT          stop when TEXT appears (repeatable)\n"
            "  --no-bos             do not add the BOS token\n"
            "  --lora ADAPTER       apply a LoRA adapter: a PEFT folder (adapter_config.json +\n"
            "                       adapter_model.safetensors) or a llama.cpp GGUF LoRA file (repeatable)\n"
            "  --lora-scale S       scale of the preceding --lora (default 1)\n");
}

static int print_piece(void *user, const char *text, size_t len, int32_t token, const llmops_sample_result *r) {
    (void)user;
    (void)token;
    (void)r;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int parse_num(const char *s, double *out) {
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return !errno && end != s && !*end;
}

int cmd_generate(int argc, char **argv) {
    enum { O_TEMP = 1000, O_TOPK, O_TOPP, O_MINP, O_REP, O_SEED, O_THREADS, O_CTX, O_STOP, O_CHAT, O_TMPL, O_NOBOS, O_LORA, O_LORA_SCALE };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},     {"prompt", required_argument, 0, 'p'},
                                         {"file", required_argument, 0, 'f'},      {"n-predict", required_argument, 0, 'n'},
                                         {"temp", required_argument, 0, O_TEMP},   {"top-k", required_argument, 0, O_TOPK},
                                         {"top-p", required_argument, 0, O_TOPP},  {"min-p", required_argument, 0, O_MINP},
                                         {"repeat-penalty", required_argument, 0, O_REP},
                                         {"seed", required_argument, 0, O_SEED},   {"threads", required_argument, 0, O_THREADS},
                                         {"ctx", required_argument, 0, O_CTX},     {"stop", required_argument, 0, O_STOP},
                                         {"chat", required_argument, 0, O_CHAT},   {"chat-template", required_argument, 0, O_TMPL},
                                         {"no-bos", no_argument, 0, O_NOBOS},      {"lora", required_argument, 0, O_LORA},
                                         {"lora-scale", required_argument, 0, O_LORA_SCALE}, {0, 0, 0, 0}};
    const char *model = NULL, *prompt = "", *file = NULL, *chat = NULL, *tmpl_name = NULL;
    const char *stops[16];
    size_t n_stops = 0;
    enum { MAX_LORA = 16 };
    const char *loras[MAX_LORA];
    float lora_scales[MAX_LORA];
    size_t n_lora = 0;
    llmops_gen_params gp;
    llmops_gen_params_init(&gp);
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    int c;
    double v;
    while ((c = getopt_long(argc, argv, "m:p:f:n:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case 'f': file = optarg; break;
        case O_CHAT: chat = optarg; break;
        case O_TMPL: tmpl_name = optarg; break;
        case O_NOBOS: gp.add_special = 0; break;
        case O_LORA:
            if (n_lora == MAX_LORA) return cli_usage_error("generate", "at most %d --lora adapters", MAX_LORA);
            loras[n_lora] = optarg;
            lora_scales[n_lora++] = 1.0f;
            break;
        case O_LORA_SCALE:
            if (!n_lora) return cli_usage_error("generate", "--lora-scale applies to a preceding --lora");
            if (!parse_num(optarg, &v)) return cli_usage_error("generate", "'%s' is not a number", optarg);
            lora_scales[n_lora - 1] = (float)v;
            break;
        case O_STOP:
            if (n_stops == 16) return cli_usage_error("generate", "at most 16 --stop strings");
            stops[n_stops++] = optarg;
            break;
        default:
            if (!parse_num(optarg, &v)) return cli_usage_error("generate", "'%s' is not a number", optarg);
            switch (c) {
            case 'n': gp.n_predict = (int32_t)v; break;
            case O_TEMP: gp.sampling.temperature = (float)v; break;
            case O_TOPK: gp.sampling.top_k = (int32_t)v; break;
            case O_TOPP: gp.sampling.top_p = (float)v; break;
            case O_MINP: gp.sampling.min_p = (float)v; break;
            case O_REP: gp.sampling.repeat_penalty = (float)v; break;
            case O_SEED: gp.sampling.seed = (uint64_t)v; break;
            case O_THREADS: cp.n_threads = (int)v; break;
            case O_CTX: cp.n_ctx = (uint32_t)v; break;
            default: return cli_usage_error("generate", "unknown option");
            }
        }
    }
    if (optind != argc) return cli_usage_error("generate", "unexpected argument '%s'", argv[optind]);
    if (!model) return cli_usage_error("generate", "-m MODEL is required");
    if ((file != NULL) + (chat != NULL) + (prompt[0] != 0) > 1)
        return cli_usage_error("generate", "give one of -p, -f or --chat");
    gp.stop = stops;
    gp.n_stop = n_stops;
    llmops_error err = {0};
    llmops_model *m = NULL;
    llmops_context *ctx = NULL;
    char *text = NULL;
    llmops_buf rendered;
    llmops_buf_init(&rendered, 1u << 26);
    llmops_chat_template *tmpl = NULL;
    llmops_adapter *adapters[MAX_LORA] = {0};
    int r = 0;
    if (llmops_model_load(model, NULL, &m, &err) || llmops_context_create(m, &cp, &ctx, &err)) {
        r = cli_fail("%s", err.msg);
        goto done;
    }
    for (size_t i = 0; i < n_lora; i++)
        if (llmops_adapter_load(m, loras[i], &adapters[i], &err)) {
            r = cli_fail("%s", err.msg);
            goto done;
        }
    if (n_lora && llmops_context_set_adapters(ctx, adapters, lora_scales, n_lora, &err)) {
        r = cli_fail("%s", err.msg);
        goto done;
    }
    if (file && llmops_file_read_all(file, 1u << 26, &text, NULL, &err)) {
        r = cli_fail("%s", err.msg);
        goto done;
    }
    if (chat) {
        size_t len;
        const llmops_tokenizer *tok = llmops_model_tokenizer(m);
        const char *src = tmpl_name ? llmops_chat_template_builtin(tmpl_name) : llmops_tokenizer_chat_template(tok);
        if (!src) {
            r = cli_fail(tmpl_name ? "unknown chat template '%s'" : "%s has no chat template; pass --chat-template NAME",
                         tmpl_name ? tmpl_name : model);
            goto done;
        }
        if (llmops_file_read_all(chat, 1u << 26, &text, &len, &err) ||
            llmops_chat_template_compile(src, strlen(src), &tmpl, &err)) {
            r = cli_fail("%s", err.msg);
            goto done;
        }
        int32_t bos = llmops_tokenizer_bos(tok), eos = llmops_tokenizer_eos(tok);
        size_t bl = 0, el = 0;
        const char *bt = bos >= 0 ? llmops_tokenizer_token_text(tok, bos, &bl) : "";
        const char *et = eos >= 0 ? llmops_tokenizer_token_text(tok, eos, &el) : "";
        char bos_s[256], eos_s[256];
        snprintf(bos_s, sizeof bos_s, "%.*s", (int)bl, bt);
        snprintf(eos_s, sizeof eos_s, "%.*s", (int)el, et);
        llmops_chat_render_opts ro = {.add_generation_prompt = 1, .bos_token = bos_s, .eos_token = eos_s};
        if (llmops_chat_template_render_json(tmpl, text, len, &ro, &rendered, &err)) {
            r = cli_fail("%s: %s", chat, err.msg);
            goto done;
        }
        gp.add_special = 0; /* the template writes BOS itself */
    }
    const char *input = chat ? (rendered.data ? rendered.data : "") : file ? text : prompt;
    if (!chat) { /* like llama.cpp, the continuation follows its prompt */
        fputs(input, stdout);
        fflush(stdout);
    }
    llmops_gen_stats stats;
    if (llmops_generate(m, ctx, input, &gp, print_piece, NULL, &stats, &err)) {
        putchar('\n');
        r = cli_fail("%s", err.msg);
        goto done;
    }
    putchar('\n');
    static const char *const reasons[] = {"length", "end of generation", "stop string", "callback", "context full"};
    fprintf(stderr, "\n%s\nprompt: %d tokens in %.3f s (%.1f tok/s); generation: %d tokens in %.3f s (%.1f tok/s); stop: %s\n",
            llmops_model_desc(m), stats.n_prompt, stats.t_prompt_s,
            stats.t_prompt_s > 0 ? stats.n_prompt / stats.t_prompt_s : 0.0, stats.n_gen, stats.t_gen_s,
            stats.t_gen_s > 0 ? stats.n_gen / stats.t_gen_s : 0.0, reasons[stats.stop]);
done:
    llmops_chat_template_free(tmpl);
    llmops_buf_free(&rendered);
    llmops_free(text);
    llmops_context_free(ctx);
    for (size_t i = 0; i < n_lora; i++) llmops_adapter_free(adapters[i]);
    llmops_model_free(m);
    return r;
}
