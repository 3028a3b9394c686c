/*
 * Dataset downloads over http(s) and S3 (libcurl), with SigV4 signing done
 * here on libsodium's SHA-256 and HMAC-SHA-256 (see llmops/fetch.h).
 */
#include "llmops/fetch.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/dynlib.h"
#include "llmops/fileio.h"
#include "llmops/hash.h"
#include "llmops/log.h"

#define FETCH_DEFAULT_MAX ((size_t)1 << 30)

void llmops_fetch_params_init(llmops_fetch_params *p) {
    memset(p, 0, sizeof *p);
    p->max_bytes = FETCH_DEFAULT_MAX;
    p->timeout_s = 600;
}

int llmops_fetch_is_url(const char *s) {
    return s && (!strncasecmp(s, "http://", 7) || !strncasecmp(s, "https://", 8) || !strncasecmp(s, "s3://", 5));
}

/* ---- hashing ---------------------------------------------------------------------- */

static void to_hex(const unsigned char *b, size_t n, char *hex) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[b[i] >> 4];
        hex[2 * i + 1] = digits[b[i] & 15];
    }
    hex[2 * n] = '\0';
}

/* HMAC-SHA-256 with a key of any length (the multi-part API takes arbitrary keys). */
static void hmac(const void *key, size_t klen, const char *msg, size_t mlen, unsigned char out[32]) {
    crypto_auth_hmacsha256_state s;
    crypto_auth_hmacsha256_init(&s, key, klen);
    crypto_auth_hmacsha256_update(&s, (const unsigned char *)msg, mlen);
    crypto_auth_hmacsha256_final(&s, out);
    sodium_memzero(&s, sizeof s);
}

llmops_status llmops_uri_encode(const char *s, size_t n, int keep_slash, llmops_buf *out, llmops_error *err) {
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; !st && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
            st = llmops_buf_append(out, &s[i], 1, err);
        } else {
            st = llmops_buf_printf(out, err, "%%%02X", c);
        }
    }
    return st;
}

/* ---- SigV4 --------------------------------------------------------------------------- */

typedef struct {
    char *name;  /* lower-cased   */
    char *value; /* canonical form */
} canon_header;

typedef struct {
    const char *s;
    size_t n;
} slice;

static int cmp_header(const void *a, const void *b) {
    return strcmp(((const canon_header *)a)->name, ((const canon_header *)b)->name);
}

static int cmp_slice(const void *a, const void *b) {
    const slice *x = a, *y = b;
    /* sort by name, then value: compare up to '=' first */
    const char *ex = memchr(x->s, '=', x->n), *ey = memchr(y->s, '=', y->n);
    size_t kx = ex ? (size_t)(ex - x->s) : x->n, ky = ey ? (size_t)(ey - y->s) : y->n;
    int c = memcmp(x->s, y->s, kx < ky ? kx : ky);
    if (c) return c;
    if (kx != ky) return kx < ky ? -1 : 1;
    size_t m = x->n < y->n ? x->n : y->n;
    c = memcmp(x->s, y->s, m);
    if (c) return c;
    return x->n < y->n ? -1 : x->n > y->n;
}

/* "  a   b " -> "a b" */
static char *canon_value(const char *v) {
    size_t n = strlen(v);
    char *o = llmops_malloc(n + 1);
    if (!o) return NULL;
    size_t j = 0;
    int space = 0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (c == ' ' || c == '\t') {
            space = 1;
            continue;
        }
        if (space && j) o[j++] = ' ';
        space = 0;
        o[j++] = c;
    }
    o[j] = '\0';
    return o;
}

llmops_status llmops_sigv4_sign(const llmops_sigv4_request *r, llmops_buf *canonical, llmops_buf *string_to_sign,
                                llmops_buf *authorization, char signature[65], llmops_error *err) {
    if (!r || !r->method || !r->path || !r->payload_hash || !r->region || !r->service || !r->amz_date ||
        strlen(r->amz_date) != 16 || !r->access_key || !r->secret_key || (r->n_headers && !r->headers))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "sigv4: incomplete request");
    llmops_status st = LLMOPS_OK;
    canon_header *h = llmops_calloc(r->n_headers ? r->n_headers : 1, sizeof *h);
    slice *q = NULL;
    size_t nq = 0;
    llmops_buf creq, sts, signed_h;
    llmops_buf_init(&creq, 1 << 20);
    llmops_buf_init(&sts, 1 << 16);
    llmops_buf_init(&signed_h, 1 << 16);
    if (!h) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < r->n_headers; i++) {
        h[i].name = llmops_strdup(r->headers[i].name ? r->headers[i].name : "");
        h[i].value = canon_value(r->headers[i].value ? r->headers[i].value : "");
        if (!h[i].name || !h[i].value) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        else
            for (char *c = h[i].name; *c; c++) *c = (char)tolower((unsigned char)*c);
    }
    if (!st && r->n_headers) qsort(h, r->n_headers, sizeof *h, cmp_header);

    /* canonical query: the name=value pairs sorted */
    const char *query = r->query ? r->query : "";
    size_t qlen = strlen(query);
    if (!st && qlen) {
        size_t cap = 1;
        for (size_t i = 0; i < qlen; i++) cap += query[i] == '&';
        q = llmops_calloc(cap, sizeof *q);
        if (!q) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !st && i <= qlen;) {
            const char *amp = memchr(query + i, '&', qlen - i);
            size_t e = amp ? (size_t)(amp - query) : qlen;
            if (e > i) q[nq++] = (slice){query + i, e - i};
            i = e + 1;
        }
        if (!st) qsort(q, nq, sizeof *q, cmp_slice);
    }

    if (!st) st = llmops_buf_printf(&creq, err, "%s\n%s\n", r->method, r->path);
    for (size_t i = 0; !st && i < nq; i++) {
        if (i) st = llmops_buf_append(&creq, "&", 1, err);
        if (!st) st = llmops_buf_append(&creq, q[i].s, q[i].n, err);
        if (!st && !memchr(q[i].s, '=', q[i].n)) st = llmops_buf_append(&creq, "=", 1, err);
    }
    if (!st) st = llmops_buf_append(&creq, "\n", 1, err);
    for (size_t i = 0; !st && i < r->n_headers; i++) {
        /* repeated names: one line, values joined by commas */
        if (i && !strcmp(h[i].name, h[i - 1].name)) {
            creq.len--; /* drop the newline */
            st = llmops_buf_printf(&creq, err, ",%s\n", h[i].value);
            continue;
        }
        st = llmops_buf_printf(&creq, err, "%s:%s\n", h[i].name, h[i].value);
        if (!st && signed_h.len) st = llmops_buf_append(&signed_h, ";", 1, err);
        if (!st) st = llmops_buf_puts(&signed_h, h[i].name, err);
    }
    if (!st) st = llmops_buf_printf(&creq, err, "\n%s\n%s", signed_h.len ? signed_h.data : "", r->payload_hash);

    char creq_hash[65], date[9];
    memcpy(date, r->amz_date, 8);
    date[8] = '\0';
    if (!st) {
        llmops_sha256_hex(creq.data, creq.len, creq_hash);
        st = llmops_buf_printf(&sts, err, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", r->amz_date, date,
                               r->region, r->service, creq_hash);
    }
    char sig[65];
    if (!st) {
        /* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
        size_t sl = strlen(r->secret_key);
        char *k0 = llmops_malloc(sl + 5);
        if (!k0) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        } else {
            memcpy(k0, "AWS4", 4);
            memcpy(k0 + 4, r->secret_key, sl + 1);
            unsigned char k1[32], k2[32], k3[32], k4[32], s[32];
            hmac(k0, sl + 4, date, 8, k1);
            hmac(k1, 32, r->region, strlen(r->region), k2);
            hmac(k2, 32, r->service, strlen(r->service), k3);
            hmac(k3, 32, "aws4_request", 12, k4);
            hmac(k4, 32, sts.data, sts.len, s);
            to_hex(s, 32, sig);
            sodium_memzero(k0, sl + 4);
            sodium_memzero(k1, 32);
            sodium_memzero(k2, 32);
            sodium_memzero(k3, 32);
            sodium_memzero(k4, 32);
            llmops_free(k0);
        }
    }
    if (!st && authorization)
        st = llmops_buf_printf(authorization, err,
                               "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
                               r->access_key, date, r->region, r->service, signed_h.len ? signed_h.data : "", sig);
    if (!st && canonical) st = llmops_buf_append(canonical, creq.data, creq.len, err);
    if (!st && string_to_sign) st = llmops_buf_append(string_to_sign, sts.data, sts.len, err);
    if (!st && signature) memcpy(signature, sig, 65);
    for (size_t i = 0; i < r->n_headers; i++) {
        llmops_free(h[i].name);
        llmops_free(h[i].value);
    }
    llmops_free(h);
    llmops_free(q);
    llmops_buf_free(&creq);
    llmops_buf_free(&sts);
    llmops_buf_free(&signed_h);
    return st;
}

/* ---- libcurl ------------------------------------------------------------------------- */

/*
 * libcurl is opened on the first fetch (see base/dynlib.h): nothing else needs
 * it, and linked it maps a TLS stack of several MB into every process. curl.h
 * still gives the types and constants; the functions come from the library.
 */
typedef struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} curl_api;

static dynlib g_curl = DYNLIB_INIT;
static const dynlib_desc g_curl_desc = {"LLMOPS_CURL_LIB",
                                        {"libcurl.so.4", "libcurl-gnutls.so.4", "libcurl-nss.so.4", NULL},
                                        "libcurl",
                                        "http://, https:// and s3:// sources",
                                        "libcurl4",
                                        0,
                                        {"curl_global_init", "curl_easy_init", "curl_easy_setopt", "curl_easy_perform",
                                         "curl_easy_getinfo", "curl_easy_cleanup", "curl_easy_strerror",
                                         "curl_slist_append", "curl_slist_free_all", NULL}};
static curl_api CU;

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init;
static void curl_init_once(void) {
    void *const *f = g_curl.sym;
    CU.global_init = (CURLcode(*)(long))f[0];
    CU.easy_init = (CURL * (*)(void)) f[1];
    CU.easy_setopt = (CURLcode(*)(CURL *, CURLoption, ...))f[2];
    CU.easy_perform = (CURLcode(*)(CURL *))f[3];
    CU.easy_getinfo = (CURLcode(*)(CURL *, CURLINFO, ...))f[4];
    CU.easy_cleanup = (void (*)(CURL *))f[5];
    CU.easy_strerror = (const char *(*)(CURLcode))f[6];
    CU.slist_append = (struct curl_slist * (*)(struct curl_slist *, const char *)) f[7];
    CU.slist_free_all = (void (*)(struct curl_slist *))f[8];
    g_curl_init = CU.global_init(CURL_GLOBAL_DEFAULT);
    if (sodium_init() < 0) g_curl_init = CURLE_FAILED_INIT;
}

typedef struct {
    llmops_buf *body;
    llmops_status st; /* LIMIT (over the cap) or NOMEM when the write stopped the transfer */
} sink;

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *user) {
    sink *s = user;
    size_t n = size * nmemb;
    llmops_status st = llmops_buf_append(s->body, ptr, n, NULL);
    if (st != LLMOPS_OK) {
        s->st = st;
        return 0; /* aborts the transfer */
    }
    return n;
}

static const char *env_or(const char *given, const char *a, const char *b) {
    if (given && *given) return given;
    const char *v = a ? getenv(a) : NULL;
    if (v && *v) return v;
    v = b ? getenv(b) : NULL;
    return v && *v ? v : NULL;
}

/* "<Code>NoSuchKey</Code>" from an S3 error body, into code[cap]. */
static void s3_error_code(const llmops_buf *b, char *code, size_t cap) {
    code[0] = '\0';
    if (!b->data) return;
    const char *s = strstr(b->data, "<Code>");
    if (!s) return;
    s += 6;
    const char *e = strstr(s, "</Code>");
    if (!e || (size_t)(e - s) >= cap) return;
    memcpy(code, s, (size_t)(e - s));
    code[e - s] = '\0';
}

/* One GET with extra headers; the body goes to `body` (capped by its max). */
static llmops_status http_get(const char *url, const char *shown, struct curl_slist *hdrs, long timeout_s,
                              int follow, llmops_buf *body, llmops_error *err) {
    CURL *c = CU.easy_init();
    if (!c) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: curl_easy_init failed", shown);
    char cerr[CURL_ERROR_SIZE] = "";
    sink s = {body, LLMOPS_OK};
    CU.easy_setopt(c, CURLOPT_URL, url);
    CU.easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CU.easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    CU.easy_setopt(c, CURLOPT_WRITEDATA, &s);
    CU.easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    /* signed S3 requests are not replayed to wherever a redirect points */
    CU.easy_setopt(c, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    CU.easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    CU.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CU.easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    if (timeout_s > 0) CU.easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    CU.easy_setopt(c, CURLOPT_USERAGENT, "llmops");
    CURLcode rc = CU.easy_perform(c);
    long code = 0;
    CU.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    CU.easy_cleanup(c);
    if (s.st == LLMOPS_ERR_LIMIT)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "%s: larger than the cap of %zu bytes", shown, body->max);
    if (s.st) return llmops_error_set(err, s.st, "%s: out of memory after %zu bytes", shown, body->len);
    if (rc != CURLE_OK)
        return llmops_error_set(err, LLMOPS_ERR_IO, "%s: %s", shown, cerr[0] ? cerr : CU.easy_strerror(rc));
    if (code >= 400) {
        char s3code[128];
        s3_error_code(body, s3code, sizeof s3code);
        return llmops_error_set(err, code == 404 ? LLMOPS_ERR_NOT_FOUND : LLMOPS_ERR_IO, "%s: HTTP %ld%s%s%s", shown,
                                code, s3code[0] ? " (" : "", s3code, s3code[0] ? ")" : "");
    }
    return LLMOPS_OK;
}

static llmops_status s3_get(const char *url, const llmops_fetch_params *p, llmops_buf *body, llmops_error *err) {
    const char *region = env_or(p->s3_region, "AWS_REGION", "AWS_DEFAULT_REGION");
    if (!region) region = "us-east-1";
    const char *ak = env_or(p->access_key, "AWS_ACCESS_KEY_ID", NULL);
    const char *sk = env_or(p->secret_key, "AWS_SECRET_ACCESS_KEY", NULL);
    const char *tok = env_or(p->session_token, "AWS_SESSION_TOKEN", NULL);
    const char *ep = env_or(p->s3_endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
    if (!ak || !sk)
        return llmops_error_set(err, LLMOPS_ERR_CONFIG,
                                "%s: no S3 credentials (set access/secret key or AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY)",
                                url);
    const char *bucket = url + 5;
    const char *slash = strchr(bucket, '/');
    if (!slash || slash == bucket || !slash[1])
        return llmops_error_set(err, LLMOPS_ERR_CONFIG, "%s: expected s3://BUCKET/KEY", url);
    size_t blen = (size_t)(slash - bucket);
    const char *key = slash + 1;

    llmops_status st = LLMOPS_OK;
    llmops_buf endpoint, path, full, host, auth;
    llmops_buf_init(&endpoint, 4096);
    llmops_buf_init(&path, 1 << 16);
    llmops_buf_init(&full, 1 << 16);
    llmops_buf_init(&host, 4096);
    llmops_buf_init(&auth, 4096);
    if (ep) st = llmops_buf_puts(&endpoint, ep, err);
    else st = llmops_buf_printf(&endpoint, err, "https://s3.%s.amazonaws.com", region);
    while (!st && endpoint.len && endpoint.data[endpoint.len - 1] == '/') endpoint.data[--endpoint.len] = '\0';
    /* host[:port] as curl sends it: the default port of the scheme is left out */
    const char *e = endpoint.data ? strstr(endpoint.data, "://") : NULL;
    if (!st && !e) st = llmops_error_set(err, LLMOPS_ERR_CONFIG, "S3 endpoint %s: expected http(s)://HOST[:PORT]", ep);
    int https = !st && !strncasecmp(endpoint.data, "https", 5);
    if (!st) {
        const char *hs = e + 3, *he = strchr(hs, '/');
        size_t hl = he ? (size_t)(he - hs) : strlen(hs);
        st = llmops_buf_append(&host, hs, hl, err);
        const char *colon = !st ? strrchr(host.data, ':') : NULL;
        if (colon && !strchr(colon, ']') && !strcmp(colon + 1, https ? "443" : "80")) {
            host.len = (size_t)(colon - host.data);
            host.data[host.len] = '\0';
        }
        if (!st && he) st = llmops_buf_puts(&path, he, err); /* an endpoint with a path prefix */
    }
    if (!st) st = llmops_buf_append(&path, "/", 1, err);
    if (!st) st = llmops_uri_encode(bucket, blen, 0, &path, err);
    if (!st) st = llmops_buf_append(&path, "/", 1, err);
    if (!st) st = llmops_uri_encode(key, strlen(key), 1, &path, err);
    if (!st) st = llmops_buf_append(&full, endpoint.data, (size_t)(e + 3 - endpoint.data), err);
    if (!st) st = llmops_buf_append(&full, host.data, host.len, err);
    if (!st) st = llmops_buf_puts(&full, path.data, err);

    char amz_date[17];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tmv);
    llmops_sigv4_header hs[4] = {{"host", host.data},
                                 {"x-amz-content-sha256", "UNSIGNED-PAYLOAD"},
                                 {"x-amz-date", amz_date},
                                 {"x-amz-security-token", tok}};
    llmops_sigv4_request req = {.method = "GET",
                                .path = path.data,
                                .query = "",
                                .headers = hs,
                                .n_headers = tok ? 4 : 3,
                                .payload_hash = "UNSIGNED-PAYLOAD",
                                .region = region,
                                .service = "s3",
                                .amz_date = amz_date,
                                .access_key = ak,
                                .secret_key = sk};
    if (!st) st = llmops_sigv4_sign(&req, NULL, NULL, &auth, NULL, err);
    struct curl_slist *hl = NULL;
    if (!st) {
        char line[8192];
        const char *vals[5][2] = {{"Host", host.data},
                                  {"x-amz-content-sha256", "UNSIGNED-PAYLOAD"},
                                  {"x-amz-date", amz_date},
                                  {"Authorization", auth.data},
                                  {"x-amz-security-token", tok}};
        for (int i = 0; i < (tok ? 5 : 4); i++) {
            snprintf(line, sizeof line, "%s: %s", vals[i][0], vals[i][1]);
            struct curl_slist *n = CU.slist_append(hl, line);
            if (!n) {
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
                break;
            }
            hl = n;
        }
    }
    if (!st) st = http_get(full.data, url, hl, p->timeout_s, 0, body, err);
    CU.slist_free_all(hl);
    llmops_buf_free(&endpoint);
    llmops_buf_free(&path);
    llmops_buf_free(&full);
    llmops_buf_free(&host);
    llmops_buf_free(&auth);
    return st;
}

static char *cache_path(const char *dir, const char *url) {
    char hex[65];
    llmops_sha256_hex(url, strlen(url), hex);
    hex[32] = '\0';
    const char *base = strrchr(url, '/');
    base = base ? base + 1 : url;
    size_t bl = strcspn(base, "?#");
    if (bl > 100) bl = 100;
    char name[160];
    snprintf(name, sizeof name, "%s-%.*s", hex, (int)bl, base);
    for (char *c = name; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '.' || *c == '-' || *c == '_')) *c = '_';
    return llmops_path_join(dir, name);
}

llmops_status llmops_fetch(const char *url, const llmops_fetch_params *p, char **data, size_t *len,
                           llmops_error *err) {
    llmops_fetch_params defaults;
    if (!p) {
        llmops_fetch_params_init(&defaults);
        p = &defaults;
    }
    *data = NULL;
    *len = 0;
    if (!llmops_fetch_is_url(url))
        return llmops_error_set(err, LLMOPS_ERR_CONFIG, "%s: not an http://, https:// or s3:// URL", url ? url : "(null)");
    size_t max = p->max_bytes ? p->max_bytes : FETCH_DEFAULT_MAX;
    char *cpath = NULL;
    if (p->cache_dir) {
        cpath = cache_path(p->cache_dir, url);
        if (!cpath) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        if (llmops_path_is_file(cpath)) {
            llmops_status st = llmops_file_read_all(cpath, max, data, len, err);
            if (!st) LLMOPS_DEBUG("%s: from cache %s", url, cpath);
            llmops_free(cpath);
            return st;
        }
    }
    llmops_status st = dynlib_load(&g_curl, &g_curl_desc, err); /* a cached file needs no libcurl */
    if (!st) pthread_once(&g_curl_once, curl_init_once);
    if (!st && g_curl_init != CURLE_OK)
        st = llmops_error_set(err, LLMOPS_ERR_INTERNAL, "libcurl/libsodium init failed");
    if (st) {
        llmops_free(cpath);
        return st;
    }
    llmops_buf body;
    llmops_buf_init(&body, max);
    if (!strncasecmp(url, "s3://", 5)) st = s3_get(url, p, &body, err);
    else st = http_get(url, url, NULL, p->timeout_s, 1, &body, err);
    if (!st && cpath) {
        st = llmops_mkdirs(p->cache_dir, err);
        if (!st) st = llmops_file_write_atomic(cpath, body.data ? body.data : "", body.len, err);
    }
    llmops_free(cpath);
    if (st) {
        llmops_buf_free(&body);
        return st;
    }
    if (!body.data) {
        *data = llmops_malloc(1);
        if (!*data) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        (*data)[0] = '\0';
        return LLMOPS_OK;
    }
    *data = llmops_buf_detach(&body, len);
    return LLMOPS_OK;
}
