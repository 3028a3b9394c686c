/*
 * Data-parallel collectives over MPI (see dist.h). libmpi is opened only when
 * the process was started by mpirun (see base/dynlib.h): a single process
 * never maps it. mpi.h gives the types; the functions, and with Open MPI the
 * predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ... are addresses of
 * its global objects), come from the library, opened with RTLD_GLOBAL since
 * Open MPI's own components resolve their symbols against it.
 */
#include "train/dist.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "base/dynlib.h"

enum { F_INITIALIZED, F_INIT, F_COMM_RANK, F_COMM_SIZE, F_FINALIZE, F_ALLREDUCE, F_BARRIER, F_ABORT, F_N };

static dynlib g_mpi = DYNLIB_INIT;
static const dynlib_desc g_mpi_desc = {"LLMOPS_MPI_LIB",
#ifdef OPEN_MPI
                                       {"libmpi.so.40", "libmpi.so", NULL},
#else
                                       {"libmpi.so.12", "libmpi.so", NULL},
#endif
                                       "libmpi",
                                       "training across the ranks that mpirun started",
#ifdef OPEN_MPI
                                       "libopenmpi3",
#else
                                       "libmpich12",
#endif
                                       1,
                                       {"MPI_Initialized", "MPI_Init", "MPI_Comm_rank", "MPI_Comm_size", "MPI_Finalize",
                                        "MPI_Allreduce", "MPI_Barrier", "MPI_Abort",
#ifdef OPEN_MPI
                                        "ompi_mpi_comm_world", "ompi_mpi_float", "ompi_mpi_double", "ompi_mpi_int",
                                        "ompi_mpi_op_sum", "ompi_mpi_op_max",
#endif
                                        NULL}};

static struct {
    int (*initialized)(int *);
    int (*init)(int *, char ***);
    int (*comm_rank)(MPI_Comm, int *);
    int (*comm_size)(MPI_Comm, int *);
    int (*finalize)(void);
    int (*allreduce)(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm);
    int (*barrier)(MPI_Comm);
    int (*abort)(MPI_Comm, int);
    MPI_Comm world;
    MPI_Datatype t_float, t_double, t_int;
    MPI_Op op_sum, op_max;
} M;

static llmops_status mpi_load(llmops_error *err) {
    llmops_status st = dynlib_load(&g_mpi, &g_mpi_desc, err);
    if (st) return st;
    void *const *f = g_mpi.sym;
    M.initialized = (int (*)(int *))f[F_INITIALIZED];
    M.init = (int (*)(int *, char ***))f[F_INIT];
    M.comm_rank = (int (*)(MPI_Comm, int *))f[F_COMM_RANK];
    M.comm_size = (int (*)(MPI_Comm, int *))f[F_COMM_SIZE];
    M.finalize = (int (*)(void))f[F_FINALIZE];
    M.allreduce = (int (*)(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm))f[F_ALLREDUCE];
    M.barrier = (int (*)(MPI_Comm))f[F_BARRIER];
    M.abort = (int (*)(MPI_Comm, int))f[F_ABORT];
#ifdef OPEN_MPI
    M.world = (MPI_Comm)f[F_N];
    M.t_float = (MPI_Datatype)f[F_N + 1];
    M.t_double = (MPI_Datatype)f[F_N + 2];
    M.t_int = (MPI_Datatype)f[F_N + 3];
    M.op_sum = (MPI_Op)f[F_N + 4];
    M.op_max = (MPI_Op)f[F_N + 5];
#else /* MPICH and its ABI: the handles are constants */
    M.world = MPI_COMM_WORLD;
    M.t_float = MPI_FLOAT;
    M.t_double = MPI_DOUBLE;
    M.t_int = MPI_INT;
    M.op_sum = MPI_SUM;
    M.op_max = MPI_MAX;
#endif
    return LLMOPS_OK;
}

static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

llmops_status dist_init(dist_ctx *d, llmops_error *err) {
    d->rank = 0;
    d->world = 1;
    d->mpi = 0;
    if (!launched_by_mpirun()) return LLMOPS_OK;
    llmops_status st = mpi_load(err);
    if (st) return st;
    int inited = 0;
    M.initialized(&inited);
    if (!inited && M.init(NULL, NULL) != MPI_SUCCESS)
        return llmops_error_set(err, LLMOPS_ERR_IO, "MPI_Init failed (started by mpirun, but MPI could not start)");
    d->mpi = !inited;
    M.comm_rank(M.world, &d->rank);
    M.comm_size(M.world, &d->world);
    return LLMOPS_OK;
}

void dist_finalize(dist_ctx *d) {
    if (d->mpi) M.finalize();
    d->mpi = 0;
}

static llmops_status sum(dist_ctx *d, void *x, size_t n, size_t elt, MPI_Datatype t, llmops_error *err) {
    if (d->world <= 1) return LLMOPS_OK;
    const size_t chunk = (size_t)1 << 24;
    for (size_t i = 0; i < n; i += chunk) {
        int c = (int)(n - i < chunk ? n - i : chunk);
        if (M.allreduce(MPI_IN_PLACE, (char *)x + i * elt, c, t, M.op_sum, M.world) != MPI_SUCCESS)
            return llmops_error_set(err, LLMOPS_ERR_IO, "MPI_Allreduce failed");
    }
    return LLMOPS_OK;
}

llmops_status dist_sum_floats(dist_ctx *d, float *x, size_t n, llmops_error *err) {
    return sum(d, x, n, sizeof(float), M.t_float, err);
}

llmops_status dist_sum_doubles(dist_ctx *d, double *x, size_t n, llmops_error *err) {
    return sum(d, x, n, sizeof(double), M.t_double, err);
}

int dist_any(dist_ctx *d, int flag) {
    if (d->world <= 1) return flag != 0;
    int in = flag != 0, out = 0;
    M.allreduce(&in, &out, 1, M.t_int, M.op_max, M.world);
    return out;
}

void dist_barrier(dist_ctx *d) {
    if (d->world > 1) M.barrier(M.world);
}

void dist_abort(dist_ctx *d, int code) {
    if (d->world > 1) M.abort(M.world, code);
}
