/* llmops tokenize / detokenize: the tokenizer of any model or vocabulary file. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmops/fileio.h"
#include "llmops/tokenizer.h"

void usage_tokenize(FILE *out) {
    fprintf(out,
            "usage: llmops tokenize -m MODEL_OR_VOCAB [--no-bos] [--parse-special] [--ids] (-p TEXT | -f FILE)\n\n"
            "Prints the tokens of TEXT: pieces with their ids, or with --ids only the ids separated by\n"
            "single spaces on one line. MODEL_OR_VOCAB is a GGUF file, a Hugging Face folder or\n"
            "tokenizer.json, a SentencePiece tokenizer.model, a llama2.c tokenizer.bin or checkpoint.\n\n"
            "options:\n"
            "  --no-bos           do not add BOS/EOS (or [CLS]/[SEP]) as the model's config would\n"
            "  --parse-special    match special tokens such as <|im_start|> written in the text\n"
            "  --ids              print only the ids\n"
            "  -p TEXT            the text;  -f FILE  read the text from FILE (exact bytes)\n");
}

void usage_detokenize(FILE *out) {
    fprintf(out,
            "usage: llmops detokenize -m MODEL_OR_VOCAB [--skip-special] IDS...\n\n"
            "Prints the text of the token ids (exact bytes, byte pieces included).\n"
            "  --skip-special     leave out control tokens such as BOS and EOS\n");
}

static int load(const char *m, llmops_tokenizer **tok) {
    llmops_error err = {0};
    if (!m) return cli_usage_error("tokenize", "-m MODEL_OR_VOCAB is required");
    if (llmops_tokenizer_load(m, tok, &err)) return cli_fail("%s", err.msg);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},  {"prompt", required_argument, 0, 'p'},
                                         {"file", required_argument, 0, 'f'},   {"no-bos", no_argument, 0, 'B'},
                                         {"parse-special", no_argument, 0, 'S'}, {"ids", no_argument, 0, 'i'},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *prompt = NULL, *file = NULL;
    unsigned flags = LLMOPS_TOKENIZE_ADD_SPECIAL;
    int ids_only = 0, c;
    while ((c = getopt_long(argc, argv, "m:p:f:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case 'f': file = optarg; break;
        case 'B': flags &= ~(unsigned)LLMOPS_TOKENIZE_ADD_SPECIAL; break;
        case 'S': flags |= LLMOPS_TOKENIZE_PARSE_SPECIAL; break;
        case 'i': ids_only = 1; break;
        default: return cli_usage_error("tokenize", "unknown option");
        }
    }
    if (optind != argc) return cli_usage_error("tokenize", "unexpected argument '%s'", argv[optind]);
    if (!prompt == !file) return cli_usage_error("tokenize", "give exactly one of -p TEXT or -f FILE");
    llmops_tokenizer *tok;
    int r = load(model, &tok);
    if (r) return r;
    llmops_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (file) {
        if (llmops_file_read_all(file, (size_t)1 << 30, &text, &len, &err)) {
            llmops_tokenizer_free(tok);
            return cli_fail("%s", err.msg);
        }
    } else {
        len = strlen(prompt);
    }
    llmops_tokens ids = {0};
    if (llmops_tokenize(tok, file ? text : prompt, len, flags, &ids, &err)) {
        r = cli_fail("%s", err.msg);
    } else if (ids_only) {
        for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", ids.ids[i]);
        putchar('\n');
    } else {
        llmops_buf piece;
        llmops_buf_init(&piece, 1 << 20);
        for (size_t i = 0; i < ids.n; i++) {
            size_t tl;
            const char *tt = llmops_tokenizer_token_text(tok, ids.ids[i], &tl);
            printf("%6d -> '%.*s'\n", ids.ids[i], (int)tl, tt);
        }
        llmops_buf_free(&piece);
    }
    llmops_tokens_free(&ids);
    llmops_free(text);
    llmops_tokenizer_free(tok);
    return r;
}

int cmd_detokenize(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"skip-special", no_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    const char *model = NULL;
    unsigned flags = 0;
    int c;
    while ((c = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 's': flags |= LLMOPS_DETOKENIZE_SKIP_SPECIAL; break;
        default: return cli_usage_error("detokenize", "unknown option");
        }
    }
    llmops_tokens ids = {0};
    llmops_error err = {0};
    for (int i = optind; i < argc; i++) {
        /* ids may also come as one space-separated argument */
        for (char *p = argv[i]; *p;) {
            while (*p == ' ' || *p == ',') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v > INT32_MAX) {
                llmops_tokens_free(&ids);
                return cli_usage_error("detokenize", "'%s' is not a token id", argv[i]);
            }
            llmops_tokens_push(&ids, (int32_t)v, &err);
            p = end;
        }
    }
    llmops_tokenizer *tok;
    int r = load(model, &tok);
    if (r) {
        llmops_tokens_free(&ids);
        return r;
    }
    llmops_buf out;
    llmops_buf_init(&out, (size_t)1 << 30);
    if (llmops_detokenize(tok, ids.ids, ids.n, flags, &out, &err)) r = cli_fail("%s", err.msg);
    else {
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
        putchar('\n');
    }
    llmops_buf_free(&out);
    llmops_tokens_free(&ids);
    llmops_tokenizer_free(tok);
    return r;
}
