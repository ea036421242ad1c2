/* Byte-level BPE tokenizer that encodes and decodes exactly as HuggingFace tokenizers
 * does for a tokenizer.json (or the older vocab.json + merges.txt pair).
 *
 * Supported tokenizer.json parts (anything else is refused with SUSHI_EUNSUPPORTED):
 *   model          BPE (merges as "a b" or ["a", "b"]; ignore_merges), no dropout,
 *                  no byte_fallback, empty continuing_subword_prefix / end_of_word_suffix
 *   normalizer     Sequence, Replace (String / Regex), Prepend, Strip, Lowercase,
 *                  NFC, NFD, NFKC, NFKD (ICU)
 *   pre_tokenizer  Sequence, Split (String / Regex, every behavior, invert), Digits,
 *                  ByteLevel (add_prefix_space, use_regex); a ByteLevel step is required
 *   post_processor ByteLevel, TemplateProcessing (single), Sequence
 *   decoder        ByteLevel (or none: tokens joined by spaces)
 *   added_tokens   matched before pre-tokenization, leftmost-longest; special,
 *                  normalized, lstrip, rstrip and single_word as HF does
 * Regexes run on PCRE2 (UTF, Unicode properties, JIT). Character properties come from
 * PCRE2's Unicode tables (Unicode 14 in PCRE2 10.42); HF's Oniguruma has newer ones, so
 * text with code points assigned after Unicode 14 (e.g. U+1FAE8, U+13DDD) may split
 * differently from HF there. Everything older gives identical ids.
 *
 * Invalid UTF-8 input: every maximal invalid subsequence (the Unicode / WHATWG rule
 * that Rust's String::from_utf8_lossy and node's Buffer.toString('utf8') follow)
 * becomes U+FFFD before encoding, so the ids are those HF gives for the lossily decoded
 * text, and decode() yields U+FFFD there. Valid UTF-8 round-trips exactly:
 * decode(encode(x)) == x. decode() likewise replaces invalid byte sequences that a
 * partial id sequence produces with U+FFFD, as HF does.
 *
 * Threads: a loaded tokenizer is immutable apart from its word cache (sharded, each
 * shard under a mutex), so tok_encode/tok_decode may run concurrently on one tokenizer.
 * BOS/EOS come from tokenizer_config.json beside tokenizer.json when present, else
 * from the usual special token names. */
#ifndef SUSHI_TOKENIZER_H
#define SUSHI_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct tokenizer;

int tok_load(struct tokenizer **out, const char *tokenizer_json_path);
/* GPT-2's pipeline (ByteLevel pre-tokenizer and decoder) over vocab.json + merges.txt
 * (a leading "#version" line is skipped); no added tokens. */
int tok_load_bpe_files(struct tokenizer **out, const char *vocab_json, const char *merges_txt);
void tok_free(struct tokenizer *t);

/* Encodes len bytes of text. add_special: apply the post-processor (e.g. BOS) as HF's
 * encode(text, add_special_tokens=True) does. *ids is malloc'ed, caller frees (also
 * when *n_ids is 0). Invalid UTF-8 as described above, never a crash. */
int tok_encode(const struct tokenizer *t, const char *text, size_t len, int add_special,
               int32_t **ids, size_t *n_ids);
/* skip_special: leave out special added tokens. *text is malloc'ed and NUL-terminated.
 * An id outside the vocabulary is an error (SUSHI_EINVAL naming it). */
int tok_decode(const struct tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special,
               char **text, size_t *len);

int tok_vocab_size(const struct tokenizer *t);          /* max id + 1, added tokens included */
int32_t tok_token_to_id(const struct tokenizer *t, const char *token);   /* -1 if absent */
const char *tok_id_to_token(const struct tokenizer *t, int32_t id);      /* NULL if absent */
int32_t tok_bos_id(const struct tokenizer *t);          /* -1 when the tokenizer has none */
int32_t tok_eos_id(const struct tokenizer *t);

#endif
