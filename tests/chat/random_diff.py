#!/usr/bin/env python3
"""Random differential testing of the Jinja interpreter against Python's jinja2
(configured as hf_render.py): random expressions, statement programs (scoping,
loops, macros, break/continue) and whitespace-control layouts, each rendered by
both; differences are printed. Not part of ctest: known, accepted differences
remain (jinja2's filters are lazy generators, so errors they would raise later
never happen and their repr shows an address; jinja2 folds constant
expressions at compile time, e.g. a constant subscript of a non-container
becomes undefined; '-7 ** x' with a folded negative base).

usage: random_diff.py TORCHLESS expr|stmt|ws [SEED] [N] [-e: also error-message differences]"""
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_render  # noqa: E402

BINARY = sys.argv[1] if len(sys.argv) > 1 else ""
MODE = sys.argv[2] if len(sys.argv) > 2 else "expr"
R = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
N = int(sys.argv[4]) if len(sys.argv) > 4 else 500
SHOW_ERRORS = "-e" in sys.argv
TMP = tempfile.mkdtemp()
STRS = ['"abc"', "'x y'", '"Hello World"', '"é🌍"', '""', '"  pad  "', '"a,b,,c"', "'it\\'s'", '"1.5"', '"42"', '"UPPER lower"', '"line1\\nline2"']
ATOMS = ['0', '1', '-3', '7', '2.5', '0.1', '1e3', 'none', 'true', 'false'] + STRS + ['[1, 2, 3]', '[]', '["b", "a", "C"]', '{"k": 1, "a": "v"}', '{}', '(1, "t")', 'messages', 'messages[0]', 'messages[0].content', 'messages[-1].role', 'tools', 'undefined_var', 'messages[0].nope', 'd', 'd.x', 'd["y"]', 'lst', 'n', 'f', 'objs', 'objs[0]', 'objs[1].a', 'ustr']
FILTERS = ['sort(attribute="role")', 'sort(attribute="role", reverse=true)', 'map(attribute="role", default="z") | list', 'join(",", attribute="role")', 'selectattr("content", "defined") | list', 'rejectattr("role", "in", ["user"]) | list', 'sort(attribute="n") | list', 'map(attribute="a.b") | list', 'dictsort(by="value")', 'dictsort(true)', 'groupby("role") | list', 'unique(attribute="role") | list', 'min(attribute="n")', 'max(attribute="n")', 'sum(attribute="n")', 'tojson(sort_keys=true)', 'tojson(indent=2, separators=[",", ": "])', 'string | length', 'list | sort(reverse=true)', 'batch(3, "pad") | list', 'indent(4, first=true)', 'indent("..")', 'truncate(4, true)', 'truncate(4, end="~")', 'replace("l", "L", 1)', 'int(base=16)', 'round(1, "floor")', 'first | string', 'last | default("none")', 'length', 'first', 'last', 'upper', 'lower', 'title', 'capitalize', 'trim', 'string', 'list', 'sort', 'reverse', 'unique', 'tojson', 'int', 'float', 'abs', 'round', 'join', 'join(", ")', 'default("D")', 'default("D", true)', 'items', 'dictsort', 'min', 'max', 'sum', 'count', 'wordcount', 'replace("a", "b")', 'indent(2)', 'center(7)', 'batch(2)', 'map("string")', 'select', 'reject', 'map(attribute="role")', 'selectattr("role")', 'tojson(indent=1)', 'e', 'safe', 'list | length', 'format(1, 2)', 'truncate(5)']
TESTS = ['defined', 'undefined', 'none', 'string', 'number', 'integer', 'float', 'mapping', 'iterable', 'sequence', 'boolean', 'true', 'false', 'odd', 'even', 'divisibleby 2', 'callable', 'lower', 'upper', 'in [1, "abc"]', 'eq 1', 'gt 0', 'sameas none']
METHODS = ['.split(None, 1)', '.rsplit(" ", 1)', '.strip("Hx")', '.partition(" ")', '.rpartition("l")', '.center(9, "*")', '.zfill(6)', '.title()', '.capitalize()', '.swapcase()', '.startswith(("H", "x"))', '.rfind("e")', '.count("")', '.replace("", "-")', '.format(a=1)', '.get("role", "dflt")', '.items() | list', '.index("x")', '.upper()', '.lower()', '.strip()', '.split()', '.split(",")', '.startswith("a")', '.endswith("c")', '.replace("a", "z")', '.title()', '.find("b")', '.count("a")', '.get("k")', '.items()', '.keys()', '.values()', '.index(1)', '.format(1)', '.splitlines()', '.lstrip("a")', '.rstrip()', '.isdigit()', '.join(["x", "y"])']
BIN = ['+', '-', '*', '/', '//', '%', '**', '~', '==', '!=', '<', '>', '<=', '>=', 'in', 'not in', 'and', 'or']

def expr(d):
    r = R.random()
    if d <= 0 or r < 0.25:
        return R.choice(ATOMS)
    if r < 0.45:
        return "(%s %s %s)" % (expr(d - 1), R.choice(BIN), expr(d - 1))
    if r < 0.6:
        return "%s | %s" % (expr(d - 1), R.choice(FILTERS))
    if r < 0.68:
        return "(%s is %s%s)" % (expr(d - 1), R.choice(["", "not "]), R.choice(TESTS))
    if r < 0.78:
        return "(%s)%s" % (expr(d - 1), R.choice(METHODS))
    if r < 0.84:
        return "(%s)[%s]" % (expr(d - 1), R.choice(['0', '-1', '1:', ':2', '::-1', '"k"', '1:3', '"role"']))
    if r < 0.9:
        return "(%s if %s else %s)" % (expr(d - 1), expr(d - 1), expr(d - 1))
    if r < 0.95:
        return "(not %s)" % expr(d - 1)
    return "[%s, %s]" % (expr(d - 1), expr(d - 1))

VARS = {"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Yo é"}],
        "tools": None, "d": {"x": [1, 2], "y": "s"}, "lst": [3, 1.5, -2], "n": 5, "f": 0.25,
        "objs": [{"role": "b", "n": 2, "a": {"b": "x"}}, {"role": "A", "n": 1, "a": {"b": "y"}}, {"role": "b", "n": 3}], "ustr": "ÀÉÎ ŒÇ straße Ωmega"}
SVARS = ["x", "y", "i", "ns.a", "loop.index", "k"]
def val():
    return R.choice(["1", "x", "y", "i", "x ~ 'q'", "ns.a", "loop.index0", "[1,2]", "k", "m(3)", "none", "caller_v"])
def stmt(d):
    r = R.random()
    if r < 0.2: return "{{ %s }}," % R.choice(["x", "y", "i", "ns.a", "k", "loop.index", "loop.length", "loop.last", "m(1)", "z"])
    if r < 0.35: return "{%% set %s = %s %%}" % (R.choice(["x", "y", "i", "k"]), val())
    if r < 0.45: return "{%% set ns.a = %s %%}" % val()
    if r < 0.55 and d < 3: return "{%% for %s in %s %%}%s{%% endfor %%}" % (R.choice(["i", "x", "k"]), R.choice(["[1, 2]", "range(3)", "'ab'", "[]", "{'p': 1}"]), sbody(d+1))
    if r < 0.62 and d < 3: return "{%% for a, b in [[1, 2], [3, 4]] if a > %d %%}%s{%% else %%}E{%% endfor %%}" % (R.randint(0, 3), sbody(d+1))
    if r < 0.7 and d < 3: return "{%% if %s %%}%s{%% elif %s %%}%s{%% else %%}%s{%% endif %%}" % (val(), sbody(d+1), val(), sbody(d+1), sbody(d+1))
    if r < 0.75: return R.choice(["{% break %}", "{% continue %}"])
    if r < 0.82 and d < 3: return "{%% macro m(p, q=%s) %%}%s{{ p }}{%% endmacro %%}" % (val(), sbody(d+1))
    if r < 0.88 and d < 2: return "{%% set blk %%}%s{%% endset %%}{{ blk }}" % sbody(d+1)
    if r < 0.94 and d < 2: return "{%% with x = %s %%}%s{%% endwith %%}" % (val(), sbody(d+1))
    return "{{ %s }}" % val()
def sbody(d): return "".join(stmt(d) for _ in range(R.randint(1, 4)))
TEXT = ["a", "b c", " ", "  ", "\t", "\n", "\n\n", " \n ", "x\n  ", "\r\n", "  y", "{", "}", "%", "#", "-", "{ {", "} }"]
def sign(): return R.choice(["", "", "-", "+"])
def rsign(): return R.choice(["", "", "-", "+"])
def piece(depth):
    r = R.random()
    if r < 0.35: return "".join(R.choice(TEXT) for _ in range(R.randint(1, 3)))
    if r < 0.5: return "{{%s 'v' %s}}" % (R.choice(["", "-"]), R.choice(["", "-"]))
    if r < 0.6: return "{#%s c %s#}" % (sign(), rsign())
    if r < 0.7: return "{%%%s set z = 1 %s%%}" % (sign(), rsign())
    if r < 0.8 and depth < 3:
        return "{%%%s if true %s%%}%s{%%%s else %s%%}%s{%%%s endif %s%%}" % (sign(), rsign(), wbody(depth+1), sign(), rsign(), wbody(depth+1), sign(), rsign())
    if r < 0.9 and depth < 3:
        return "{%%%s for i in [1, 2] %s%%}%s{%%%s endfor %s%%}" % (sign(), rsign(), wbody(depth+1), sign(), rsign())
    if r < 0.95: return "{%%%s raw %s%%} {{ x }} \n{%%%s endraw %s%%}" % (R.choice(["", "-"]), R.choice(["", "-"]), sign(), rsign())
    return "{%%%s if false %s%%}no{%%%s endif %s%%}" % (sign(), rsign(), sign(), rsign())
def wbody(depth): return "".join(piece(depth) for _ in range(R.randint(0, 4)))


def ours(src, variables):
    tp = os.path.join(TMP, "t.jinja")
    vp = os.path.join(TMP, "v.json")
    with open(tp, "w", encoding="utf-8") as f:
        f.write(src)
    with open(vp, "w", encoding="utf-8") as f:
        json.dump(variables, f, ensure_ascii=False)
    r = subprocess.run([BINARY, "template", "--template", tp, "--input", vp], capture_output=True)
    if r.returncode not in (0, 1):
        return None, "CRASH rc=%d" % r.returncode
    if r.returncode == 0:
        return True, r.stdout.decode("utf-8", errors="replace")
    return False, r.stderr.decode("utf-8", errors="replace").rstrip("\n")


def main():
    if not BINARY:
        print(__doc__)
        return 2
    same = diff = errdiff = 0
    for _ in range(N):
        if MODE == "expr":
            src, variables = "{{ %s }}" % expr(3), VARS
        elif MODE == "stmt":
            src, variables = "{% set ns = namespace(a=0) %}{% set x = 'X' %}" + sbody(0), {}
        else:
            src, variables = wbody(0) + R.choice(["", "\n", " \n", "\n\n"]), {}
        ok, exp = hf_render.render(src, json.loads(json.dumps(variables)))
        if not ok and exp.startswith("syntax: "):
            continue
        gok, got = ours(src, variables)
        if gok is None:
            diff += 1
            print("CRASH", repr(src))
        elif ok == gok and exp == got:
            same += 1
        elif ok == gok and not ok:
            errdiff += 1
            if SHOW_ERRORS:
                print("ERRMSG", repr(src), "\n  python:", exp, "\n  ours:  ", got)
        else:
            diff += 1
            print("DIFF", repr(src))
            print("  python:", ok, repr(exp[:300]))
            print("  ours:  ", gok, repr(got[:300]))
    print("same %d, different %d, different error messages %d" % (same, diff, errdiff))
    return 0


if __name__ == "__main__":
    sys.exit(main())
