/* Byte-level BPE tokenizer that encodes and decodes exactly as HuggingFace tokenizers
 * does for a tokenizer.json (or the older vocab.json + merges.txt pair).
 * A loaded tokenizer is immutable apart from an internal word cache that is safe to
 * use from several threads at once. */
#ifndef SUSHI_TOKENIZER_H
#define SUSHI_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct tokenizer;

int tok_load(struct tokenizer **out, const char *tokenizer_json_path);
int tok_load_bpe_files(struct tokenizer **out, const char *vocab_json, const char *merges_txt);
void tok_free(struct tokenizer *t);

/* Encodes len bytes of text. add_special: apply the post-processor (e.g. BOS) as HF's
 * encode(text, add_special_tokens=True) does. *ids is malloc'ed, caller frees.
 * Invalid UTF-8 has the documented behaviour of tokenizer.c, never a crash. */
int tok_encode(const struct tokenizer *t, const char *text, size_t len, int add_special,
               int32_t **ids, size_t *n_ids);
/* skip_special: leave out special added tokens. *text is malloc'ed and NUL-terminated. */
int tok_decode(const struct tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special,
               char **text, size_t *len);

int tok_vocab_size(const struct tokenizer *t);          /* max id + 1, added tokens included */
int32_t tok_token_to_id(const struct tokenizer *t, const char *token);   /* -1 if absent */
const char *tok_id_to_token(const struct tokenizer *t, int32_t id);      /* NULL if absent */
int32_t tok_bos_id(const struct tokenizer *t);          /* -1 when the tokenizer has none */
int32_t tok_eos_id(const struct tokenizer *t);

#endif
