/*
 * Crash safety: a child process writes to the database as fast as it can
 * (adds, upserts, deletes, index saves) and is killed with SIGKILL at a random
 * moment, over and over. Before each operation the child tells the parent
 * through a pipe what it is about to do ("I ...") and after LLMOPS_OK that it
 * is done ("K"). After every kill the database must pass PRAGMA
 * integrity_check, open, hold every acknowledged write (and none of the
 * acknowledged deletes), and answer queries that agree with its rows. The one
 * operation in flight when the child died may or may not have happened; the
 * parent learns which from the database.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../unit/test.h"
#include "llmops/vectordb.h"

#define CDIM 16
#define MAXIDS 40000

typedef struct known {
    char id[24];
    int state; /* 1 present, 2 deleted */
    int ver;   /* embedding[0] of the acknowledged version */
} known;

static known g_ids[MAXIDS];
static size_t g_nids;
static uint64_t g_seed = 0x9e3779b97f4a7c15ULL;

static uint64_t crand(void) {
    g_seed ^= g_seed << 13;
    g_seed ^= g_seed >> 7;
    g_seed ^= g_seed << 17;
    return g_seed;
}

static void vec_of(const char *id, int ver, float *v) {
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    v[0] = (float)ver;
    for (int k = 1; k < CDIM; k++) v[k] = (float)sin((double)(h % 100003) * 0.001 * k + k);
}

/* id -> g_ids index + 1, open addressing */
#define HSLOTS (1 << 17)
static int g_hash[HSLOTS];

static size_t slot_of(const char *id) {
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    size_t s = (size_t)(h & (HSLOTS - 1));
    while (g_hash[s] && strcmp(g_ids[g_hash[s] - 1].id, id)) s = (s + 1) & (HSLOTS - 1);
    return s;
}

static known *lookup(const char *id) {
    size_t s = slot_of(id);
    return g_hash[s] ? &g_ids[g_hash[s] - 1] : NULL;
}

/* A new entry for id (which must not be known yet); NULL when full. */
static known *remember(const char *id) {
    if (g_nids >= MAXIDS) return NULL;
    known *k = &g_ids[g_nids];
    size_t n = strlen(id);
    if (n >= sizeof k->id) n = sizeof k->id - 1;
    memcpy(k->id, id, n);
    k->id[n] = '\0';
    g_hash[slot_of(id)] = (int)++g_nids;
    return k;
}

static void say(int fd, const char *s) {
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(3);
        s += w;
        n -= (size_t)w;
    }
}

/* The writer: runs until killed. */
static void child(const char *dir, int round, int fd) {
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    if (llmops_vdb_open(dir, NULL, &db, &err)) _exit(4);
    llmops_vdb_collection *c = NULL;
    if (llmops_vdb_get_collection(db, "crash", &c, &err)) _exit(5);
    int seq = 0;
    char line[4096];
    for (;;) {
        unsigned op = (unsigned)(crand() % 100);
        size_t n = 1 + crand() % 6, o = 0;
        llmops_vdb_record recs[8];
        char ids[8][24];
        const char *idp[8];
        float vecs[8][CDIM];
        int vers[8];
        known *ks[8];
        char kind = op < 60 ? 'A' : op < 80 ? 'U' : op < 95 ? 'D' : 'F';
        if (kind == 'U' || kind == 'D') {
            /* existing ids, distinct */
            size_t m = 0;
            for (size_t tries = 0; m < n && tries < 50 && g_nids; tries++) {
                known *k = &g_ids[crand() % g_nids];
                int dup = k->state != 1;
                for (size_t j = 0; j < m; j++) dup |= ks[j] == k;
                if (!dup) ks[m++] = k;
            }
            n = m;
            if (!n) continue;
        }
        o = (size_t)snprintf(line, sizeof line, "I %c", kind);
        for (size_t i = 0; kind != 'F' && i < n; i++) {
            if (kind == 'A') {
                snprintf(ids[i], sizeof ids[i], "c%d_%d", round, seq++);
                vers[i] = 0;
            } else {
                snprintf(ids[i], sizeof ids[i], "%s", ks[i]->id);
                vers[i] = kind == 'U' ? ks[i]->ver + 1 : 0;
            }
            idp[i] = ids[i];
            vec_of(ids[i], vers[i], vecs[i]);
            recs[i] = (llmops_vdb_record){ids[i], vecs[i], "crash test document", NULL, 0};
            o += (size_t)snprintf(line + o, sizeof line - o, " %s:%d", ids[i], vers[i]);
        }
        snprintf(line + o, sizeof line - o, "\n");
        say(fd, line);
        llmops_status st = LLMOPS_OK;
        if (kind == 'A') st = llmops_vdb_add(c, recs, n, &err);
        else if (kind == 'U') st = llmops_vdb_upsert(c, recs, n, &err);
        else if (kind == 'D') st = llmops_vdb_delete(c, idp, n, NULL, NULL, NULL, &err);
        else st = llmops_vdb_flush(db, &err);
        if (st) {
            say(fd, "E\n");
            continue;
        }
        say(fd, "K\n");
        /* the child's own view, for choosing its next operations */
        for (size_t i = 0; kind != 'F' && i < n; i++) {
            if (kind == 'A') {
                known *k = remember(ids[i]);
                if (k) {
                    k->state = 1;
                    k->ver = 0;
                }
            } else if (kind != 'A') {
                ks[i]->state = kind == 'U' ? 1 : 2;
                ks[i]->ver = vers[i];
            }
        }
    }
}

/* Applies the child's log; returns the number of operations acknowledged, and fills the in-flight ids. */
static size_t apply_log(char *log, char inflight[][24], size_t *n_inflight) {
    size_t acked = 0;
    char *pending = NULL;
    *n_inflight = 0;
    for (char *save = NULL, *l = strtok_r(log, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == 'I') {
            pending = l;
            continue;
        }
        if (l[0] == 'E') {
            pending = NULL;
            continue;
        }
        if (l[0] != 'K' || !pending) continue;
        acked++;
        char kind = pending[2];
        char *save2 = NULL;
        for (char *tok = strtok_r(pending + 3, " ", &save2); tok; tok = strtok_r(NULL, " ", &save2)) {
            char *colon = strchr(tok, ':');
            if (!colon) continue;
            *colon = '\0';
            int ver = atoi(colon + 1);
            known *k = lookup(tok);
            if (!k) k = remember(tok);
            if (!k) continue;
            k->state = kind == 'D' ? 2 : 1;
            k->ver = ver;
        }
        pending = NULL;
    }
    if (pending) { /* died during this one */
        char *save2 = NULL;
        for (char *tok = strtok_r(pending + 4, " ", &save2); tok && *n_inflight < 8; tok = strtok_r(NULL, " ", &save2)) {
            char *colon = strchr(tok, ':');
            if (colon) *colon = '\0';
            snprintf(inflight[(*n_inflight)++], 24, "%s", tok);
        }
    }
    return acked;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

TEST(vdb_crash_sigkill_keeps_acknowledged_writes) {
    const char *dir = test_tmpfile("db");
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    CHECK_OK(llmops_vdb_open(dir, NULL, &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, CDIM);
    llmops_vdb_collection *c = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "crash", &cfg, NULL, 0, &c, &err), err);
    llmops_vdb_close(db);
    char file[4200];
    snprintf(file, sizeof file, "%s/vdb.sqlite3", dir);
    g_seed ^= (uint64_t)time(NULL);
    size_t kills = 0, acked_total = 0, inflight_total = 0;
    static char log[1 << 20];
    double t0 = now_s();
    for (int round = 0; round < 400 && (kills < 120 || now_s() - t0 < 3); round++) {
        if (kills >= 100 && now_s() - t0 > 20) break;
        int fds[2];
        CHECK(pipe(fds) == 0);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child(dir, round, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        /* kill at a random point: early (often during open or the first write) to tens of ms in */
        usleep((useconds_t)(2000 + crand() % 60000));
        kill(pid, SIGKILL);
        size_t len = 0;
        for (;;) {
            ssize_t r = read(fds[0], log + len, sizeof log - 1 - len);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            len += (size_t)r;
        }
        log[len] = '\0';
        close(fds[0]);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the writer exited by itself (status %d)",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        kills++;
        char inflight[16][24];
        size_t n_inflight = 0;
        acked_total += apply_log(log, inflight, &n_inflight);
        inflight_total += n_inflight;

        /* 1. the file is sound */
        sqlite3 *raw = NULL;
        CHECK(sqlite3_open_v2(file, &raw, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
        sqlite3_stmt *st = NULL;
        CHECK(sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        CHECK_MSG(!strcmp((const char *)sqlite3_column_text(st, 0), "ok"), "round %d: integrity_check: %s", round,
                  sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(raw);

        /* 2. it opens, and holds exactly what was acknowledged */
        CHECK_OK(llmops_vdb_open(dir, NULL, &db, &err), err);
        CHECK_OK(llmops_vdb_get_collection(db, "crash", &c, &err), err);
        llmops_vdb_get_opts g;
        llmops_vdb_get_opts_init(&g);
        g.include = LLMOPS_VDB_INC_EMBEDDINGS;
        llmops_vdb_result *r = NULL;
        CHECK_OK(llmops_vdb_get(c, &g, &r, &err), err);
        size_t present = 0;
        /* ids added by the operation in flight that the parent never heard of are adopted */
        for (size_t j = 0; j < r->n_hits[0]; j++)
            if (!lookup(r->hits[0][j].id)) {
                known *k = remember(r->hits[0][j].id);
                CHECK(k != NULL);
                k->state = 2; /* settled below as uncertain */
                if (n_inflight < 16) snprintf(inflight[n_inflight++], 24, "%s", k->id);
            }
        static const llmops_vdb_hit *by_index[MAXIDS];
        memset(by_index, 0, sizeof by_index);
        for (size_t j = 0; j < r->n_hits[0]; j++) by_index[lookup(r->hits[0][j].id) - g_ids] = &r->hits[0][j];
        for (size_t i = 0; i < g_nids; i++) {
            known *k = &g_ids[i];
            const llmops_vdb_hit *h = by_index[i];
            int uncertain = 0;
            for (size_t j = 0; j < n_inflight; j++) uncertain |= !strcmp(inflight[j], k->id);
            if (uncertain) { /* adopt what the database says */
                k->state = h ? 1 : 2;
                if (h) k->ver = (int)h->embedding[0];
            }
            if (k->state == 1) {
                CHECK_MSG(h != NULL, "round %d: acknowledged id %s is missing", round, k->id);
                float v[CDIM];
                vec_of(k->id, k->ver, v);
                CHECK_MSG(memcmp(v, h->embedding, sizeof v) == 0, "round %d: %s holds version %g, acknowledged %d", round,
                          k->id, (double)h->embedding[0], k->ver);
                present++;
            } else {
                CHECK_MSG(h == NULL, "round %d: acknowledged delete of %s is undone", round, k->id);
            }
        }
        CHECK_EQ_INT(r->n_hits[0], present);

        /* 3. the index agrees with the rows: a present record is found by its own vector */
        if (present) {
            known *k = NULL;
            while (!k || k->state != 1) k = &g_ids[crand() % g_nids];
            float v[CDIM];
            vec_of(k->id, k->ver, v);
            llmops_vdb_query_opts q;
            llmops_vdb_query_opts_init(&q);
            q.queries = v;
            q.n_queries = 1;
            q.k = 5;
            llmops_vdb_result *qr = NULL;
            CHECK_OK(llmops_vdb_query(c, &q, &qr, &err), err);
            CHECK_EQ_INT(qr->n_hits[0], present < 5 ? present : 5);
            CHECK_MSG(qr->hits[0][0].distance == 0.0f, "round %d: nearest to %s is %s at %g", round, k->id,
                      qr->hits[0][0].id, (double)qr->hits[0][0].distance);
            llmops_vdb_result_free(qr);
        }
        llmops_vdb_result_free(r);
        llmops_vdb_close(db); /* saves the index: later children start from a file */
    }
    printf("    %zu kills in %.1f s, %zu acknowledged writes, %zu in flight at the kill, %zu ids\n", kills,
           now_s() - t0, acked_total, inflight_total, g_nids);
    CHECK_MSG(kills >= 100, "only %zu kills", kills);
    CHECK_MSG(acked_total >= 100, "only %zu acknowledged writes", acked_total);
}
