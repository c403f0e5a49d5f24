"""Talks to `swerl serve` with the official `openai` Python client (driven by serve.rs beside it).

Usage: client.py BASE_URL TIGHT_BASE_URL MODEL_NAME CONTEXT
BASE_URL serves a tiny byte-level chat model; TIGHT_BASE_URL the same model with --max-queue 1.
Every check raises on failure; the last line printed is `ok <number of checks>`.
"""
import concurrent.futures
import json
import sys
import threading
import urllib.error
import urllib.request

import openai

base, tight, name, context = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def raw_post(url, body, content_type="application/json"):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# Models.
models = client.models.list()
check([m.id for m in models.data] == [name], f"models: {models}")

# Completions: text, usage counts, finish reasons.
c = client.completions.create(model=name, prompt="def add(a, b):", max_tokens=8, temperature=0)
check(isinstance(c.choices[0].text, str), "completion text")
check(c.usage.prompt_tokens == len("def add(a, b):".encode()), f"prompt tokens: {c.usage}")
check(1 <= c.usage.completion_tokens <= 8, f"completion tokens: {c.usage}")
check(c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens, "total tokens")
check(c.choices[0].finish_reason in ("stop", "length"), "finish reason")

# Greedy is deterministic.
c2 = client.completions.create(model=name, prompt="def add(a, b):", max_tokens=8, temperature=0)
check(c2.choices[0].text == c.choices[0].text, "greedy repeats")

# Chat with n > 1 and seeds: reproducible, and the samples of one request differ.
msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Fix the bug in foo()."}]
a = client.chat.completions.create(model=name, messages=msgs, n=4, seed=11, temperature=1.0, max_tokens=12)
b = client.chat.completions.create(model=name, messages=msgs, n=4, seed=11, temperature=1.0, max_tokens=12)
d = client.chat.completions.create(model=name, messages=msgs, n=4, seed=12, temperature=1.0, max_tokens=12)
ta = [ch.message.content for ch in a.choices]
check(len(a.choices) == 4 and [ch.index for ch in a.choices] == [0, 1, 2, 3], "n choices")
check(all(ch.message.role == "assistant" for ch in a.choices), "assistant role")
check(ta == [ch.message.content for ch in b.choices], "same seed, same samples")
check(ta != [ch.message.content for ch in d.choices], "another seed, other samples")
check(len(set(ta)) > 1, f"the samples of one request differ: {ta}")
check(a.usage.completion_tokens <= 4 * 12 and a.usage.prompt_tokens > 0, f"chat usage {a.usage}")

# Streaming equals the non-streamed result (chat and completions), with usage at the end.
stream = client.chat.completions.create(model=name, messages=msgs, n=4, seed=11, temperature=1.0, max_tokens=12,
                                        stream=True, stream_options={"include_usage": True})
parts, finish, usage = [""] * 4, [None] * 4, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for ch in chunk.choices:
        parts[ch.index] += ch.delta.content or ""
        finish[ch.index] = ch.finish_reason or finish[ch.index]
check(parts == ta, f"streamed chat {parts} vs {ta}")
check(finish == [ch.finish_reason for ch in a.choices], "streamed finish reasons")
check(usage is not None and usage.completion_tokens == a.usage.completion_tokens, f"stream usage {usage}")
text = ""
for chunk in client.completions.create(model=name, prompt="def add(a, b):", max_tokens=8, temperature=0,
                                       stream=True):
    text += chunk.choices[0].text if chunk.choices else ""
check(text == c.choices[0].text, f"streamed completion {text!r}")

# Stop strings cut the text before the first match, streamed or not.
free = None
for p in ["import os\n", "class A:", "hello world", "x = 1", "#!", "fn main() {"]:
    r = client.completions.create(model=name, prompt=p, max_tokens=24, temperature=0)
    if len(r.choices[0].text) >= 8 and "\ufffd" not in r.choices[0].text[:8]:
        free, prompt = r.choices[0].text, p
        break
check(free is not None, "a greedy completion long enough for a stop string")
stop = free[3:5]
cut = free.index(stop)
s = client.completions.create(model=name, prompt=prompt, max_tokens=24, temperature=0, stop=[stop, "never-there"])
check(s.choices[0].text == free[:cut], f"stop: {s.choices[0].text!r} vs {free[:cut]!r}")
check(s.choices[0].finish_reason == "stop", "stop finish reason")
streamed = "".join(ch.choices[0].text for ch in client.completions.create(
    model=name, prompt=prompt, max_tokens=24, temperature=0, stop=stop, stream=True) if ch.choices)
check(streamed == free[:cut], f"streamed stop: {streamed!r}")

# Log-probs.
l = client.completions.create(model=name, prompt="abc", max_tokens=5, temperature=0.7, seed=3, logprobs=1)
lp = l.choices[0].logprobs
check(len(lp.token_logprobs) == l.usage.completion_tokens and all(x <= 0 for x in lp.token_logprobs), "logprobs")
lc = client.chat.completions.create(model=name, messages=msgs, max_tokens=5, seed=3, logprobs=True)
check(len(lc.choices[0].logprobs.content) == lc.usage.completion_tokens, "chat logprobs")

# Bad input: 4xx with an OpenAI error body, never a crash.
status, body = raw_post(base + "/chat/completions", b"{not json")
check(status == 400 and "message" in body["error"], f"malformed JSON: {status} {body}")
status, body = raw_post(base + "/completions", json.dumps({"model": name}).encode())
check(status == 400 and "prompt" in body["error"]["message"], f"missing prompt: {status} {body}")
status, body = raw_post(base + "/completions", b"x" * (200 << 10))
check(status == 413 and "message" in body["error"], f"oversize body: {status} {body}")
for kwargs, what in [
    ({"temperature": 5.0}, "temperature"),
    ({"n": 0}, "n"),
    ({"max_tokens": context * 2}, "max_tokens past the context"),
    ({"top_p": 0.0}, "top_p"),
]:
    try:
        client.completions.create(model=name, prompt="hi", **{"max_tokens": 4, **kwargs})
        check(False, f"{what} accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body["message"], what)
try:
    client.completions.create(model=name, prompt="a" * (context + 10), max_tokens=4)
    check(False, "a prompt longer than the context was accepted")
except openai.BadRequestError as e:
    check("context" in e.body["message"], f"long prompt: {e.body}")
try:
    client.completions.create(model="other-model", prompt="hi", max_tokens=4)
    check(False, "unknown model accepted")
except openai.NotFoundError:
    check(True, "unknown model")

# 32 concurrent clients, all answered; their samples equal the same requests made one by one.
def ask(i):
    r = client.chat.completions.create(model=name, messages=[{"role": "user", "content": f"question {i}"}],
                                       seed=i, temperature=1.0, max_tokens=4 + i % 9)
    return r.choices[0].message.content

with concurrent.futures.ThreadPoolExecutor(32) as pool:
    answers = list(pool.map(ask, range(32)))
check(len(answers) == 32 and all(isinstance(x, str) for x in answers), "32 concurrent clients")
check([ask(i) for i in (0, 7, 31)] == [answers[0], answers[7], answers[31]], "batching does not change samples")

# A full queue answers 503 (the tight server holds one request at a time).
tight_client = openai.OpenAI(base_url=tight, api_key="unused", max_retries=0, timeout=120)
codes = []
lock = threading.Lock()

def busy(i):
    try:
        tight_client.completions.create(model=name, prompt="x" * 200, max_tokens=300, temperature=1.0, seed=i)
        code = 200
    except openai.APIStatusError as e:
        code = e.status_code
        check(code != 503 or "busy" in e.body["message"], f"503 message {e.body}")
    with lock:
        codes.append(code)

with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(busy, range(8)))
check(200 in codes and 503 in codes and set(codes) <= {200, 503}, f"queue full: {codes}")

print(f"ok {checks}")
