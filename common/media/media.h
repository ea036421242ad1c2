/* Media decoders for the multimodal student: images (PNG, JPEG), audio (WAV, FLAC,
 * OGG), video (anything libavformat opens) and meshes (OBJ, PLY, STL, glTF), turned
 * into the tensors the student's modality encoders take, plus the JSONL manifests that
 * pair a media file with its text.
 *
 * Libraries: libpng (8-bit non-interlaced PNGs inflate through libdeflate), libjpeg-turbo,
 * libswscale (resize, video RGB), libsndfile + libswresample (audio), av_tx (FFT),
 * libavformat + libavcodec (video), assimp (meshes).
 *
 * Conventions (SPEC §4 "Multimodal student"):
 *   image  u8 [H, W, 3] RGB, decoded exactly as PIL's Image.open(f).convert("RGB");
 *          resized with PIL's filters (bilinear, bicubic: antialiased when shrinking)
 *   audio  mono f32 at the target rate (channels averaged), resampled by libswresample
 *   mel    f32 [n_mels, n_frames] log10(max(mel, 1e-10)) of the power spectrogram:
 *          periodic Hann window, centred frames with reflect padding, Slaney mel
 *          scale with area normalisation (librosa's defaults)
 *   video  u8 [N, 3, H, W]: N frames sampled uniformly by timestamp, each converted to
 *          RGB as PyAV's frame.to_ndarray(format="rgb24") does, then resized as images
 *   mesh   f32 [P, 6] (x, y, z, nx, ny, nz): the mesh centred and scaled into the unit
 *          sphere, P surface points drawn by triangle area (seeded), face normals
 *
 * Errors: every function returns 0 or a negative SUSHI_E* code and records a message
 * naming the file and the cause (sushi_last_error()); a corrupt, truncated or
 * unsupported file is an error, never a crash. Functions that take a
 * `struct media_errors *` (may be NULL) also count each failure there, atomically, so
 * worker threads can share one counter.
 *
 * Thread safety: every function may run in several threads at once on different
 * outputs. Mesh imports are serialised internally (assimp's C API keeps its last error
 * in a global). Results are freed with the matching *_free(), which accepts zeroed
 * structs and may be called twice. */
#ifndef SUSHI_MEDIA_H
#define SUSHI_MEDIA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum media_kind { MEDIA_IMAGE = 0, MEDIA_AUDIO, MEDIA_VIDEO, MEDIA_MESH, MEDIA_NKINDS };
const char *media_kind_name(enum media_kind kind);   /* "image", "audio", ... */

/* ---- failure counter ---------------------------------------------------------- */

/* Failures by modality and by cause (index -code: SUSHI_EIO, SUSHI_EFORMAT,
 * SUSHI_EUNSUPPORTED, ...). Zero-initialise; updated with atomic adds. */
#define MEDIA_NCAUSES 9
struct media_errors {
    atomic_long by_kind[MEDIA_NKINDS];
    atomic_long by_cause[MEDIA_NCAUSES];
};
/* Counts one failure of `kind` with code `rc` (< 0); returns rc. errs may be NULL. */
int media_errors_add(struct media_errors *errs, enum media_kind kind, int rc);
long media_errors_total(const struct media_errors *errs);

/* ---- images ------------------------------------------------------------------- */

struct media_image {
    int h, w, c;          /* c = 3 */
    uint8_t *data;        /* u8 [h, w, c], RGB */
};

enum media_filter { MEDIA_BILINEAR = 0, MEDIA_BICUBIC };

/* Decodes a PNG or JPEG file (chosen by its signature) into RGB: grey, palette and
 * alpha images are converted as PIL's convert("RGB") does (alpha dropped, 16-bit
 * samples keep their high byte). */
int media_image_load(const char *path, struct media_image *out, struct media_errors *errs);
/* The same from a buffer; `name` names it in messages. */
int media_image_decode(const void *buf, size_t n, const char *name, struct media_image *out,
                       struct media_errors *errs);
void media_image_free(struct media_image *img);

/* Resizes src to h x w with the filter (PIL's Image.resize semantics, libswscale). */
int media_image_resize(const struct media_image *src, int h, int w, enum media_filter filter,
                       struct media_image *out);

/* Per-channel (x / 255 - mean[c]) / std[c]: f32 or f16 output, [h, w, c]. */
enum media_float { MEDIA_F32 = 0, MEDIA_F16 };
struct media_norm {
    float mean[3], std[3];     /* defaults: CLIP's (0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758) */
};
extern const struct media_norm media_norm_clip;
/* out: h*w*c floats (or uint16_t f16 values), caller-allocated */
int media_image_normalize(const struct media_image *img, const struct media_norm *norm,
                          enum media_float type, void *out);
/* P x P patches in raster order: [N = (h/P)*(w/P), P*P*c] with each patch row-major
 * (py, px, c). `in` is [h, w, c] of elem_size-byte elements; h and w multiples of P. */
int media_patchify(const void *in, int h, int w, int c, size_t elem_size, int p, void *out);

/* ---- audio -------------------------------------------------------------------- */

struct media_audio {
    int rate;             /* samples per second */
    int64_t n;            /* samples */
    float *data;          /* f32 [n], mono */
};

/* Decodes WAV/FLAC/OGG (libsndfile), averages the channels, resamples to `rate`
 * (0: keep the file's rate; MEDIA_AUDIO_RATE is the student's). */
#define MEDIA_AUDIO_RATE 16000
int media_audio_load(const char *path, int rate, struct media_audio *out, struct media_errors *errs);
/* Resamples mono f32 (libswresample); out->n = ceil(n * to / from). */
int media_audio_resample(const float *in, int64_t n, int from, int to, struct media_audio *out);
void media_audio_free(struct media_audio *a);

struct media_mel_opts {
    int rate;             /* 16000 */
    int n_fft;            /* 400 (25 ms) */
    int hop;              /* 160 (10 ms) */
    int n_mels;           /* 80 */
    float fmin, fmax;     /* 0, rate / 2 (fmax <= 0: rate / 2) */
};
void media_mel_defaults(struct media_mel_opts *o);

struct media_mel {
    int n_mels, n_frames; /* n_frames = 1 + n / hop */
    float *data;          /* f32 [n_mels, n_frames], log10 */
};
int media_mel_compute(const struct media_audio *a, const struct media_mel_opts *o, struct media_mel *out);
void media_mel_free(struct media_mel *m);

/* ---- video -------------------------------------------------------------------- */

struct media_video_opts {
    int frames;           /* N, default 8 */
    int h, w;             /* output size; 0 = the stream's */
    enum media_filter filter;
    double seek_s;        /* seek (to the keyframe before) when the next target is more than
                             this many seconds past the last decoded frame, default 2; 0 never */
};
void media_video_defaults(struct media_video_opts *o);

struct media_video {
    int n, c, h, w;       /* c = 3 */
    uint8_t *data;        /* u8 [n, c, h, w] */
    double *t;            /* [n] presentation time (s, from the stream start) of each frame */
};
/* Target times t_i = (i + 0.5) * D / N from the stream start (D = stream duration);
 * frame i is the last frame whose timestamp is <= t_i (the first frame if none). */
int media_video_load(const char *path, const struct media_video_opts *o, struct media_video *out,
                     struct media_errors *errs);
void media_video_free(struct media_video *v);

/* ---- meshes ------------------------------------------------------------------- */

struct media_mesh_opts {
    int points;           /* P, default 2048 */
    uint64_t seed;        /* sampling seed, default 0 */
};
void media_mesh_defaults(struct media_mesh_opts *o);

struct media_points {
    int n;                /* P */
    float *data;          /* f32 [P, 6]: x y z nx ny nz */
};
int media_mesh_load(const char *path, const struct media_mesh_opts *o, struct media_points *out,
                    struct media_errors *errs);
void media_points_free(struct media_points *p);

/* ---- manifests ---------------------------------------------------------------- */

/* One line of a JSONL manifest: {"image": "cat.png", "text": "a cat"} (or "audio",
 * "video", "mesh"); paths are relative to the manifest's folder. */
struct media_record {
    enum media_kind kind;
    char *path;           /* resolved */
    char *text;           /* "" when absent */
    int line;             /* 1-based line in the manifest */
};
struct media_manifest {
    struct media_record *records;
    size_t n;
    size_t skipped;       /* bad lines, each logged as FILE:LINE: cause */
};
int media_manifest_read(const char *path, struct media_manifest *out);
void media_manifest_free(struct media_manifest *m);

#endif
