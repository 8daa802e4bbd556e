/* tl_model_load: the plain loader (model/load.h), or, when the parameters ask
 * for a quantization type, the model quantizer into a temporary GGUF that is
 * then loaded. It sits in convert/ so that model/ needs nothing from the
 * converters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/core.h"
#include "model/load.h"

static bool quant_progress(const tl_quantize_progress *p, void *user) {
  (void)user;
  tl_log(TL_LOG_INFO, "quantizing [%d/%d] %s %s -> %s", p->index + 1, p->count, p->name,
         p->src_type, p->dst_type);
  return true;
}

/* Quantize into a temporary GGUF, load that (mapped), unlink it. */
static tl_status load_quantized(const char *path, const tl_model_params *params, tl_model **out) {
  const char *dir = getenv("TMPDIR");
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s/torchless-quant-XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkstemp(tmp);
  if (fd < 0)
    return tl_fail(TL_ERR_IO, "cannot create a temporary file in %s: %s",
                   dir && *dir ? dir : "/tmp", strerror(errno));
  close(fd);
  tl_quantize_params qp = tl_quantize_default_params();
  qp.ftype = (tl_ftype)params->quant_ftype;
  qp.progress = params->progress ? params->progress : quant_progress;
  qp.progress_user = params->progress ? params->progress_user : NULL;
  int64_t t0 = tl_time_us();
  tl_status s = tl_model_quantize(path, tmp, &qp);
  if (s) {
    unlink(tmp);
    return s;
  }
  tl_log(TL_LOG_INFO, "quantized '%s' to %s in %.1f s", path, tl_ftype_name(qp.ftype),
         (double)(tl_time_us() - t0) / 1e6);
  tl_model_params p2 = *params;
  p2.quant_ftype = -1;
  s = tl_model_load_as_is(tmp, &p2, out);
  unlink(tmp); /* the mapping stays valid */
  return s;
}

tl_status tl_model_load(const char *path, const tl_model_params *params, tl_model **out) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "tl_model_load: out is NULL");
  *out = NULL;
  if (!path) return tl_fail(TL_ERR_INVALID_ARG, "tl_model_load: path is NULL");
  tl_model_params def = tl_model_default_params();
  if (!params) params = &def;
  if (params->quant_ftype >= 0 && !params->vocab_only) return load_quantized(path, params, out);
  return tl_model_load_as_is(path, params, out);
}
