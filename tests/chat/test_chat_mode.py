#!/usr/bin/env python3
"""torchless chat through a pipe and through a pseudo-terminal, and run --chat.
usage: test_chat_mode.py TORCHLESS MODEL"""
import os
import pty
import select
import signal
import subprocess
import sys
import time

FAILS = []


def check(cond, what, detail=""):
    print("%s: %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        FAILS.append(what)
        if detail:
            print("  " + detail.replace("\n", "\n  ")[:3000])


def pipe(binary, model, lines, *args, timeout=120):
    r = subprocess.run([binary, "chat", "-m", model, "--temp", "0", "-v"] + list(args),
                       input="".join(l + "\n" for l in lines).encode(), capture_output=True,
                       timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def reused(err):
    out = []
    for line in err.splitlines():
        if "reused from the cache" in line:
            w = line.split()
            out.append((int(w[2]), int(w[4])))
    return out


def test_pipe(binary, model):
    rc, out, err = pipe(binary, model, ["Hello there", "Who are you?", "And then?"], "-n", "12")
    check(rc == 0, "pipe: exits 0 at the end of input", err)
    turns = reused(err)
    check(len(turns) == 3, "pipe: three turns", err)
    check(turns and turns[0][1] == 0, "pipe: the first turn evaluates the whole prompt", err)
    check(all(r > 0 and r < n for n, r in turns[1:]),
          "pipe: later turns reuse the cached prefix and evaluate only what is new", err)
    check("no chat template" not in err, "pipe: the demo's own template is used", err)
    r = subprocess.run([binary, "tokenize", "-m", model, "-p", "<s>[INST] Hello there [/INST]", "--no-bos"],
                       capture_output=True, timeout=60)
    want = len(r.stdout.split())
    check(turns and turns[0][0] == want,
          "pipe: the template's {{ bos_token }} is the model's BOS (%d tokens)" % want, err)
    # the same conversation twice gives the same replies (greedy)
    rc2, out2, _ = pipe(binary, model, ["Hello there", "Who are you?", "And then?"], "-n", "12")
    check(out == out2 and out.strip(), "pipe: greedy replies are reproducible", out + "\n---\n" + out2)

    rc, out, err = pipe(binary, model, ["Hello", "/system You are terse.", "Hi", "/reset", "Hello", "/exit",
                                        "never read"], "-n", "6")
    check(rc == 0, "pipe: /exit", err)
    check("system message set" in err and "conversation reset" in err, "pipe: /system and /reset", err)
    turns = reused(err)
    check(len(turns) == 3, "pipe: nothing after /exit is read", err)
    check(turns[2][1] > 0 and turns[2][0] < turns[1][0], "pipe: after /reset the prompt is short again "
          "and its shared prefix (the template's start) is still reused", err)

    # a template that rewrites earlier turns: the cache is dropped from the first difference
    tmpl = ("{{ bos_token }}{% for m in messages %}{% if loop.last %}[last] {% endif %}"
            "{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
    rc, out, err = pipe(binary, model, ["Hello there friend", "Again please", "Third time"], "-n", "6",
                        "--override-kv", "tokenizer.chat_template=str:" + tmpl)
    turns = reused(err)
    check(rc == 0 and len(turns) == 3, "rewrite: three turns", err)
    check(len(turns) == 3 and all(0 < turns[i][1] < turns[i - 1][0] for i in (1, 2)),
          "rewrite: only the prefix before the rewritten text is reused", err)

    # a model without a template: the plain format, said once
    rc, out, err = pipe(binary, model, ["Hello", "Again", "Third"], "-n", "8",
                        "--override-kv", "tokenizer.chat_template=str:")
    check(rc == 0, "plain: exits 0", err)
    check(err.count("no chat template") == 1, "plain: the fallback is said once", err)
    check(len(reused(err)) == 3, "plain: three turns", err)

    # outgrowing the context: oldest turns dropped, never the system message
    long_msg = " ".join(["word"] * 40)
    rc, out, err = pipe(binary, model, [long_msg + " one", long_msg + " two", long_msg + " three",
                                        long_msg + " four"], "-n", "8", "-c", "160",
                        "--system", "You are a helpful assistant.")
    check(rc == 0, "overflow: exits 0", err)
    check("outgrew the context" in err and "system message is kept" in err,
          "overflow: the oldest turns are dropped with a message, the system message kept", err)
    check(all(n + 8 <= 160 for n, _ in reused(err)), "overflow: every prompt fits with room for -n 8", err)
    rc, out, err = pipe(binary, model, [" ".join(["word"] * 400)], "-n", "8", "-c", "128")
    check(rc == 0 and "does not fit" in err, "overflow: a message longer than the context is refused", err)


def test_run_chat(binary, model):
    r = subprocess.run([binary, "run", "-m", model, "-p", "Hello", "--chat", "--system", "Be brief.",
                        "-n", "8", "--temp", "0"], capture_output=True, timeout=120)
    check(r.returncode == 0 and r.stdout.strip(), "run --chat: one user message through the template",
          r.stderr.decode(errors="replace"))
    check(b"[INST]" not in r.stdout, "run --chat: the prompt is not echoed")


def read_until(fd, pattern, timeout):
    buf = b""
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if pattern in buf:
                return True, buf
    return False, buf


def test_pty(binary, model):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(binary, [binary, "chat", "-m", model, "-n", "100000", "-c", "4096", "--temp", "0.8",
                          "--seed", "3", "--override-kv", "tokenizer.chat_template=str:"])
    try:
        ok, buf = read_until(fd, b"> ", 60)
        check(ok, "pty: the prompt '> ' is shown", buf.decode(errors="replace"))
        os.write(fd, b"Tell me a long story\r")
        ok, buf = read_until(fd, b"Tell me a long story", 10)
        ok, buf = read_until(fd, b" ", 60)  # the reply streams
        check(ok, "pty: the reply streams", buf.decode(errors="replace"))
        time.sleep(0.3)
        os.write(fd, b"\x03")  # Ctrl-C: stop the reply
        ok, buf = read_until(fd, b"> ", 60)
        check(ok and b"stopped" in buf, "pty: Ctrl-C stops the reply and the prompt returns",
              buf.decode(errors="replace")[-500:])
        os.write(fd, b"/system Be brief.\r")
        ok, buf = read_until(fd, b"> ", 30)
        check(ok and b"system message set" in buf, "pty: /system", buf.decode(errors="replace"))
        os.write(fd, b"\x03")  # Ctrl-C at the prompt: exit
        ok, buf = read_until(fd, b"\x00never", 10)
        _, status = os.waitpid(pid, 0)
        check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
              "pty: Ctrl-C at the prompt exits (status 0)", str(status))
        pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)

    # two Ctrl-C while a reply is generated: exit
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(binary, [binary, "chat", "-m", model, "-n", "100000", "-c", "4096", "--seed", "5",
                          "--override-kv", "tokenizer.chat_template=str:"])
    try:
        read_until(fd, b"> ", 60)
        os.write(fd, b"Go on\r")
        read_until(fd, b"Go on", 10)
        read_until(fd, b" ", 60)
        os.write(fd, b"\x03")  # (two at once could merge into one signal)
        time.sleep(0.2)
        os.write(fd, b"\x03")
        deadline = time.time() + 30
        status = None
        while time.time() < deadline:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                status = st
                break
            read_until(fd, b"\x00never", 0.2)
        check(status is not None, "pty: a second Ctrl-C exits", str(status))
        if status is not None:
            pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


def main():
    binary, model = sys.argv[1], sys.argv[2]
    test_pipe(binary, model)
    test_run_chat(binary, model)
    test_pty(binary, model)
    if FAILS:
        print("%d checks failed" % len(FAILS))
        return 1
    print("all chat-mode checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
