/* Tokenizers. A tl_vocab holds the vocabulary of a model and the algorithm
 * that splits text into its tokens. */
#ifndef TL_TOKENIZER_H
#define TL_TOKENIZER_H

#include "core/core.h"
#include "format/gguf.h"

/* Token types as GGUF stores them (tokenizer.ggml.token_type). */
enum {
  TL_TOKTYPE_NORMAL = 1,
  TL_TOKTYPE_UNKNOWN = 2,
  TL_TOKTYPE_CONTROL = 3,
  TL_TOKTYPE_USER_DEFINED = 4,
  TL_TOKTYPE_UNUSED = 5,
  TL_TOKTYPE_BYTE = 6,
};

typedef enum tl_vocab_kind {
  TL_VOCAB_NONE = 0, /* the model file has no tokenizer we understand */
  TL_VOCAB_SPM = 1,  /* SentencePiece BPE with byte fallback (GGUF "llama") */
  TL_VOCAB_BPE = 2,  /* byte-level BPE with merge ranks (GGUF "gpt2") */
} tl_vocab_kind;

/* ---- byte-level BPE pre-tokenizers (pretokenize.c) ----------------------- */

typedef struct tl_pretok tl_pretok;

/* The pre-tokenizer named by tokenizer.ggml.pre ("gpt2", "llama-bpe",
 * "qwen2", ...). Unknown names and "default" get the GPT-2 regex (with a
 * warning through tl_log for unknown ones). */
tl_status tl_pretok_new(const char *name, size_t len, tl_pretok **out);
void tl_pretok_free(tl_pretok *p);
/* Canonical name of the regex set in use: "gpt2", "llama3" or "qwen2". */
const char *tl_pretok_kind(const tl_pretok *p);
/* Calls fn for every piece of text[0, n) in order (off, len relative to
 * text); stops at the first non-OK status fn returns. */
typedef tl_status (*tl_pretok_fn)(void *user, size_t off, size_t len);
tl_status tl_pretok_split(const tl_pretok *p, const char *text, size_t n, tl_pretok_fn fn,
                          void *user);
/* The tokenizer.ggml.pre name of a Hugging Face Split regex (tokenizer.json),
 * NULL when it is none of the known ones. */
const char *tl_pretok_name_for_regex(const char *re, size_t len);
/* GPT-2's bytes_to_unicode: the code point standing for byte b. */
uint32_t tl_byte_to_cp(uint8_t b);
/* Inverse: the byte of code point cp, -1 when cp stands for no byte. */
int tl_cp_to_byte(uint32_t cp);

/* Unicode NFC (canonical composition) of valid UTF-8 text; *out is malloc'd
 * (free it), *out_len its length. */
tl_status tl_utf8_nfc(const char *s, size_t n, char **out, size_t *out_len);

typedef struct tl_vocab tl_vocab;

/* Internal layout, shared by vocab.c (loading, pieces), front.c, spm.c and bpe.c. */
/* Flags of added tokens (tokenizer.json's AddedToken): lstrip / rstrip take
 * the white space before / after an occurrence; single_word matches only
 * where no word character (\w) touches the occurrence; normalized tokens are
 * matched after the others (Hugging Face matches them on the normalized
 * text, in a second pass). */
enum {
  TL_TOKFLAG_LSTRIP = 1,
  TL_TOKFLAG_RSTRIP = 2,
  TL_TOKFLAG_SINGLE_WORD = 4,
  TL_TOKFLAG_NORMALIZED = 8
};
/* The metadata key of a vocabulary view made from tokenizer.json that
 * carries those flags, one byte per token (absent in llama.cpp's files). */
#define TL_TOKEN_FLAGS_KEY "torchless.tokenizer.token_flags"
#define TL_VOCAB_MAX_EOG 8

struct tl_vocab {
  tl_vocab_kind kind;
  int32_t n;
  char *text;          /* all token texts, each NUL-terminated */
  uint32_t *text_off;  /* [n] */
  uint32_t *text_len;  /* [n] */
  char *piece;         /* all pieces (tl_vocab_piece output) */
  uint32_t *piece_off; /* [n] */
  uint32_t *piece_len; /* [n] */
  float *score;        /* [n] */
  uint8_t *type;       /* [n] TL_TOKTYPE_* (0: undefined) */
  uint8_t *flags;      /* [n] TL_TOKFLAG_* */
  void *word_re;       /* a compiled \w (PCRE2) where a token is single_word, else NULL */
  int32_t *hash;       /* open addressing, token ids, -1 empty */
  uint32_t hash_mask;
  tl_token *special; /* control / user-defined / unknown tokens, longest first */
  int32_t n_special;
  tl_token byte_tok[256]; /* <0xXX> tokens, -1 if absent */
  tl_token bos, eos, unk, eot, eom;
  tl_token eog[TL_VOCAB_MAX_EOG];
  int32_t n_eog;
  bool add_bos, add_eos, add_space_prefix;
  /* byte-level BPE (bpe.c) */
  tl_pretok *pretok;
  struct tl_bpe_merge *merges; /* open addressing on (left, right) token ids */
  uint32_t merge_mask;
  int32_t n_merges;
  bool ignore_merges; /* a pre-token that is a whole token skips the merges */
  bool nfc;           /* NFC-normalize the text first (Qwen's normalizer) */
};

/* A merge rule: the pair (left, right) becomes token result at rank. */
typedef struct tl_bpe_merge {
  int32_t left, right; /* -1: empty slot */
  int32_t rank, result;
} tl_bpe_merge;

/* Slot hash of a (left, right) pair in tl_vocab.merges. */
static inline uint32_t tl_bpe_pair_hash(int32_t left, int32_t right) {
  uint64_t k = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
  return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32);
}

/* The merge rule of a token pair, NULL when none. */
const tl_bpe_merge *tl_bpe_find_merge(const tl_vocab *v, tl_token left, tl_token right);

/* ---- the encoders under tl_vocab_tokenize (front.c) ----------------------- */

/* A piece of the text between special tokens (token -1: text[off, off+len)),
 * or a special token. */
typedef struct tl_tok_frag {
  tl_token token;
  size_t off, len;
} tl_tok_frag;

/* The output: n counts every token emitted, also those past cap. */
typedef struct tl_tok_out {
  tl_token *out;
  size_t cap, n;
} tl_tok_out;

static inline void tl_tok_emit(tl_tok_out *o, tl_token t) {
  if (o->n < o->cap) o->out[o->n] = t;
  o->n++;
}

/* Emit the tokens of the fragments of text[0, len) (valid UTF-8), in order:
 * SentencePiece BPE (spm.c) and byte-level BPE (bpe.c). */
tl_status tl_spm_encode(const tl_vocab *v, const char *text, size_t len, const tl_tok_frag *frags,
                        size_t n_frags, tl_tok_out *o);
tl_status tl_bpe_encode(const tl_vocab *v, const char *text, size_t len, const tl_tok_frag *frags,
                        size_t n_frags, tl_tok_out *o);

/* ---- Hugging Face tokenizer files (hf_tokenizer.c) ----------------------- */

/* Reads the tokenizer of a Hugging Face model folder (tokenizer.json or
 * tokenizer.model, tokenizer_config.json, generation_config.json,
 * chat_template.jinja) into tokenizer.ggml.* keys of the view, as llama.cpp's
 * convert_hf_to_gguf.py writes them. Extra end-of-generation ids go to
 * tokenizer.ggml.eog_token_ids (array of i32); a NFC normalizer is recorded
 * as tokenizer.ggml.normalizer = "nfc" and ignore_merges as
 * tokenizer.ggml.ignore_merges (torchless extensions). */
tl_status tl_hf_tokenizer_load(tl_gguf *view, const char *dir);
/* The same conversion for a tokenizer.json document already parsed (root:
 * the object with "model", "pre_tokenizer", "normalizer", "added_tokens",
 * "post_processor"), without the folder's other files. what names the source
 * in error messages ("WHAT/tokenizer: ..."). Used by the Torchless .bin
 * reader (format/native.c), which builds such a document around its vocab and
 * merges. */
struct cJSON;
tl_status tl_hf_tokenizer_from_json(tl_gguf *view, const char *what, const struct cJSON *root);

/* Build the vocabulary from GGUF metadata (tokenizer.ggml.*). A file whose
 * tokenizer model is unknown yields TL_ERR_UNSUPPORTED. */
tl_status tl_vocab_from_gguf(const tl_gguf *g, tl_vocab **out);
void tl_vocab_free(tl_vocab *v);

tl_vocab_kind tl_vocab_get_kind(const tl_vocab *v);
int32_t tl_vocab_n_tokens(const tl_vocab *v);
tl_token tl_vocab_bos(const tl_vocab *v); /* -1: none */
tl_token tl_vocab_eos(const tl_vocab *v);
bool tl_vocab_add_bos(const tl_vocab *v);
bool tl_vocab_is_eog(const tl_vocab *v, tl_token t);

/* Same contract as tl_tokenize() in torchless.h. */
tl_status tl_vocab_tokenize(const tl_vocab *v, const char *text, size_t len, bool add_bos,
                            bool parse_special, tl_token *out, size_t cap, size_t *n_out);
/* Same contract as tl_token_to_piece() in torchless.h. */
int32_t tl_vocab_piece(const tl_vocab *v, tl_token t, char *buf, size_t cap);

/* Id of the token whose text is exactly s[0..n) (-1: none). */
tl_token tl_vocab_find(const tl_vocab *v, const char *s, size_t n);
/* Text of token t as stored in the vocabulary (SentencePiece form, with the
 * U+2581 space marker); NULL for an invalid token. */
const char *tl_vocab_text(const tl_vocab *v, tl_token t, size_t *len);
int32_t tl_vocab_type(const tl_vocab *v, tl_token t); /* TL_TOKTYPE_*, -1: invalid */

/* Streaming detokenizer over a vocabulary: the core of tl_detok_* (which only
 * look the vocabulary up in the model). push appends the text completed by
 * token t to buf and NUL-terminates it; it never emits a partial UTF-8
 * character, and bytes that cannot form a valid character become U+FFFD.
 * Output that does not fit in cap-1 bytes stays buffered and comes out on the
 * next push or flush (call flush until it returns 0 to drain everything). */
tl_status tl_vocab_detok_new(const tl_vocab *v, tl_detok **out);
size_t tl_vocab_detok_push(tl_detok *d, tl_token t, char *buf, size_t cap);
size_t tl_vocab_detok_flush(tl_detok *d, char *buf, size_t cap);
void tl_vocab_detok_free(tl_detok *d);

/* UTF-8 helpers. */
/* Length of the UTF-8 sequence starting at s (at most n bytes), 0 if invalid. */
size_t tl_utf8_len(const unsigned char *s, size_t n);
bool tl_utf8_valid(const char *s, size_t n);
/* Checks the character starting at s (n bytes available): its length when it
 * is complete and valid, 0 when n is too short but the bytes so far are a
 * valid start (or n == 0), -1 when invalid. */
int tl_utf8_check(const unsigned char *s, size_t n);

#endif
