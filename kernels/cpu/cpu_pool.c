/* The CPU backend's thread pool: persistent workers that split a range into one
 * contiguous piece per thread, plus per-thread scratch buffers that only grow.
 * The thread count comes from ops_cpu_set_threads(), else SUSHI_THREADS, else the
 * number of online cores. OpenBLAS stays single-threaded: the pool calls it from
 * each thread (cpu_ops.c), and its own idle workers would spin against ours. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "common/core/log.h"
#include "kernels/cpu/cpu_internal.h"

#define POOL_MAX CPU_MAX_THREADS
#define SCRATCH_SLOTS 4

struct pool_job {
    cpu_range_fn fn;
    void *ctx;
    size_t n;
    int parts;
};

static struct {
    pthread_mutex_t lock;       /* guards everything below */
    pthread_cond_t start, done;
    pthread_mutex_t dispatch;   /* one parallel_for at a time */
    pthread_t workers[POOL_MAX];
    int nworkers;               /* running workers (threads − 1) */
    int threads;                /* configured count; 0 = not yet read */
    unsigned long generation;   /* bumped per job */
    int pending;                /* workers still running the current job */
    int stop;
    struct pool_job job;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0, 0, 0, 0, {0}};

static unsigned long spawn_generation[POOL_MAX]; /* generation a worker was created in */
static _Thread_local int pool_inside;   /* set on workers and during a dispatch */

static float *scratch_ptr[POOL_MAX][SCRATCH_SLOTS];
static size_t scratch_len[POOL_MAX][SCRATCH_SLOTS];

static void run_part(const struct pool_job *j, int part) {
    size_t begin = j->n * (size_t)part / (size_t)j->parts;
    size_t end = j->n * (size_t)(part + 1) / (size_t)j->parts;
    if (begin < end) j->fn(j->ctx, begin, end, part);
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;   /* 1 .. nworkers */
    unsigned long seen = 0;
    pool_inside = 1;
    pthread_mutex_lock(&pool.lock);
    seen = spawn_generation[id];
    for (;;) {
        while (!pool.stop && pool.generation == seen) pthread_cond_wait(&pool.start, &pool.lock);
        if (pool.stop) break;
        seen = pool.generation;
        struct pool_job j = pool.job;
        pthread_mutex_unlock(&pool.lock);
        if (id < j.parts) run_part(&j, id);
        pthread_mutex_lock(&pool.lock);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static int default_threads(void) {
    const char *env = getenv("SUSHI_THREADS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end == '\0' && n >= 1 && n <= POOL_MAX) return (int)n;
        log_warn("SUSHI_THREADS=%s: not a count in [1, %d]; using the online cores", env, POOL_MAX);
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > POOL_MAX) n = POOL_MAX;
    return (int)n;
}

/* caller holds pool.lock */
static void stop_workers_locked(void) {
    if (pool.nworkers == 0) return;
    pool.stop = 1;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.nworkers; i++) pthread_join(pool.workers[i], NULL);
    pthread_mutex_lock(&pool.lock);
    pool.nworkers = 0;
    pool.stop = 0;
}

/* caller holds pool.lock; starts threads − 1 workers (fewer if creation fails) */
static void start_workers_locked(void) {
    if (pool.threads == 0) {
        pool.threads = default_threads();
        openblas_set_num_threads(1);
    }
    while (pool.nworkers < pool.threads - 1) {
        spawn_generation[pool.nworkers + 1] = pool.generation;
        if (pthread_create(&pool.workers[pool.nworkers], NULL, worker_main,
                           (void *)(intptr_t)(pool.nworkers + 1)) != 0) {
            log_warn("cpu: could not start a worker thread; running with %d", pool.nworkers + 1);
            pool.threads = pool.nworkers + 1;
            break;
        }
        pool.nworkers++;
    }
}

int cpu_pool_threads(void) {
    pthread_mutex_lock(&pool.lock);
    if (pool.threads == 0) {
        pool.threads = default_threads();
        openblas_set_num_threads(1);
    }
    int n = pool.threads;
    pthread_mutex_unlock(&pool.lock);
    return n;
}

void cpu_pool_set_threads(int n) {
    if (n < 1) n = default_threads();
    if (n > POOL_MAX) n = POOL_MAX;
    pthread_mutex_lock(&pool.dispatch);
    pthread_mutex_lock(&pool.lock);
    stop_workers_locked();
    pool.threads = n;
    openblas_set_num_threads(1);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.dispatch);
}

void cpu_parallel_for(size_t n, size_t min_per_thread, cpu_range_fn fn, void *ctx) {
    if (n == 0) return;
    if (min_per_thread == 0) min_per_thread = 1;
    int threads = cpu_pool_threads();
    size_t parts = n / min_per_thread;
    if (parts > (size_t)threads) parts = (size_t)threads;
    if (parts <= 1 || pool_inside) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&pool.dispatch);
    pthread_mutex_lock(&pool.lock);
    start_workers_locked();
    if (parts > (size_t)pool.threads) parts = (size_t)pool.threads;
    pool.job = (struct pool_job){fn, ctx, n, (int)parts};
    pool.pending = pool.nworkers;
    pool.generation++;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);

    pool_inside = 1;
    run_part(&pool.job, 0);
    pool_inside = 0;

    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.dispatch);
}

float *cpu_scratch(int thread, int slot, size_t floats) {
    if (thread < 0 || thread >= POOL_MAX || slot < 0 || slot >= SCRATCH_SLOTS) {
        sushi_error(SUSHI_EINVAL, "cpu: scratch thread %d slot %d out of range", thread, slot);
        return NULL;
    }
    if (floats > scratch_len[thread][slot]) {
        size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
        float *p = aligned_alloc(64, bytes);
        if (!p) {
            sushi_error(SUSHI_ENOMEM, "cpu: scratch of %zu bytes: out of memory", bytes);
            return NULL;
        }
        memset(p, 0, bytes);   /* callers may keep an all-zero invariant (cpu_loss.c) */
        free(scratch_ptr[thread][slot]);
        scratch_ptr[thread][slot] = p;
        scratch_len[thread][slot] = floats;
    }
    return scratch_ptr[thread][slot];
}
