/* torchless quantize, synth and convert: the commands that write model
 * files, with a progress bar (a line per tensor when piped) and Ctrl-C to
 * cancel. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static bool g_bar; /* stderr is a terminal: one progress bar, redrawn */

/* The progress on stderr: on a terminal a bar redrawn per tensor, else
 * (piped) one line per tensor. A Ctrl-C cancels at the next tensor (the
 * library then removes its temporary file). */
static bool progress_cb(const tl_quantize_progress *p, void *user) {
  (void)user;
  if (g_bar) {
    char bar[31];
    int done = p->count > 0 ? (int)((int64_t)p->index * 30 / p->count) : 0;
    for (int i = 0; i < 30; i++) bar[i] = i < done ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %4d/%4d %-36.36s %s -> %s\033[K", bar, p->index + 1, p->count, p->name,
            p->src_type, p->dst_type);
  } else {
    fprintf(stderr,
            "[%4d/%4d] %-36s [%6" PRId64 ", %6" PRId64 "] %-5s -> %-5s %9.2f MiB -> %9.2f MiB\n",
            p->index + 1, p->count, p->name, p->ne[0], p->ne[1], p->src_type, p->dst_type,
            (double)p->src_bytes / 1048576.0, (double)p->dst_bytes / 1048576.0);
  }
  return !cli_interrupted;
}

static void progress_start(void) {
  g_bar = isatty(STDERR_FILENO);
  cli_catch_sigint();
}

/* the bar's line cleared for what comes next */
static void progress_end(void) {
  if (g_bar) fputs("\r\033[K", stderr);
}

/* --quant on load: the bar on a terminal, nothing when piped; Ctrl-C
 * cancels */
static bool load_progress_cb(const tl_quantize_progress *p, void *user) {
  return g_bar ? progress_cb(p, user) : !cli_interrupted;
}

/* a cold model file read ahead: "loading [####....] 120/850 MiB" */
static bool prefetch_cb(uint64_t done, uint64_t total, void *user) {
  (void)user;
  char bar[31];
  const int k = total ? (int)(done * 30 / total) : 30;
  for (int i = 0; i < 30; i++) bar[i] = i < k ? '#' : '.';
  bar[30] = 0;
  fprintf(stderr, "\rloading [%s] %" PRIu64 "/%" PRIu64 " MiB\033[K", bar, done >> 20, total >> 20);
  return !cli_interrupted;
}

void cli_prefetch(const tl_model *m) {
  if (!isatty(STDERR_FILENO)) return;
  const char *mn = getenv("TL_CLI_PREFETCH_MIN_MB"); /* a test hook (default 64) */
  const uint64_t min = (uint64_t)(mn ? atoll(mn) : 64) << 20;
  const uint64_t absent = tl_model_bytes_absent(m);
  if (absent == 0 || absent < min) return;
  cli_catch_sigint();
  const tl_status s = tl_model_prefetch(m, prefetch_cb, NULL);
  fputs("\r\033[K", stderr);
  if (s == TL_ERR_ABORTED && cli_interrupted) {
    cli_die("interrupted while loading the model");
    exit(CLI_EXIT_INTERRUPTED);
  }
}

void cli_load_progress(tl_model_params *mp, bool on) {
  if (on) {
    progress_start();
    mp->progress = load_progress_cb;
  } else {
    progress_end();
  }
}

/* A failed write: after a Ctrl-C it says so (the library has removed its
 * temporary file; OUT was not written), else the library's error. */
static int write_failed(tl_status s, const char *out) {
  if (!cli_interrupted) return cli_fail(s);
  cli_die("interrupted; '%s' was not written", out);
  return CLI_EXIT_INTERRUPTED;
}

int cmd_quantize(cli_opts *o) {
  const char *const *pos = o->pos;
  const char *mix = o->mix;
  tl_quantize_params qp = tl_quantize_default_params();
  qp.pure = o->pure;
  qp.n_threads = o->threads;
  if (o->n_pos < 3)
    return cli_die("usage: torchless quantize IN OUT TYPE [--mix q4_k_m|q5_k_m|q3_k_m]");
  tl_ftype ft;
  tl_status s = tl_ftype_from_name(pos[2], &ft);
  if (s) return cli_fail(s);
  if (mix) {
    tl_ftype mf;
    if ((s = tl_ftype_from_name(mix, &mf))) return cli_fail(s);
    /* the mix must be one of TYPE's: q4_k --mix q4_k_m (or q4_k_m --mix q4_k_m) */
    const char *tn = tl_ftype_name(ft), *mn = tl_ftype_name(mf);
    if (strncmp(tn, mn, 4) != 0 || strlen(mn) != 6 || mn[3] != 'K')
      return cli_die(
          "--mix %s does not apply to type %s (use q3_k, q4_k or q5_k with their "
          "_s/_m/_l mixes)",
          mix, pos[2]);
    ft = mf;
  }
  qp.ftype = ft;
  qp.progress = progress_cb;
  if (!strcmp(pos[0], pos[1])) return cli_die("IN and OUT are the same file");
  progress_start();
  int64_t t0 = tl_time_us();
  s = tl_model_quantize(pos[0], pos[1], &qp);
  progress_end();
  if (s) return write_failed(s, pos[1]);
  struct stat sti, sto;
  double mo = stat(pos[1], &sto) == 0 ? (double)sto.st_size / 1048576.0 : 0;
  if (stat(pos[0], &sti) == 0 && S_ISREG(sti.st_mode))
    fprintf(stderr, "wrote %s (%s): %.2f MiB -> %.2f MiB in %.1f s\n", pos[1], tl_ftype_name(ft),
            (double)sti.st_size / 1048576.0, mo, (double)(tl_time_us() - t0) / 1e6);
  else
    fprintf(stderr, "wrote %s (%s): %.2f MiB in %.1f s\n", pos[1], tl_ftype_name(ft), mo,
            (double)(tl_time_us() - t0) / 1e6);
  return 0;
}

int cmd_synth(cli_opts *o) {
  tl_synth_params sp = tl_synth_default_params();
  if (o->preset) sp.preset = o->preset;
  if (o->type >= 0) sp.ftype = (tl_ftype)o->type;
  sp.seed = o->seed;
  sp.tokenizer_model = o->tokenizer;
  if (o->layers) sp.n_layer = o->layers;
  sp.n_threads = o->threads;
  const char *out = o->out, *arch = o->arch;
  if (!out) return cli_die("synth needs -o OUT.gguf");
  if (arch) {
    const char *pa = !strncmp(sp.preset, "qwen3-", 6) ? "qwen3moe"
                     : !strncmp(sp.preset, "qwen", 4) ? "qwen2"
                                                      : "llama";
    if (strcmp(arch, pa) != 0)
      return cli_die("preset '%s' has architecture %s, not '%s'", sp.preset, pa, arch);
  }
  sp.progress = progress_cb;
  progress_start();
  int64_t t0 = tl_time_us();
  tl_status s = tl_synth_model(out, &sp);
  progress_end();
  if (s) return write_failed(s, out);
  fprintf(stderr, "wrote %s (%s, %s, seed %" PRIu64 ") in %.1f s\n", out, sp.preset,
          tl_ftype_name(sp.ftype), sp.seed, (double)(tl_time_us() - t0) / 1e6);
  return 0;
}

/* torchless convert IN OUT.bin [--quant f32|int8]: a Torchless .bin file */
int cmd_convert(cli_opts *o) {
  const char *const *pos = o->pos;
  bool int8 = o->int8;
  if (o->n_pos < 2) return cli_die("usage: torchless convert IN OUT.bin [--quant f32|int8]");
  if (!strcmp(pos[0], pos[1])) return cli_die("IN and OUT are the same file");
  progress_start();
  int64_t t0 = tl_time_us();
  tl_status s = tl_model_convert_native(pos[0], pos[1], int8, progress_cb, NULL);
  progress_end();
  if (s) return write_failed(s, pos[1]);
  struct stat sto;
  double mo = stat(pos[1], &sto) == 0 ? (double)sto.st_size / 1048576.0 : 0;
  fprintf(stderr, "wrote %s (Torchless .bin, %s): %.2f MiB in %.1f s\n", pos[1],
          int8 ? "int8" : "f32", mo, (double)(tl_time_us() - t0) / 1e6);
  return 0;
}
