/*
 * llmops/fetch.h — datasets from the network: http(s):// URLs and s3://bucket/key
 * objects (AWS S3, MinIO, LeoFS, s3rver), with AWS Signature Version 4.
 *
 *     llmops_fetch_params fp;
 *     llmops_fetch_params_init(&fp);            // env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 *     fp.s3_endpoint = "http://127.0.0.1:9000";  //      AWS_ENDPOINT_URL, AWS_REGION
 *     char *data; size_t len;
 *     if (llmops_fetch("s3://datasets/train.jsonl", &fp, &data, &len, &err)) die(err.msg);
 *     ...                                        // "s3://datasets/train.jsonl: HTTP 404 (NoSuchKey)"
 *     llmops_free(data);
 *
 * S3 requests use path-style URLs (ENDPOINT/BUCKET/KEY), which every
 * S3-compatible store accepts, and are signed here (not by libcurl) with
 * SigV4: x-amz-date, x-amz-content-sha256 (UNSIGNED-PAYLOAD for a GET) and
 * host are signed headers; AWS_SESSION_TOKEN adds x-amz-security-token.
 */
#ifndef LLMOPS_FETCH_H
#define LLMOPS_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llmops_fetch_params {
    /* NULL: downloads go to memory only. Otherwise each download is also kept as
     * CACHE_DIR/<first 16 bytes of sha256(url) in hex>-<last path segment>
     * and later fetches of the same URL read that file (no revalidation). */
    const char *cache_dir;
    size_t max_bytes;          /* cap on one download; default 1 GiB                    */
    long timeout_s;            /* whole transfer; default 600, 0 = none                 */
    /* S3. NULL fields fall back to the environment, then to the defaults. */
    const char *s3_endpoint;   /* $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else https://s3.REGION.amazonaws.com */
    const char *s3_region;     /* $AWS_REGION, $AWS_DEFAULT_REGION, else "us-east-1"     */
    const char *access_key;    /* $AWS_ACCESS_KEY_ID                                      */
    const char *secret_key;    /* $AWS_SECRET_ACCESS_KEY                                  */
    const char *session_token; /* $AWS_SESSION_TOKEN (may stay NULL)                      */
} llmops_fetch_params;

void llmops_fetch_params_init(llmops_fetch_params *p);

/* 1 when `s` starts with http://, https:// or s3:// (case-insensitive scheme). */
int llmops_fetch_is_url(const char *s);

/*
 * Downloads `url` (http://, https:// or s3://bucket/key) into a NUL-terminated
 * heap buffer *data (llmops_free) of *len bytes. Errors name the URL:
 *   LLMOPS_ERR_NOT_FOUND  HTTP 404 ("URL: HTTP 404 (NoSuchKey)");
 *   LLMOPS_ERR_IO         any other HTTP status >= 400, or a transport failure
 *                         (refused connection, DNS, TLS, timeout) with curl's text;
 *   LLMOPS_ERR_LIMIT      more than max_bytes;
 *   LLMOPS_ERR_CONFIG     s3:// without credentials, or a malformed URL.
 */
llmops_status llmops_fetch(const char *url, const llmops_fetch_params *p, char **data, size_t *len,
                           llmops_error *err);

/* ---- AWS Signature Version 4 ---------------------------------------------------- */

typedef struct llmops_sigv4_header {
    const char *name;  /* any case; signed lower-cased                          */
    const char *value; /* trimmed, inner runs of spaces collapsed when signed  */
} llmops_sigv4_header;

typedef struct llmops_sigv4_request {
    const char *method;       /* "GET"                                                      */
    const char *path;         /* canonical URI, already percent-encoded: "/bucket/my%20key" */
    const char *query;        /* raw query string, encoded ("b=2&a=1"), or NULL/""          */
    const llmops_sigv4_header *headers; /* every header to sign (host and x-amz-date included) */
    size_t n_headers;
    const char *payload_hash; /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"            */
    const char *region;       /* "us-east-1"                                                */
    const char *service;      /* "s3"                                                       */
    const char *amz_date;     /* "20150830T123600Z" (UTC): the value of x-amz-date           */
    const char *access_key;
    const char *secret_key;
} llmops_sigv4_request;

/*
 * Signs a request. Appends the Authorization header value
 * ("AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request,
 * SignedHeaders=..., Signature=...") to `authorization`; the canonical request
 * and the string to sign go to the other buffers when they are not NULL
 * (tests compare them with AWS's published examples). `signature` (may be
 * NULL) receives the 64 hex digits and a NUL.
 */
llmops_status llmops_sigv4_sign(const llmops_sigv4_request *r, llmops_buf *canonical, llmops_buf *string_to_sign,
                                llmops_buf *authorization, char signature[65], llmops_error *err);

/* Appends `s` percent-encoded as SigV4 requires (unreserved A-Z a-z 0-9 - . _ ~ kept;
 * '/' kept when keep_slash). */
llmops_status llmops_uri_encode(const char *s, size_t n, int keep_slash, llmops_buf *out, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
