// libs: media core
/* Media decoding throughput on one core against the Python libraries a user would
 * pick (bench/bench_media.py, run in the same command with $SUSHI_PYTHON or
 * /usr/bin/python3): PNG and JPEG decode (+ resize 640x480 -> 224x224 bilinear) vs
 * PIL in images/s, audio decode vs soundfile in seconds of audio per second, video
 * decode + RGB conversion of every frame vs PyAV in frames/s; log-mel (80 bins) in
 * seconds of audio per second, without a Python counterpart. Ratio = sushi / Python.
 *   build/bench/bench_media [--seconds S]   (fixtures: scripts/gen-media-fixtures.sh) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/log.h"
#include "common/media/media.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static char g_fix[1024];
static double g_min_s = 1.0;

enum job { IMG_DECODE, IMG_RESIZE, AUDIO, VIDEO, MEL };

/* one unit of work; returns the units it produced (images, seconds, frames) or < 0 */
static double work(enum job j, const char *path)
{
    double units = -1;
    if (j == IMG_DECODE || j == IMG_RESIZE) {
        struct media_image img, out;
        if (media_image_load(path, &img, NULL)) return -1;
        units = 1;
        if (j == IMG_RESIZE) {
            if (media_image_resize(&img, 224, 224, MEDIA_BILINEAR, &out)) units = -1;
            media_image_free(&out);
        }
        media_image_free(&img);
    } else if (j == AUDIO || j == MEL) {
        struct media_audio a;
        if (media_audio_load(path, 0, &a, NULL)) return -1;
        units = (double)a.n / a.rate;
        if (j == MEL) {
            struct media_mel m;
            struct media_mel_opts o;
            media_mel_defaults(&o);
            o.rate = a.rate;
            if (media_mel_compute(&a, &o, &m)) units = -1;
            media_mel_free(&m);
        }
        media_audio_free(&a);
    } else {
        struct media_video_opts o;
        media_video_defaults(&o);
        o.frames = 50;   /* every frame of the 2 s, 25 fps clip; the MKV has 30 */
        if (strstr(path, ".mkv")) o.frames = 30;
        struct media_video v;
        if (media_video_load(path, &o, &v, NULL)) return -1;
        units = v.n;
        media_video_free(&v);
    }
    return units;
}

static double rate_of(enum job j, const char *name)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", g_fix, name);
    if (work(j, path) < 0) {
        fprintf(stderr, "bench_media: %s\n", sushi_last_error());
        return -1;
    }
    double units = 0, t0 = now_s();
    int reps = 0;
    while (reps < 3 || now_s() - t0 < g_min_s) {
        units += work(j, path);
        reps++;
    }
    return units / (now_s() - t0);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) g_min_s = atof(argv[++i]);
        else {
            printf("usage: %s [--seconds S]\n  media decode throughput on one core vs PIL, soundfile, PyAV\n",
                   argv[0]);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    const char *root = getenv("SUSHI_REPO_ROOT");
    if (!root || !*root) root = ".";
    const char *build = getenv("BUILD");
    snprintf(g_fix, sizeof g_fix, "%s/%s/media-fixtures", root, build && *build ? build : "build");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "bash %s/scripts/gen-media-fixtures.sh %s >&2", root, g_fix);
    if (system(cmd) != 0) {
        printf("bench_media: no fixtures (ffmpeg, espeak-ng, PIL missing?): skipped\n");
        return 0;
    }
    struct {
        const char *label, *file, *py, *unit;
        enum job job;
    } rows[] = {
        {"PNG decode", "rgb.png", "decode_rgb.png", "img/s", IMG_DECODE},
        {"PNG decode + resize 224", "rgb.png", "decode_resize_rgb.png", "img/s", IMG_RESIZE},
        {"JPEG decode", "rgb.jpg", "decode_rgb.jpg", "img/s", IMG_DECODE},
        {"JPEG decode + resize 224", "rgb.jpg", "decode_resize_rgb.jpg", "img/s", IMG_RESIZE},
        {"WAV decode", "speech16k.wav", "audio_speech16k.wav", "s/s", AUDIO},
        {"FLAC decode", "tone16k.flac", "audio_tone16k.flac", "s/s", AUDIO},
        {"OGG decode", "tone.ogg", "audio_tone.ogg", "s/s", AUDIO},
        {"WAV decode + log-mel 80", "speech16k.wav", NULL, "s/s", MEL},
        {"H.264 MP4 decode + RGB", "testsrc.mp4", "video_testsrc.mp4", "frames/s", VIDEO},
        {"MPEG-4 MKV decode + RGB", "testsrc.mkv", "video_testsrc.mkv", "frames/s", VIDEO},
    };
    int nrows = sizeof rows / sizeof *rows;
    double py[16];
    for (int i = 0; i < nrows; i++) py[i] = -1;
    const char *python = getenv("SUSHI_PYTHON");
    snprintf(cmd, sizeof cmd, "%s %s/bench/bench_media.py %s %g", python && *python ? python : "/usr/bin/python3",
             root, g_fix, g_min_s);
    FILE *p = popen(cmd, "r");
    char line[512];
    while (p && fgets(line, sizeof line, p)) {
        char name[256];
        double v;
        if (sscanf(line, "%255s %lf", name, &v) != 2) continue;
        for (int i = 0; i < nrows; i++)
            if (rows[i].py && !strcmp(rows[i].py, name)) py[i] = v;
    }
    if (p) pclose(p);
    printf("%-26s %12s %12s %8s   (one core; Python: PIL, soundfile, PyAV)\n", "media", "sushi", "python", "ratio");
    for (int i = 0; i < nrows; i++) {
        double r = rate_of(rows[i].job, rows[i].file);
        char pys[32] = "-", ratio[32] = "-";
        if (py[i] > 0) {
            snprintf(pys, sizeof pys, "%.1f", py[i]);
            if (r > 0) snprintf(ratio, sizeof ratio, "%.2fx", r / py[i]);
        }
        printf("%-26s %12.1f %12s %8s   %s\n", rows[i].label, r, pys, ratio, rows[i].unit);
    }
    return 0;
}
