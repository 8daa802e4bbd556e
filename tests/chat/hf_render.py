"""Renders chat templates as Hugging Face's apply_chat_template does
(transformers' _compile_jinja_template): jinja2's ImmutableSandboxedEnvironment
with trim_blocks, lstrip_blocks and loop controls, tojson with
ensure_ascii=False, raise_exception raising TemplateError, strftime_now."""
import json
from datetime import datetime

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # as transformers: no HTML escaping, non-ASCII kept
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


def compile_template(source):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def render(source, variables):
    """(True, text) or (False, error message)"""
    try:
        t = compile_template(source)
    except Exception as e:  # syntax errors
        return False, "syntax: " + str(e)
    try:
        return True, t.render(**variables)
    except Exception as e:
        return False, str(e)
