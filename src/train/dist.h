/*
 * Data-parallel processes: when the program was started by mpirun (Open MPI's
 * or a PMI launcher's environment is present) MPI is initialised and ranks
 * exchange gradients and sums; otherwise everything is a single process and
 * these calls are no-ops.
 */
#ifndef LLMOPS_TRAIN_DIST_H
#define LLMOPS_TRAIN_DIST_H

#include <stddef.h>

#include "llmops/status.h"

typedef struct {
    int rank, world;
    int mpi;         /* 1: MPI initialised by us */
} dist_ctx;

/* Initialises MPI when launched by mpirun; fills rank/world (0/1 otherwise). */
llmops_status dist_init(dist_ctx *d, llmops_error *err);
void dist_finalize(dist_ctx *d);
/* In-place sums over every rank. */
llmops_status dist_sum_floats(dist_ctx *d, float *x, size_t n, llmops_error *err);
llmops_status dist_sum_doubles(dist_ctx *d, double *x, size_t n, llmops_error *err);
/* Rank 0's status becomes everyone's: returns 1 when any rank reports failure. */
int dist_any(dist_ctx *d, int flag);
void dist_barrier(dist_ctx *d);
/* Ends every rank when one fails (MPI_Abort), so no rank waits forever in a collective. */
void dist_abort(dist_ctx *d, int code);

#endif
