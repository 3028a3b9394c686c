/*
 * The pre-tokenizer regex engine against Python's `re` (a backtracking,
 * leftmost-first engine with the same semantics for the syntax both accept):
 * every match span of many patterns over random ASCII strings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "tokenizer/uregex.h"

/* patterns that never match the empty string (finditer and our loop differ only there) */
static const char *const k_patterns[] = {
    "a+",        "a{2}",        "a{1,3}",        "[ab]{2,}",       "x{0,2}y",      "(?:ab|a)c",
    "a+?b",      "[^ a-c]+",    "\\d{1,3}",      "\\s+(?!\\S)",    "\\s+",         " ?[a-z]+",
    "'s|'t|'re", "(?i:AB)c",    "[0-9][0-9][0-9]", "(?:a|ab)(?:c|bcd)", "b{2}x?",  "^a",
    "a(?=b)",    "a(?!b)",      "[a-c]+d?",      "(?:ab){1,2}",    "\\w+",         "[\\s,]+",
    "a*?b",      "(?:a|b)+?c",  "x+?",           "\\.",            "[\\[\\]]+",    "(?:x|xy)z+"};

static uint64_t rng = 42;
static char rnd_char(void) {
    static const char alphabet[] = "aabbcxyz 0123,.'stdAB\t\n[]";
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return alphabet[(rng >> 33) % (sizeof alphabet - 1)];
}

TEST(uregex_matches_python_re) {
    if (system("/usr/bin/python3 -c 'import re, json' 2>/dev/null") != 0) SKIP("/usr/bin/python3 is missing");
    enum { N_STR = 60 };
    char strs[N_STR][40];
    for (int i = 0; i < N_STR; i++) {
        int len = 1 + (int)((rng >> 40) % 38);
        for (int k = 0; k < len; k++) strs[i][k] = rnd_char();
        strs[i][len] = '\0';
        rng = rng * 6364136223846793005ull + 1;
    }
    /* ask Python for every span, one line per (pattern, string) */
    const char *in = test_tmpfile("cases.txt"), *out = test_tmpfile("spans.txt");
    FILE *f = fopen(in, "w");
    size_t np = sizeof k_patterns / sizeof k_patterns[0];
    for (size_t p = 0; p < np; p++)
        for (int i = 0; i < N_STR; i++) {
            fputs(k_patterns[p], f);
            fputc('\x01', f);
            for (const char *c = strs[i]; *c; c++) fputc(*c == '\n' ? '\x02' : *c, f);
            fputc('\n', f);
        }
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import re,sys\n"
             "for line in open(sys.argv[1], encoding='latin-1').read().split('\\n')[:-1]:\n"
             "    p, s = line.split('\\x01'); s = s.replace('\\x02', '\\n')\n"
             "    print(' '.join('%%d:%%d' %% m.span() for m in re.finditer(p, s)))\" %s > %s",
             in, out);
    CHECK_MSG(system(cmd) == 0, "python failed");
    f = fopen(out, "r");
    CHECK(f);
    char want[4096];
    for (size_t p = 0; p < np; p++) {
        llmops_error err = {0};
        llmops_regex *re;
        CHECK_OK(llmops_regex_compile(k_patterns[p], -1, &re, &err), err);
        for (int i = 0; i < N_STR; i++) {
            CHECK(fgets(want, sizeof want, f) != NULL);
            want[strcspn(want, "\n")] = '\0';
            llmops_utext t;
            CHECK_OK(llmops_utext_from_utf8(&t, strs[i], strlen(strs[i]), &err), err);
            char got[4096] = "";
            size_t o = 0, at = 0, mb, me;
            while (at <= t.n && llmops_regex_search(re, &t, 0, t.n, at, &mb, &me) == 1) {
                o += (size_t)snprintf(got + o, sizeof got - o, o ? " %zu:%zu" : "%zu:%zu", mb, me);
                at = me > mb ? me : mb + 1;
            }
            llmops_utext_free(&t);
            CHECK_MSG(strcmp(got, want) == 0, "pattern /%s/ on \"%s\": got [%s], re gives [%s]", k_patterns[p], strs[i],
                      got, want);
        }
        llmops_regex_free(re);
    }
    fclose(f);
}

/* $ matches only at the end of the fragment (ECMAScript, as llama.cpp's std::regex),
 * not before a final newline as Python's and Oniguruma's do. */
TEST(uregex_dollar_is_end_of_fragment) {
    llmops_error err = {0};
    llmops_regex *re;
    CHECK_OK(llmops_regex_compile("\\s+$", -1, &re, &err), err);
    llmops_utext t;
    CHECK_OK(llmops_utext_from_utf8(&t, "ab  \n", 5, &err), err);
    size_t mb, me;
    CHECK_EQ_INT(llmops_regex_search(re, &t, 0, t.n, 0, &mb, &me), 1);
    CHECK_EQ_INT(mb, 2);
    CHECK_EQ_INT(me, 5);
    CHECK_EQ_INT(llmops_regex_search(re, &t, 0, 3, 0, &mb, &me), 1); /* the fragment [0,3) ends at its last space */
    CHECK_EQ_INT(me, 3);
    llmops_utext_free(&t);
    llmops_regex_free(re);
}

TEST(uregex_syntax_errors_name_the_offset) {
    llmops_error err = {0};
    llmops_regex *re;
    CHECK_ERR(llmops_regex_compile("a{3,1}", -1, &re, &err), LLMOPS_ERR_FORMAT, err, "m < n");
    CHECK_ERR(llmops_regex_compile("(ab", -1, &re, &err), LLMOPS_ERR_FORMAT, err, "missing ')'");
    CHECK_ERR(llmops_regex_compile("[a-", -1, &re, &err), LLMOPS_ERR_FORMAT, err, "byte");
    CHECK_ERR(llmops_regex_compile("\\p{Zzz}", -1, &re, &err), LLMOPS_ERR_FORMAT, err, "unknown Unicode property");
    CHECK_ERR(llmops_regex_compile("*a", -1, &re, &err), LLMOPS_ERR_FORMAT, err, "nothing to repeat");
}
