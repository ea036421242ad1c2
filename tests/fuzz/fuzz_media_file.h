/* For the media fuzz targets whose decoders read files (libsndfile, libavformat,
 * assimp): writes the input to a per-process file under /dev/shm (or /tmp) with the
 * given extension and returns its path. */
#ifndef FUZZ_MEDIA_FILE_H
#define FUZZ_MEDIA_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *fuzz_media_file(const uint8_t *data, size_t size, const char *ext)
{
    static char path[256];
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/sushi-fuzz-media-%d%s", dir, (int)getpid(), ext);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f)) abort();
    return path;
}

#endif
