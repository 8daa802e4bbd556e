/* The model loader under tl_model_load: the file (GGUF, Hugging Face folder
 * or Torchless .bin) loaded as it is. tl_model_load (convert/load.c) checks
 * the arguments and, when params->quant_ftype asks for it, quantizes first. */
#ifndef TL_MODEL_LOAD_H
#define TL_MODEL_LOAD_H

#include "torchless.h"

/* path, params and out are not NULL; params->quant_ftype is ignored. *out is
 * set on success only. */
tl_status tl_model_load_as_is(const char *path, const tl_model_params *params, tl_model **out);

#endif
