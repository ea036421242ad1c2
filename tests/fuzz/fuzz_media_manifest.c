/* libFuzzer target for the JSONL manifest reader (tests/fuzz/media.mk): the input is a
 * manifest; every record must have a path and text, and records + skipped lines may
 * not exceed the line count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/log.h"
#include "common/media/media.h"
#include "fuzz_media_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) { log_set_level(LOG_QUIET); quiet = 1; }
    const char *path = fuzz_media_file(data, size, ".jsonl");
    struct media_manifest m;
    int rc = media_manifest_read(path, &m);
    unlink(path);
    if (rc) abort();
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    if (m.n + m.skipped > lines) abort();
    for (size_t i = 0; i < m.n; i++)
        if (!m.records[i].path || !m.records[i].path[0] || !m.records[i].text || m.records[i].line < 1 ||
            (unsigned)m.records[i].kind >= MEDIA_NKINDS)
            abort();
    media_manifest_free(&m);
    return 0;
}
