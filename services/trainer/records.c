/* applied.tsv and losses.tsv (records.h). */
#include "services/trainer/records.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"

static int open_one(const char *path, int keep, long long bytes, FILE **out) {
    if (keep) {
        struct stat st;
        long long have = stat(path, &st) == 0 ? (long long)st.st_size : 0;
        if (bytes > have)
            return sushi_error(SUSHI_EFORMAT, "%s: %lld bytes, shorter than the checkpoint's %lld", path,
                               have, bytes);
        if (have > 0 && truncate(path, bytes) != 0)
            return sushi_error(SUSHI_EIO, "%s: truncate to %lld bytes: %s", path, bytes, strerror(errno));
    }
    FILE *f = fopen(path, keep ? "a" : "w");
    if (!f) return sushi_error(SUSHI_EIO, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return sushi_error(SUSHI_EIO, "%s: seek: %s", path, strerror(errno));
    }
    *out = f;
    return 0;
}

int records_open(struct records *r, const char *dir, int keep, long long applied_bytes,
                 long long losses_bytes) {
    if (!r || !dir) return sushi_error(SUSHI_EINVAL, "records_open: NULL argument");
    memset(r, 0, sizeof *r);
    int rc = fs_mkdir_p(dir, 0755);
    if (rc) return rc;
    if ((size_t)snprintf(r->applied_path, sizeof r->applied_path, "%s/applied.tsv", dir) >= sizeof r->applied_path ||
        (size_t)snprintf(r->losses_path, sizeof r->losses_path, "%s/losses.tsv", dir) >= sizeof r->losses_path)
        return sushi_error(SUSHI_EINVAL, "%s: path too long", dir);
    rc = open_one(r->applied_path, keep, applied_bytes, &r->applied);
    if (!rc) rc = open_one(r->losses_path, keep, losses_bytes, &r->losses);
    if (rc) records_close(r);
    return rc;
}

void records_close(struct records *r) {
    if (!r) return;
    if (r->applied) fclose(r->applied);
    if (r->losses) fclose(r->losses);
    r->applied = r->losses = NULL;
}

static int check_write(FILE *f, const char *path) {
    if (ferror(f) || fflush(f) != 0) return sushi_error(SUSHI_EIO, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

int records_applied(struct records *r, int step, uint64_t batch_id, const uint64_t *sample_ids, int n) {
    fprintf(r->applied, "%d\t%" PRIu64 "\t", step, batch_id);
    for (int i = 0; i < n; i++) fprintf(r->applied, i ? ",%" PRIu64 : "%" PRIu64, sample_ids[i]);
    fputc('\n', r->applied);
    return check_write(r->applied, r->applied_path);
}

int records_loss(struct records *r, int step, float loss) {
    fprintf(r->losses, "%d\t%.9g\n", step, loss);
    return check_write(r->losses, r->losses_path);
}

static int sync_one(FILE *f, const char *path, long long *bytes) {
    int rc = check_write(f, path);
    if (rc) return rc;
    if (fsync(fileno(f)) != 0) return sushi_error(SUSHI_EIO, "%s: fsync: %s", path, strerror(errno));
    long pos = ftell(f);
    if (pos < 0) return sushi_error(SUSHI_EIO, "%s: ftell: %s", path, strerror(errno));
    *bytes = pos;
    return 0;
}

int records_sync(struct records *r, long long *applied_bytes, long long *losses_bytes) {
    int rc = sync_one(r->applied, r->applied_path, applied_bytes);
    if (!rc) rc = sync_one(r->losses, r->losses_path, losses_bytes);
    return rc;
}
