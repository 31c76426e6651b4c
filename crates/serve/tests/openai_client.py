#!/usr/bin/env python3
"""The official `openai` Python client against a running `vlmscale serve`: a plain, a streamed and a
per-request-budget completion about the test photograph.

    python3 crates/serve/tests/openai_client.py --base-url http://127.0.0.1:8080/v1 \
        --model quecc_qwen2 --image crates/engine/tests/fixtures/images/chelsea.png

Exits 0 after printing `openai client: 3 passed, 0 failed`, or prints `openai client: skipped (...)`
and exits 0 when the `openai` package is not installed (`pip install openai`).
"""
import argparse
import base64
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--api-key", default="unused")
    a = ap.parse_args()
    try:
        import openai
    except ImportError:
        print("openai client: skipped (the `openai` package is not installed; pip install openai)")
        return 0

    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=120)
    with open(a.image, "rb") as f:
        url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "What is shown in the image?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]}]
    passed, failed = 0, 0

    def check(name, cond, detail):
        nonlocal passed, failed
        if cond:
            passed += 1
            print(f"ok   {name}: {detail}")
        else:
            failed += 1
            print(f"FAIL {name}: {detail}")

    # Plain.
    r = client.chat.completions.create(model=a.model, messages=messages, max_tokens=8, temperature=0)
    extra = r.model_extra or {}
    served = extra.get("vlmscale", {})
    check("plain", r.object == "chat.completion" and r.choices[0].message.role == "assistant"
          and r.usage.prompt_tokens == served.get("text_tokens", -1) + served.get("visual_tokens", -1)
          and 1 <= r.usage.completion_tokens <= 8,
          f"{r.choices[0].message.content!r}, usage {r.usage.prompt_tokens}+{r.usage.completion_tokens}, V = {served.get('visual_tokens')}")

    # Streamed: the same greedy text.
    text, chunks, last = "", 0, None
    for c in client.chat.completions.create(model=a.model, messages=messages, max_tokens=8, temperature=0, stream=True):
        chunks += 1
        if c.choices and c.choices[0].delta.content:
            text += c.choices[0].delta.content
        if c.choices and c.choices[0].finish_reason:
            last = c
    check("streamed", text == r.choices[0].message.content and last is not None,
          f"{chunks} chunks, {text!r}, finish_reason {last.choices[0].finish_reason if last else None}")

    # Per-request budget (vlmscale's extension, sent with extra_body): the server picks (model, V).
    b = client.chat.completions.create(model="auto", messages=messages, max_tokens=4, temperature=0,
                                       extra_body={"budget": {"flops": 1e12}, "token_reduction": "avgpool"})
    choice = (b.model_extra or {}).get("vlmscale", {}).get("budget") or {}
    check("budget", choice.get("kind") == "flops" and choice.get("cost", 2e12) <= 1e12 and b.model == choice.get("model"),
          f"picked {choice.get('model')} with V = {choice.get('visual_tokens')} at {choice.get('cost')} FLOPs")

    # An error comes back as the client's typed exception.
    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
        check("error", False, "no exception")
    except openai.NotFoundError as e:
        print(f"ok   error: NotFoundError {e.status_code} (not counted)")

    print(f"openai client: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
