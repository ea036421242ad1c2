/* Log-mel spectrogram with librosa's conventions (SPEC §4): periodic Hann window of
 * n_fft samples, frames centred on t * hop with reflect padding of n_fft / 2, power
 * spectrum |X|^2, Slaney mel filters with area normalisation, log10(max(mel, 1e-10)).
 *
 * The FFT is libavutil's av_tx, in double precision (a pure tone's far bins are
 * otherwise float rounding noise). Two real frames go through one complex transform
 * (x1 + i x2) and are separated afterwards. Lengths that are not powers of two (400 at
 * 16 kHz / 25 ms) use Bluestein's chirp-z algorithm on a power-of-two av_tx transform:
 * av_tx itself only has slow O(n^2) code for factors such as 25. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/mem.h>
#include <libavutil/tx.h>

#include "common/core/log.h"
#include "common/media/media_internal.h"

void media_mel_defaults(struct media_mel_opts *o)
{
    *o = (struct media_mel_opts){.rate = MEDIA_AUDIO_RATE, .n_fft = 400, .hop = 160, .n_mels = 80,
                                 .fmin = 0.0f, .fmax = 0.0f};
}

void media_mel_free(struct media_mel *m)
{
    if (!m) return;
    free(m->data);
    memset(m, 0, sizeof *m);
}

/* ---- complex DFT of any length n ---- */

struct dft {
    int n, m;                       /* length; Bluestein's power-of-two size (0: direct) */
    AVTXContext *fwd, *inv;
    av_tx_fn fwd_fn, inv_fn;
    AVComplexDouble *chirp;          /* [n] exp(-i pi k^2 / n) */
    AVComplexDouble *kernel;         /* [m] FFT of the conjugate chirp, divided by m */
    AVComplexDouble *a, *b;          /* [m] scratch */
};

static void dft_free(struct dft *d)
{
    av_tx_uninit(&d->fwd);
    av_tx_uninit(&d->inv);
    av_free(d->chirp);
    av_free(d->kernel);
    av_free(d->a);
    av_free(d->b);
    memset(d, 0, sizeof *d);
}

static int dft_init(struct dft *d, int n)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    double one = 1.0;
    if ((n & (n - 1)) == 0) {
        d->a = av_malloc(sizeof(AVComplexDouble) * n);
        if (!d->a || av_tx_init(&d->fwd, &d->fwd_fn, AV_TX_DOUBLE_FFT, 0, n, &one, 0) < 0) goto fail;
        return 0;
    }
    int m = 1;
    while (m < 2 * n - 1) m *= 2;
    d->m = m;
    d->chirp = av_malloc(sizeof(AVComplexDouble) * n);
    d->kernel = av_malloc(sizeof(AVComplexDouble) * m);
    d->a = av_malloc(sizeof(AVComplexDouble) * m);
    d->b = av_malloc(sizeof(AVComplexDouble) * m);
    if (!d->chirp || !d->kernel || !d->a || !d->b) goto fail;
    if (av_tx_init(&d->fwd, &d->fwd_fn, AV_TX_DOUBLE_FFT, 0, m, &one, 0) < 0) goto fail;
    if (av_tx_init(&d->inv, &d->inv_fn, AV_TX_DOUBLE_FFT, 1, m, &one, 0) < 0) goto fail;
    memset(d->a, 0, sizeof(AVComplexDouble) * m);
    for (int k = 0; k < n; k++) {
        double ang = M_PI * (double)(((int64_t)k * k) % (2 * (int64_t)n)) / n;   /* exact k^2 mod 2n */
        d->chirp[k] = (AVComplexDouble){cos(ang), -sin(ang)};
        AVComplexDouble c = {cos(ang) / m, sin(ang) / m};       /* conj(chirp) / m */
        d->a[k] = c;
        if (k) d->a[m - k] = c;
    }
    d->fwd_fn(d->fwd, d->kernel, d->a, sizeof(AVComplexDouble));
    return 0;
fail:
    dft_free(d);
    return sushi_error(SUSHI_EBACKEND, "mel: cannot set up an FFT of length %d", n);
}

/* out[k] = sum_j in[j] exp(-2 pi i j k / n), k < n */
static void dft_run(struct dft *d, const AVComplexDouble *in, AVComplexDouble *out)
{
    int n = d->n, m = d->m;
    if (!m) {
        memcpy(d->a, in, sizeof(AVComplexDouble) * n);
        d->fwd_fn(d->fwd, out, d->a, sizeof(AVComplexDouble));
        return;
    }
    for (int k = 0; k < n; k++) {
        AVComplexDouble x = in[k], w = d->chirp[k];
        d->a[k] = (AVComplexDouble){x.re * w.re - x.im * w.im, x.re * w.im + x.im * w.re};
    }
    memset(d->a + n, 0, sizeof(AVComplexDouble) * (m - n));
    d->fwd_fn(d->fwd, d->b, d->a, sizeof(AVComplexDouble));
    for (int k = 0; k < m; k++) {
        AVComplexDouble x = d->b[k], w = d->kernel[k];
        d->b[k] = (AVComplexDouble){x.re * w.re - x.im * w.im, x.re * w.im + x.im * w.re};
    }
    d->inv_fn(d->inv, d->a, d->b, sizeof(AVComplexDouble));
    for (int k = 0; k < n; k++) {
        AVComplexDouble x = d->a[k], w = d->chirp[k];
        out[k] = (AVComplexDouble){x.re * w.re - x.im * w.im, x.re * w.im + x.im * w.re};
    }
}

/* ---- Slaney mel filters ---- */

static double hz_to_mel(double f)
{
    const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    return f >= min_log_hz ? min_log_mel + log(f / min_log_hz) / logstep : f / f_sp;
}

static double mel_to_hz(double m)
{
    const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    return m >= min_log_mel ? min_log_hz * exp(logstep * (m - min_log_mel)) : f_sp * m;
}

/* w [n_mels, nbins]; lo/hi: each filter's nonzero bins */
static int mel_filters(const struct media_mel_opts *o, int nbins, double *w, int *lo, int *hi)
{
    int nm = o->n_mels;
    double f_max = o->fmax > 0 ? o->fmax : o->rate / 2.0;
    double *mf = malloc(sizeof(double) * (nm + 2));
    if (!mf) return sushi_error(SUSHI_ENOMEM, "mel: out of memory");
    double m0 = hz_to_mel(o->fmin), m1 = hz_to_mel(f_max);
    for (int i = 0; i < nm + 2; i++) mf[i] = mel_to_hz(m0 + (m1 - m0) * i / (nm + 1));
    for (int i = 0; i < nm; i++) {
        double enorm = 2.0 / (mf[i + 2] - mf[i]);
        lo[i] = nbins;
        hi[i] = 0;
        for (int k = 0; k < nbins; k++) {
            double f = (o->rate / 2.0) * k / (nbins - 1);
            double lower = (f - mf[i]) / (mf[i + 1] - mf[i]);
            double upper = (mf[i + 2] - f) / (mf[i + 2] - mf[i + 1]);
            double v = fmax(0.0, fmin(lower, upper)) * enorm;
            w[(size_t)i * nbins + k] = v;
            if (v > 0) {
                if (k < lo[i]) lo[i] = k;
                hi[i] = k + 1;
            }
        }
    }
    free(mf);
    return 0;
}

/* index into x[0, n) of padded position j - pad, numpy's "reflect" (edge not repeated) */
static int64_t reflect_index(int64_t i, int64_t n)
{
    if (n == 1) return 0;
    int64_t period = 2 * (n - 1);
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}

int media_mel_compute(const struct media_audio *a, const struct media_mel_opts *opts, struct media_mel *out)
{
    if (!out) return sushi_error(SUSHI_EINVAL, "mel: null output");
    memset(out, 0, sizeof *out);
    struct media_mel_opts o;
    if (opts) o = *opts;
    else media_mel_defaults(&o);
    if (!a || !a->data || a->n <= 0) return sushi_error(SUSHI_EINVAL, "mel: no audio");
    if (a->rate != o.rate)
        return sushi_error(SUSHI_EINVAL, "mel: audio at %d Hz, mel expects %d Hz (resample first)", a->rate, o.rate);
    if (o.n_fft < 2 || o.n_fft > (1 << 16) || o.hop < 1 || o.n_mels < 1 || o.n_mels > 4096 || o.fmin < 0 ||
        (o.fmax > 0 && (o.fmax > o.rate / 2.0f || o.fmax <= o.fmin)))
        return sushi_error(SUSHI_EINVAL, "mel: bad options (n_fft %d, hop %d, n_mels %d, fmin %g, fmax %g)",
                           o.n_fft, o.hop, o.n_mels, o.fmin, o.fmax);
    int nfft = o.n_fft, nbins = nfft / 2 + 1, pad = nfft / 2, nm = o.n_mels;
    int64_t n = a->n, frames = 1 + (n + 2 * pad - nfft) / o.hop;
    if (frames > (1 << 28)) return sushi_error(SUSHI_EINVAL, "mel: %lld frames is too many", (long long)frames);
    struct dft d;
    int rc = dft_init(&d, nfft);
    if (rc) return rc;
    double *w = malloc(sizeof(double) * nm * nbins);
    double *win = malloc(sizeof(double) * nfft);
    double *power = malloc(sizeof(double) * 2 * nbins);
    float *mel = malloc(sizeof(float) * nm * (size_t)frames);
    int *lo = malloc(sizeof(int) * nm * 2);
    AVComplexDouble *zin = av_malloc(sizeof(AVComplexDouble) * nfft), *z = av_malloc(sizeof(AVComplexDouble) * nfft);
    if (!w || !win || !power || !mel || !lo || !zin || !z) {
        rc = sushi_error(SUSHI_ENOMEM, "mel: out of memory");
        goto done;
    }
    int *hi = lo + nm;
    if ((rc = mel_filters(&o, nbins, w, lo, hi))) goto done;
    for (int j = 0; j < nfft; j++) win[j] = 0.5 - 0.5 * cos(2.0 * M_PI * j / nfft);
    for (int64_t t = 0; t < frames; t += 2) {
        int pair = t + 1 < frames;
        for (int j = 0; j < nfft; j++) {
            int64_t p0 = t * o.hop + j - pad, p1 = p0 + o.hop;
            zin[j].re = a->data[reflect_index(p0, n)] * win[j];
            zin[j].im = pair ? a->data[reflect_index(p1, n)] * win[j] : 0.0;
        }
        dft_run(&d, zin, z);
        /* X1[k] = (Z[k] + conj Z[n-k]) / 2, X2[k] = (Z[k] - conj Z[n-k]) / 2i */
        for (int k = 0; k < nbins; k++) {
            AVComplexDouble p = z[k], q = z[k ? nfft - k : 0];
            double r1 = 0.5 * (p.re + q.re), i1 = 0.5 * (p.im - q.im);
            double r2 = 0.5 * (p.im + q.im), i2 = 0.5 * (q.re - p.re);
            power[k] = r1 * r1 + i1 * i1;
            power[nbins + k] = r2 * r2 + i2 * i2;
        }
        for (int f = 0; f <= pair; f++)
            for (int i = 0; i < nm; i++) {
                double s = 0;
                for (int k = lo[i]; k < hi[i]; k++) s += w[(size_t)i * nbins + k] * power[f * nbins + k];
                mel[(size_t)i * frames + t + f] = (float)log10(s > 1e-10 ? s : 1e-10);
            }
    }
    *out = (struct media_mel){.n_mels = nm, .n_frames = (int)frames, .data = mel};
    mel = NULL;
done:
    dft_free(&d);
    free(w);
    free(win);
    free(power);
    free(mel);
    free(lo);
    av_free(zin);
    av_free(z);
    return rc;
}
