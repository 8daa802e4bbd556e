/* torchless bench: prompt processing (pp) and text generation (tg) speed,
 * defined as llama-bench defines them: pp = one batch of p tokens from an
 * empty cache, tg = n tokens decoded one at a time from an empty cache. Each
 * test runs once as a warm-up, then r times; mean and standard deviation of
 * tokens/s are reported. --json prints llama-bench's field names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

#include "cli.h"

/* ---- memory read bandwidth (--membw): the roofline of generation ---------- */

static volatile uint64_t g_bw_sink;

/* The buffer is read in 4 MiB chunks that the threads take from a shared
 * counter as they go, so a core that runs slower than the others (common on a
 * shared virtual machine) takes fewer chunks instead of holding the
 * measurement to its own pace: the result is what the memory delivers to
 * `threads` threads, as generation (which splits its rows by the threads'
 * speeds) can use it. */
#define BW_CHUNK_WORDS ((size_t)1 << 19)

typedef struct bw_job {
  const uint64_t *p;
  size_t n_chunks;
  atomic_size_t *next;
  uint64_t sink;
} bw_job;

static void *bw_read(void *arg) {
  bw_job *j = arg;
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  for (;;) {
    const size_t c = atomic_fetch_add(j->next, 1);
    if (c >= j->n_chunks) break;
    const uint64_t *p = j->p + c * BW_CHUNK_WORDS;
    for (size_t i = 0; i < BW_CHUNK_WORDS; i += 8) { /* one 64-byte line per step */
      a0 ^= p[i];
      a1 ^= p[i + 1];
      a2 ^= p[i + 2];
      a3 ^= p[i + 3];
      a4 ^= p[i + 4];
      a5 ^= p[i + 5];
      a6 ^= p[i + 6];
      a7 ^= p[i + 7];
    }
  }
  j->sink = a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
  return NULL;
}

/* Best of 5 passes of `threads` threads reading a 1 GiB buffer together;
 * bytes per second, or 0 if the buffer or threads are not available. */
static double measure_read_bw(int threads) {
  const size_t bytes = (size_t)1 << 30, words = bytes / 8, n_chunks = words / BW_CHUNK_WORDS;
  uint64_t *buf = malloc(bytes);
  if (!buf) return 0;
  for (size_t i = 0; i < words; i++) buf[i] = i * 0x9e3779b97f4a7c15ull;
  if (threads > 64) threads = 64;
  pthread_t th[64];
  bw_job jobs[64];
  double best = 0;
  uint64_t sink = 0;
  for (int pass = 0; pass < 5; pass++) {
    atomic_size_t next;
    atomic_init(&next, 0);
    int64_t t0 = tl_time_us();
    int started = 0;
    for (int t = 0; t < threads; t++) {
      jobs[t] = (bw_job){buf, n_chunks, &next, 0};
      if (t == 0 || pthread_create(&th[t], NULL, bw_read, &jobs[t]) == 0)
        started = t + 1;
      else
        break;
    }
    bw_read(&jobs[0]);
    for (int t = 1; t < started; t++) pthread_join(th[t], NULL);
    double secs = (double)(tl_time_us() - t0) / 1e6;
    for (int t = 0; t < started; t++) sink ^= jobs[t].sink;
    double bw = secs > 0 ? (double)bytes / secs : 0;
    if (started == threads && bw > best) best = bw;
  }
  free(buf);
  g_bw_sink = sink; /* the reads have a visible effect */
  return best;
}

static uint64_t g_rng = 0x853c49e6748fea9bull;
static tl_token rand_token(int32_t n_vocab) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (tl_token)((g_rng >> 33) % (uint64_t)n_vocab);
}

/* Empty the cache, then fill `depth` positions (not timed). */
static tl_status fill(tl_context *c, int32_t n_vocab, int depth) {
  tl_kv_clear(c, -1);
  for (int off = 0; off < depth; off += 512) {
    int n = depth - off < 512 ? depth - off : 512;
    tl_token toks[512];
    int32_t pos[512];
    for (int i = 0; i < n; i++) {
      toks[i] = rand_token(n_vocab);
      pos[i] = off + i;
    }
    tl_batch b = {.n_tokens = n, .tokens = toks, .pos = pos};
    tl_status s = tl_decode(c, &b);
    if (s) return s;
  }
  return TL_OK;
}

/* Seconds for one pp run of n tokens after `depth` cached ones. */
static tl_status run_pp(tl_context *c, int32_t n_vocab, int depth, int n, double *secs) {
  tl_token *toks = malloc(sizeof(tl_token) * (size_t)n);
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)n);
  if (!toks || !pos) {
    free(toks);
    free(pos);
    return TL_ERR_NOMEM;
  }
  for (int i = 0; i < n; i++) {
    toks[i] = rand_token(n_vocab);
    pos[i] = depth + i;
  }
  tl_status s = fill(c, n_vocab, depth);
  tl_batch b = {.n_tokens = n, .tokens = toks, .pos = pos};
  int64_t t0 = tl_time_us();
  if (!s) s = tl_decode(c, &b);
  *secs = (double)(tl_time_us() - t0) / 1e6;
  free(toks);
  free(pos);
  return s;
}

/* Seconds for one tg run of n tokens after `depth` cached ones. */
static tl_status run_tg(tl_context *c, int32_t n_vocab, int depth, int n, double *secs) {
  tl_status s0 = fill(c, n_vocab, depth);
  if (s0) return s0;
  int64_t t0 = tl_time_us();
  for (int i = 0; i < n; i++) {
    tl_token t = rand_token(n_vocab);
    int32_t p = depth + i;
    tl_batch b = {.n_tokens = 1, .tokens = &t, .pos = &p};
    tl_status s = tl_decode(c, &b);
    if (s) return s;
  }
  *secs = (double)(tl_time_us() - t0) / 1e6;
  return TL_OK;
}

typedef struct result {
  int n_prompt, n_gen;
  double avg, sd;
  double read_per_tok; /* bytes read from storage per token in the timed runs (-1: unknown) */
} result;

/* Bytes this process has had read from storage (/proc/self/io read_bytes:
 * the page-cache misses of its file reads and faults); -1 where unknown. */
static long long io_read_bytes(void) {
  FILE *f = fopen("/proc/self/io", "r");
  if (!f) return -1;
  char line[128];
  long long v = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "read_bytes:", 11)) v = atoll(line + 11);
  fclose(f);
  return v;
}

static tl_status measure(tl_context *c, int32_t nv, const cli_opts *o, bool pp, result *r) {
  int n = pp ? o->n_prompt : o->n_gen;
  double ts[64], secs;
  int d = o->depth;
  tl_status s = pp ? run_pp(c, nv, d, n, &secs) : run_tg(c, nv, d, n, &secs); /* warm-up */
  const long long io0 = io_read_bytes();
  for (int i = 0; !s && i < o->reps; i++) {
    s = pp ? run_pp(c, nv, d, n, &secs) : run_tg(c, nv, d, n, &secs);
    ts[i] = (double)n / secs;
  }
  if (s) return s;
  const long long io1 = io_read_bytes();
  r->read_per_tok = io0 >= 0 && io1 >= io0 ? (double)(io1 - io0) / ((double)n * o->reps) : -1;
  double sum = 0, sq = 0;
  for (int i = 0; i < o->reps; i++) sum += ts[i];
  r->avg = sum / o->reps;
  for (int i = 0; i < o->reps; i++) sq += (ts[i] - r->avg) * (ts[i] - r->avg);
  r->sd = o->reps > 1 ? sqrt(sq / (o->reps - 1)) : 0.0;
  r->n_prompt = pp ? n : 0;
  r->n_gen = pp ? 0 : n;
  return TL_OK;
}

/* ---- speculative decoding (--draft / --lookup) ------------------------------- */

static const char k_spec_prompt[] =
    "In the beginning God created the heaven and the earth. And the earth was without form, and "
    "void; and darkness was upon the face of the deep.";

typedef struct spec_result {
  result plain, spec;
  tl_spec_stats st; /* over the timed runs */
  int n_prompt;
  bool same; /* the same tokens as the target alone */
} spec_result;

/* n greedy tokens after the prompt, one target pass each (the prompt's
 * prefill is not timed) */
static tl_status spec_plain_run(tl_context *c, tl_sampler *smp, const tl_token *p, int np, int n,
                                tl_token *out, double *secs) {
  tl_kv_clear(c, -1);
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)np);
  if (!pos) return TL_ERR_NOMEM;
  for (int i = 0; i < np; i++) pos[i] = i;
  tl_batch b = {.n_tokens = np, .tokens = p, .pos = pos};
  tl_status s = tl_decode(c, &b);
  free(pos);
  if (s) return s;
  int32_t nv = tl_model_n_vocab(tl_context_model(c));
  int64_t t0 = tl_time_us();
  for (int i = 0; i < n; i++) {
    tl_token t = out[i] = tl_sampler_sample(smp, tl_get_logits(c, 0), nv);
    if (i + 1 == n) break;
    int32_t ps = np + i;
    tl_batch b1 = {.n_tokens = 1, .tokens = &t, .pos = &ps};
    if ((s = tl_decode(c, &b1))) return s;
  }
  *secs = (double)(tl_time_us() - t0) / 1e6;
  return TL_OK;
}

/* the same with the speculative generator (begin not timed) */
static tl_status spec_run(tl_spec *sp, tl_sampler *smp, const tl_token *p, int np, int n,
                          tl_token *out, double *secs) {
  tl_status s = tl_spec_begin(sp, p, np);
  if (s) return s;
  int64_t t0 = tl_time_us();
  for (int k = 0; k < n;) {
    int32_t got = 0;
    if ((s = tl_spec_next(sp, smp, n - k, out + k, &got))) return s;
    k += got;
  }
  *secs = (double)(tl_time_us() - t0) / 1e6;
  return TL_OK;
}

static void stats(const double *ts, int n, result *r) {
  double sum = 0, sq = 0;
  for (int i = 0; i < n; i++) sum += ts[i];
  r->avg = sum / n;
  for (int i = 0; i < n; i++) sq += (ts[i] - r->avg) * (ts[i] - r->avg);
  r->sd = n > 1 ? sqrt(sq / (n - 1)) : 0.0;
}

/* -n greedy tokens of text (-f FILE, or a verse) with the target alone and
 * speculatively, alternating, after a warm-up of each; 0 or the exit status */
static int bench_spec(cli_opts *o, tl_model *m, spec_result *r) {
  char *text = NULL;
  size_t len = sizeof k_spec_prompt - 1;
  if (o->text_file && !(text = cli_read_file(o->text_file, &len))) return 1;
  size_t np = 0;
  tl_token *p = cli_tokenize(m, text ? text : k_spec_prompt, len, tl_model_add_bos(m), true, &np);
  free(text);
  if (!p) return 1;
  int n = o->n_gen > 0 ? o->n_gen : 128, rc = 1;
  tl_context *c = cli_new_context(m, o, (int)np + n + 72, 0);
  tl_model *dm = NULL;
  tl_context *dc = NULL;
  tl_spec *sp = NULL;
  tl_sampler *smp = NULL;
  tl_token *a = malloc(sizeof(tl_token) * (size_t)n * 2), *b = a ? a + n : NULL;
  tl_sampler_params gp = tl_sampler_default_params();
  gp.temperature = 0.0f;
  if (!c || !a || cli_spec_new(o, c, &dm, &dc, &sp)) goto done;
  tl_status s = tl_sampler_new(&gp, &smp);
  double tp[64], tsp[64], secs = 0;
  r->same = true;
  r->n_prompt = (int)np;
  for (int i = -1; !s && i < o->reps; i++) { /* i = -1: the warm-up */
    if (i == 0) tl_spec_reset_stats(sp);
    if (!(s = spec_plain_run(c, smp, p, (int)np, n, a, &secs)) && i >= 0) tp[i] = n / secs;
    if (!s && !(s = spec_run(sp, smp, p, (int)np, n, b, &secs)) && i >= 0) tsp[i] = n / secs;
    if (!s && memcmp(a, b, sizeof(tl_token) * (size_t)n)) r->same = false;
  }
  if (s) {
    rc = cli_fail(s);
    goto done;
  }
  stats(tp, o->reps, &r->plain);
  stats(tsp, o->reps, &r->spec);
  r->plain.n_gen = r->spec.n_gen = n;
  tl_spec_get_stats(sp, &r->st);
  rc = 0;
done:
  tl_sampler_free(smp);
  tl_spec_free(sp);
  tl_context_free(dc);
  tl_model_free(dm);
  tl_context_free(c);
  free(a);
  free(p);
  return rc;
}

int cmd_bench(cli_opts *o) {
  if (o->n_prompt == 0 && o->n_gen == 0) return cli_die("bench: -p and -n are both 0");
  /* the table's header at once and each row as its test ends (as
   * llama-bench); --json prints at the end */
  if (!o->json) {
    printf("| model | size | params | backend | threads | test | t/s |\n");
    printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    fflush(stdout);
  }
  tl_model *m = cli_load_model(o, false, NULL);
  if (!m) return 1;
  int need = o->depth + (o->n_prompt > o->n_gen ? o->n_prompt : o->n_gen);
  tl_context *c = cli_new_context(m, o, need, o->n_prompt > 512 ? o->n_prompt : 512);
  if (!c) {
    tl_model_free(m);
    return 1;
  }
  int32_t nv = tl_model_n_vocab(m);
  const char *desc = tl_model_desc(m);
  int nt = tl_context_n_threads(c);
  result res[2];
  int nres = 0;
  tl_status s = TL_OK;
  for (int pp = 1; pp >= 0 && !s; pp--) {
    if ((pp ? o->n_prompt : o->n_gen) == 0) continue;
    if ((s = measure(c, nv, o, pp, &res[nres]))) break;
    if (!o->json) {
      char test[32];
      int k = res[nres].n_prompt ? snprintf(test, sizeof test, "pp%d", res[nres].n_prompt)
                                 : snprintf(test, sizeof test, "tg%d", res[nres].n_gen);
      if (o->depth) snprintf(test + k, sizeof test - (size_t)k, " @ d%d", o->depth);
      printf("| %s | %.2f GiB | %.2f B | %s (%s) | %d | %s | %.2f ± %.2f |\n", desc,
             (double)tl_model_size_bytes(m) / (1024.0 * 1024.0 * 1024.0),
             (double)tl_model_n_params(m) / 1e9, tl_context_backend(c), tl_context_kernels(c), nt,
             test, res[nres].avg, res[nres].sd);
      fflush(stdout);
    }
    nres++;
  }
  if (s) {
    tl_context_free(c);
    tl_model_free(m);
    return cli_fail(s);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double rss_mib = (double)ru.ru_maxrss / 1024.0;
  /* the resident memory now, anonymous and file-backed (the mapped weights) */
  long anon_kb = -1, file_kb = -1;
  FILE *st = fopen("/proc/self/status", "r");
  if (st) {
    char line[256];
    while (fgets(line, sizeof line, st)) {
      if (!strncmp(line, "RssAnon:", 8)) anon_kb = atol(line + 8);
      if (!strncmp(line, "RssFile:", 8)) file_kb = atol(line + 8);
    }
    fclose(st);
  }
  uint64_t bytes_tok = tl_model_decode_bytes(m);
  double bw = o->membw ? measure_read_bw(nt) : 0;
  const char *kv = tl_kv_type_name((tl_kv_type)o->kv);
  spec_result sr;
  const bool spec = o->draft || o->lookup;
  char spec_name[32];
  snprintf(spec_name, sizeof spec_name, "%s", o->draft ? "draft" : "lookup");
  if (spec) {
    int rc = bench_spec(o, m, &sr);
    if (rc) {
      tl_context_free(c);
      tl_model_free(m);
      return rc;
    }
  }
  const tl_spec_stats *ss = &sr.st;
  double acc_rate = spec && ss->n_drafted ? (double)ss->n_accepted / (double)ss->n_drafted : 0;
  double passes = spec && ss->n_generated ? (double)ss->n_target / (double)ss->n_generated : 0;
  uint64_t g_now, g_peak, g_used;
  const bool gpu = tl_context_device_memory(c, &g_now, &g_peak, &g_used);
  if (o->json) {
    printf("[\n");
    for (int i = 0; i < nres; i++) {
      printf(
          "  {\"model_type\": \"%s\", \"type\": \"%s\", \"model_size\": %llu, "
          "\"model_n_params\": %llu, \"n_threads\": %d, \"n_prompt\": %d, \"n_gen\": %d, "
          "\"n_depth\": %d, \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"repetitions\": %d, "
          "\"type_k\": \"%s\", \"type_v\": \"%s\", \"bytes_per_token\": %llu, "
          "\"peak_rss_bytes\": %llu, \"rss_anon_bytes\": %lld, \"rss_file_bytes\": %lld, "
          "\"gpu_peak_bytes\": %llu, \"read_bw_bytes_per_s\": %.0f, \"storage_read_per_token\": "
          "%.0f, \"backend\": \"%s\", \"kernels\": \"%s\"}%s\n",
          desc, tl_model_weight_type(m), (unsigned long long)tl_model_size_bytes(m),
          (unsigned long long)tl_model_n_params(m), nt, res[i].n_prompt, res[i].n_gen, o->depth,
          res[i].avg, res[i].sd, o->reps, kv, kv, (unsigned long long)bytes_tok,
          (unsigned long long)ru.ru_maxrss * 1024ull, (long long)anon_kb * 1024,
          (long long)file_kb * 1024, (unsigned long long)g_peak, bw, res[i].read_per_tok,
          tl_context_backend(c), tl_context_kernels(c), i + 1 < nres || spec ? "," : "");
    }
    for (int i = 0; spec && i < 2; i++)
      printf(
          "  {\"model_type\": \"%s\", \"type\": \"%s\", \"n_threads\": %d, \"test\": "
          "\"spec_%s\", \"n_prompt\": %d, \"n_gen\": %d, \"avg_ts\": %.6f, \"stddev_ts\": "
          "%.6f, \"repetitions\": %d, \"n_drafted\": %lld, \"n_accepted\": %lld, "
          "\"acceptance\": %.6f, \"target_passes_per_token\": %.6f, \"same_tokens\": %s, "
          "\"backend\": \"%s\"}%s\n",
          desc, tl_model_weight_type(m), nt, i ? spec_name : "plain", sr.n_prompt, sr.plain.n_gen,
          i ? sr.spec.avg : sr.plain.avg, i ? sr.spec.sd : sr.plain.sd, o->reps,
          i ? (long long)ss->n_drafted : 0LL, i ? (long long)ss->n_accepted : 0LL,
          i ? acc_rate : 0.0, i ? passes : 1.0, sr.same ? "true" : "false", tl_context_backend(c),
          i ? "" : ",");
    printf("]\n");
  } else {
    if (spec) {
      printf("| %s | | | %s | %d | tg%d greedy, prompt %d | %.2f ± %.2f |\n", desc,
             tl_context_backend(c), nt, sr.plain.n_gen, sr.n_prompt, sr.plain.avg, sr.plain.sd);
      printf("| %s | | | %s | %d | tg%d %s | %.2f ± %.2f |\n", desc, tl_context_backend(c), nt,
             sr.spec.n_gen, o->draft ? "--draft" : "--lookup", sr.spec.avg, sr.spec.sd);
      printf(
          "\nspeculative (%s%s): drafted %lld, accepted %lld (%.1f%%), %.3f target passes per "
          "token, %.2fx the target alone's speed; tokens %s\n",
          o->draft ? "draft " : "lookup", o->draft ? o->draft : "", (long long)ss->n_drafted,
          (long long)ss->n_accepted, 100.0 * acc_rate, passes,
          sr.plain.avg > 0 ? sr.spec.avg / sr.plain.avg : 0.0, sr.same ? "identical" : "DIFFERENT");
      printf(
          "per target pass: %.3f ms verifying %.2f tokens, %.3f ms drafting; the target alone: "
          "%.3f ms per token\n",
          ss->n_target ? (double)ss->t_target_us / 1000.0 / (double)ss->n_target : 0.0,
          ss->n_target ? 1.0 + (double)ss->n_drafted / (double)ss->n_target : 0.0,
          ss->n_target ? (double)ss->t_draft_us / 1000.0 / (double)ss->n_target : 0.0,
          sr.plain.avg > 0 ? 1000.0 / sr.plain.avg : 0.0);
    }
    for (int i = 0; i < nres; i++)
      if (res[i].n_gen)
        printf(
            "\ntg: %.1f MiB of weights read per token, %.1f GB/s at %.2f tok/s; peak RSS "
            "%.0f MiB (at the end: RssAnon %.0f MiB, RssFile %.0f MiB); %.1f MiB per token read "
            "from storage\n",
            (double)bytes_tok / (1024.0 * 1024.0), (double)bytes_tok * res[i].avg / 1e9, res[i].avg,
            rss_mib, (double)anon_kb / 1024.0, (double)file_kb / 1024.0,
            res[i].read_per_tok / (1024.0 * 1024.0));
    if (gpu)
      printf(
          "GPU memory: peak %.0f MiB held by the backend (weights, KV cache, buffers, scratch); "
          "%.0f MiB in use on the device\n",
          (double)g_peak / 1048576.0, (double)g_used / 1048576.0);
    if (bw > 0) {
      printf("memory read bandwidth (%d threads): %.1f GB/s\n", nt, bw / 1e9);
      for (int i = 0; i < nres; i++)
        if (res[i].n_gen)
          printf("tg roofline: %.2f tok/s; measured tg is %.0f%% of it\n", bw / (double)bytes_tok,
                 100.0 * res[i].avg * (double)bytes_tok / bw);
    }
  }
  tl_context_free(c);
  tl_model_free(m);
  return 0;
}
