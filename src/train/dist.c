/* Data-parallel collectives over Open MPI (see dist.h). */
#include "train/dist.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

llmops_status dist_init(dist_ctx *d, llmops_error *err) {
    d->rank = 0;
    d->world = 1;
    d->mpi = 0;
    if (!launched_by_mpirun()) return LLMOPS_OK;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return llmops_error_set(err, LLMOPS_ERR_IO, "MPI_Init failed (started by mpirun, but MPI could not start)");
    d->mpi = !inited;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    return LLMOPS_OK;
}

void dist_finalize(dist_ctx *d) {
    if (d->mpi) MPI_Finalize();
    d->mpi = 0;
}

static llmops_status sum(dist_ctx *d, void *x, size_t n, size_t elt, MPI_Datatype t, llmops_error *err) {
    if (d->world <= 1) return LLMOPS_OK;
    const size_t chunk = (size_t)1 << 24;
    for (size_t i = 0; i < n; i += chunk) {
        int c = (int)(n - i < chunk ? n - i : chunk);
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)x + i * elt, c, t, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return llmops_error_set(err, LLMOPS_ERR_IO, "MPI_Allreduce failed");
    }
    return LLMOPS_OK;
}

llmops_status dist_sum_floats(dist_ctx *d, float *x, size_t n, llmops_error *err) {
    return sum(d, x, n, sizeof(float), MPI_FLOAT, err);
}

llmops_status dist_sum_doubles(dist_ctx *d, double *x, size_t n, llmops_error *err) {
    return sum(d, x, n, sizeof(double), MPI_DOUBLE, err);
}

int dist_any(dist_ctx *d, int flag) {
    if (d->world <= 1) return flag != 0;
    int in = flag != 0, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

void dist_barrier(dist_ctx *d) {
    if (d->world > 1) MPI_Barrier(MPI_COMM_WORLD);
}

void dist_abort(dist_ctx *d, int code) {
    if (d->world > 1) MPI_Abort(MPI_COMM_WORLD, code);
}
