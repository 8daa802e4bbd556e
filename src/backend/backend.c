/* Backend selection: the backends this build has, by name. */
#include "backend/backend.h"
#include "backend/cpu/cpu.h"

static const char *const g_names[] = {"cpu", NULL};

const char *const *tl_backend_names(void) {
  return g_names;
}

tl_status tl_backend_new(const char *name, const tl_backend_config *cfg, tl_backend **out) {
  if (!out || !cfg) return tl_fail(TL_ERR_INVALID_ARG, "tl_backend_new: invalid arguments");
  *out = NULL;
  if (!name || !*name || !strcmp(name, "auto")) {
    tl_status s = tl_backend_cpu_new(cfg, out);
    if (!s) tl_log(TL_LOG_INFO, "backend auto: cpu (no GPU backend in this build)");
    return s;
  }
  if (!strcmp(name, "cpu")) return tl_backend_cpu_new(cfg, out);
  return tl_fail(TL_ERR_UNSUPPORTED, "unknown backend '%.64s' (this build has: cpu, auto)", name);
}

void tl_backend_free(tl_backend *be) {
  if (be) be->free(be);
}

bool tl_backend_type_supported(uint32_t type) {
  return tl_cpu_supports_type(type);
}

void tl_backend_config_options(tl_backend_config *cfg, const tl_context_params *p) {
  cfg->cpu_kernels = p->cpu_kernels;
  cfg->att_tile = p->att_tile;
}

/* The model level's accessor (model/context.c); the public calls that name
 * the backend's compute are answered here. */
const tl_backend *tl_context_get_backend(const tl_context *c);

const char *tl_context_kernels(const tl_context *c) {
  return tl_context_get_backend(c)->detail;
}
