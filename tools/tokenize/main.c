// libs: tok core
/* sushi-tokenize: encode text to token ids or decode ids to text with a HuggingFace
 * tokenizer.json (or vocab.json + merges.txt).
 *   sushi tokenize --tokenizer FILE [--lines] [--decode] [INPUT] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/tokenizer/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sushi tokenize --tokenizer FILE [--merges FILE] [--lines] [--decode] [--special] [INPUT]\n"
            "Encodes INPUT (a file; stdin when absent or \"-\") to space-separated token ids,\n"
            "or with --decode turns space-separated ids back into text.\n"
            "  --tokenizer FILE  HF tokenizer.json, or vocab.json when --merges is given\n"
            "  --merges FILE     merges.txt of a vocab.json + merges.txt pair\n"
            "  --lines           each input line (without its newline) on its own output line\n"
            "  --decode          ids -> text\n"
            "  --special         encode: add the post-processor's special tokens (e.g. BOS);\n"
            "                    decode: keep special tokens (they are skipped by default)\n");
}

static int read_input(const char *path, char **buf, size_t *n)
{
    if (path && strcmp(path, "-")) return fs_read_all(path, buf, n);
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    for (size_t r; b && (r = fread(b + len, 1, cap - len, stdin)) > 0;) {
        len += r;
        if (len == cap) {
            char *nb = realloc(b, 2 * cap + 1);
            if (!nb) { free(b); b = NULL; break; }
            b = nb;
            cap *= 2;
        }
    }
    if (!b) return sushi_error(SUSHI_ENOMEM, "stdin: out of memory");
    b[len] = 0;
    *buf = b;
    *n = len;
    return 0;
}

static int encode_one(const struct tokenizer *t, const char *s, size_t n, int special)
{
    int32_t *ids;
    size_t k;
    int rc = tok_encode(t, s, n, special, &ids, &k);
    if (rc) return rc;
    for (size_t i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    free(ids);
    return 0;
}

/* Parses space-separated ids of s[0..n) and prints their text. */
static int decode_one(const struct tokenizer *t, const char *s, size_t n, int keep_special, int newline)
{
    int32_t *ids = malloc((n / 2 + 1) * sizeof *ids);
    size_t k = 0;
    if (!ids) return sushi_error(SUSHI_ENOMEM, "out of memory");
    for (size_t i = 0; i < n;) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') { i++; continue; }
        char *end;
        long v = strtol(s + i, &end, 10);
        if (end == s + i || v < 0 || v > INT32_MAX || (size_t)(end - s) > n) {
            free(ids);
            return sushi_error(SUSHI_EFORMAT, "--decode: \"%.20s\" is not a token id", s + i);
        }
        ids[k++] = (int32_t)v;
        i = (size_t)(end - s);
    }
    char *text;
    size_t len;
    int rc = tok_decode(t, ids, k, !keep_special, &text, &len);
    free(ids);
    if (rc) return rc;
    fwrite(text, 1, len, stdout);
    if (newline) putchar('\n');
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    log_set_name("sushi-tokenize");
    const char *tok_path = NULL, *merges = NULL;
    int lines = 0, decode = 0, special = 0, c;
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"merges", required_argument, 0, 'm'},
        {"lines", no_argument, 0, 'l'}, {"decode", no_argument, 0, 'd'},
        {"special", no_argument, 0, 's'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    while ((c = getopt_long(argc, argv, "t:m:ldsh", opts, NULL)) != -1) {
        switch (c) {
        case 't': tok_path = optarg; break;
        case 'm': merges = optarg; break;
        case 'l': lines = 1; break;
        case 'd': decode = 1; break;
        case 's': special = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!tok_path || optind + 1 < argc) {
        fprintf(stderr, "sushi-tokenize: %s\n", tok_path ? "at most one INPUT" : "--tokenizer FILE is required");
        usage(stderr);
        return 2;
    }
    struct tokenizer *t;
    int rc = merges ? tok_load_bpe_files(&t, tok_path, merges) : tok_load(&t, tok_path);
    if (rc) { log_error("%s", sushi_last_error()); return 1; }
    char *in = NULL;
    size_t n = 0;
    rc = read_input(optind < argc ? argv[optind] : NULL, &in, &n);
    if (!rc && lines) {
        for (size_t i = 0; i < n && !rc;) {
            char *nl = memchr(in + i, '\n', n - i);
            size_t e = nl ? (size_t)(nl - in) : n;
            rc = decode ? decode_one(t, in + i, e - i, special, 1) : encode_one(t, in + i, e - i, special);
            i = e + 1;
        }
    } else if (!rc) {
        rc = decode ? decode_one(t, in, n, special, 0) : encode_one(t, in, n, special);
    }
    if (rc) log_error("%s", sushi_last_error());
    free(in);
    tok_free(t);
    return rc ? 1 : 0;
}
