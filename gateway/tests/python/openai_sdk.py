"""Drives Switchboard's /v1 surface with the official `openai` package.

Usage: python openai_sdk.py BASE_URL TOKEN   (BASE_URL like http://127.0.0.1:PORT/v1)
Prints one JSON object with what each call returned; tests/openai.rs asserts on it.
"""

import json
import sys

import openai

base, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key=token, max_retries=0, timeout=30)
out = {}

out["models"] = sorted(m.id for m in client.models.list())

r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}])
out["plain"] = {
    "content": r.choices[0].message.content,
    "role": r.choices[0].message.role,
    "finish_reason": r.choices[0].finish_reason,
    "object": r.object,
}

chunks = list(
    client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "streaming please"}], stream=True
    )
)
out["stream"] = {
    "text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
    "pieces": len(chunks),
    "last_finish": chunks[-1].choices[0].finish_reason,
    "object": chunks[0].object,
}

# Earlier messages seed the history of a new session.
r = client.chat.completions.create(
    model="chat",
    messages=[
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ],
)
out["history"] = r.choices[0].message.content

# An `ask`: the question comes back; the next request in the session answers it.
q = client.chat.completions.create(
    model="approval", user="alice", messages=[{"role": "user", "content": "deploy v2"}]
)
a = client.chat.completions.create(
    model="approval",
    user="alice",
    messages=[
        {"role": "user", "content": "deploy v2"},
        {"role": "assistant", "content": q.choices[0].message.content},
        {"role": "user", "content": "approve"},
    ],
)
out["ask"] = {"question": q.choices[0].message.content, "answer": a.choices[0].message.content}

# Two turns of `chat` in one session continue the same conversation.
t1 = client.chat.completions.create(
    model="chat", extra_headers={"X-Session-Id": "s-42"}, messages=[{"role": "user", "content": "one"}]
)
t2 = client.chat.completions.create(
    model="chat", extra_headers={"X-Session-Id": "s-42"}, messages=[{"role": "user", "content": "two"}]
)
out["session"] = [t1.choices[0].message.content, t2.choices[0].message.content]

errors = {}
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
except openai.NotFoundError as e:
    errors["unknown_model"] = {"status": e.status_code, "body": e.body}
try:
    client.chat.completions.create(model="chat", messages=[{"role": "assistant", "content": "x"}])
except openai.BadRequestError as e:
    errors["last_not_user"] = {"status": e.status_code, "body": e.body}
try:
    openai.OpenAI(base_url=base, api_key="wrong-token-123456", max_retries=0).models.list()
except openai.AuthenticationError as e:
    errors["bad_key"] = {"status": e.status_code, "body": e.body}
out["errors"] = errors

print(json.dumps(out))
