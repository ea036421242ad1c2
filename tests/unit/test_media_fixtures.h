/* Helpers shared by the media unit tests: the fixture folder made by
 * scripts/gen-media-fixtures.sh ($BUILD/media-fixtures, generated on first use) and
 * the reference tensors tests/oracle/media_ref.py wrote into its ref/ folder. A test
 * skips when the fixture tools (ffmpeg, espeak-ng, PIL, soundfile, PyAV) are absent. */
#ifndef TEST_MEDIA_FIXTURES_H
#define TEST_MEDIA_FIXTURES_H

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char mfx_dir[1024];     /* fixtures; "" when they could not be made */
static int mfx_have_ref;

static const char *mfx_root(void)
{
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r && *r ? r : ".";
}

/* argv0 = $BUILD/tests/test_x: fixtures go to $BUILD/media-fixtures */
static void mfx_setup(const char *argv0)
{
    char self[PATH_MAX], real[PATH_MAX], cmd[3000];
    snprintf(self, sizeof self, "%s", argv0);
    if (!realpath(dirname(self), real)) return;
    snprintf(mfx_dir, sizeof mfx_dir, "%.900s/../media-fixtures", real);
    snprintf(cmd, sizeof cmd, "bash %s/scripts/gen-media-fixtures.sh %s >&2", mfx_root(), mfx_dir);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "media fixtures unavailable (gen-media-fixtures.sh exit %d)\n",
                WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
        mfx_dir[0] = 0;
        return;
    }
    snprintf(cmd, sizeof cmd, "%s/ref/index.txt", mfx_dir);
    mfx_have_ref = access(cmd, R_OK) == 0;
}

static const char *mfx(const char *name)
{
    static _Thread_local char buf[8][1400];   /* callable from test threads */
    static _Thread_local int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%.300s", mfx_dir, name);
    return buf[k];
}

#define MFX_REQUIRE_REF()                                                   \
    do {                                                                    \
        if (!mfx_dir[0] || !mfx_have_ref) {                                 \
            printf("no media fixtures or references: skipped\n");          \
            skip();                                                         \
        }                                                                   \
    } while (0)
#define MFX_REQUIRE()                                                       \
    do {                                                                    \
        if (!mfx_dir[0]) {                                                  \
            printf("no media fixtures: skipped\n");                        \
            skip();                                                         \
        }                                                                   \
    } while (0)

/* Reads reference NAME: checks its dtype ("u8", "f32", "f64"), returns the data
 * (malloc'd) and its element count; dims[] gets up to 4 dimensions, *ndim their count. */
__attribute__((unused)) static void *mfx_ref(const char *name, const char *dtype, long *dims, int *ndim, size_t *count)
{
    char path[1400], line[512];
    snprintf(path, sizeof path, "%s/ref/index.txt", mfx_dir);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char n[256], t[8];
        int off;
        if (sscanf(line, "%255s %7s%n", n, t, &off) != 2 || strcmp(n, name)) continue;
        if (strcmp(t, dtype)) break;
        char *p = line + off, *end;
        *ndim = 0;
        *count = 1;
        for (long v; (v = strtol(p, &end, 10)), end != p && *ndim < 4; p = end) {
            dims[(*ndim)++] = v;
            *count *= (size_t)v;
        }
        found = 1;
        break;
    }
    fclose(f);
    if (!found) return NULL;
    size_t es = !strcmp(dtype, "u8") ? 1 : !strcmp(dtype, "f32") ? 4 : 8;
    snprintf(path, sizeof path, "%s/ref/%.300s.raw", mfx_dir, name);
    f = fopen(path, "rb");
    if (!f) return NULL;
    void *data = malloc(*count * es + 1);
    size_t got = data ? fread(data, es, *count, f) : 0;
    fclose(f);
    if (got != *count) {
        free(data);
        return NULL;
    }
    return data;
}

#endif
