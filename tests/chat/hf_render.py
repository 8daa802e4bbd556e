"""Renders chat templates as Hugging Face's apply_chat_template does
(transformers' _compile_jinja_template): jinja2's ImmutableSandboxedEnvironment
with trim_blocks, lstrip_blocks and loop controls, tojson with
ensure_ascii=False, raise_exception raising TemplateError, strftime_now."""
import json
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # as transformers: no HTML escaping, non-ASCII kept
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


class AssistantTracker(Extension):
    """transformers' {% generation %} tag (marks assistant text; renders its body)"""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def compile_template(source):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, "jinja2.ext.loopcontrols"])
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
