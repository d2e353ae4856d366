#!/usr/bin/env python
"""How long a person waits in the demo: the real server (``python -m fairseq_dlm.demo``) on a
checkpoint, requests sent one after another over HTTP as the page sends them, and per request the
time until the first denoising step arrives and until the answer arrives (client side, network and
JSON included; the model is loaded before the first request is timed).

    python benchmarks/demo_latency.py --path CKPT [--data DATA_BIN] [--spm-model SPM] \
        --prompts FILE [--requests 20] [--steps 10] [--length-beam 3] [--json OUT.json]

``--prompts``: one prompt per line (e.g. a prepared folder's ``text/valid.de``).  Output: a table
(median and 90th percentile), JSON, and a figure (OUT.png/.svg: both times per request).
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from fairseq_dlm.inference import add_model_arguments
from figures import pyplot, save  # benchmarks/figures.py, next to this script


def start_server(a, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fairseq_dlm.demo", "--path", a.path, "--port", str(port)]
    for flag, value in (("--data", a.data), ("--spm-model", a.spm_model)):
        if value:
            cmd += [flag, value]
    cmd += ["--trust-checkpoint"] if a.trust_checkpoint else []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"))
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/config", timeout=2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise SystemExit(f"the demo server did not start:\n{proc.stderr.read()[-3000:]}")
            time.sleep(0.5)


def timed_request(port: int, body: dict) -> dict:
    """Send one request; ``{"first_step", "answer", "server_first_step", "text"}`` in seconds."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/decode", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first = None
    with urllib.request.urlopen(req, timeout=600) as resp:
        for line in resp:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "step" and event["step"] >= 1 and first is None:
                first = time.perf_counter() - t0
            elif event["type"] == "error":
                raise SystemExit(f"the server refused a request: {event['message']}")
            elif event["type"] == "done":
                return {"first_step": first, "answer": time.perf_counter() - t0,
                        "server_first_step": event["first_step_seconds"], "text": event["text"]}
    raise SystemExit("the stream ended without an answer")


def draw(rows: list, out: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = range(1, len(rows) + 1)
    ax.plot(x, [r["answer"] for r in rows], "o-", label="answer")
    ax.plot(x, [r["first_step"] for r in rows], "s-", label="first step shown")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="1 s")
    ax.set_xlabel("request")
    ax.set_ylabel("seconds after pressing run")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    save(fig, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, "checkpoint the demo serves")
    p.add_argument("--prompts", required=True, type=Path, help="one prompt per line")
    p.add_argument("--requests", type=int, default=20, help="requests to time (the first lines of --prompts)")
    p.add_argument("--steps", type=int, default=10, help="denoising steps per request")
    p.add_argument("--length-beam", type=int, default=3, help="length beam per request")
    p.add_argument("--json", type=Path, default=Path("demo_latency.json"), help="results JSON (figure next to it)")
    a = p.parse_args(argv)
    prompts = [line.strip() for line in a.prompts.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise SystemExit(f"--prompts {a.prompts} has no prompt lines")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_server(a, port)
    try:
        body = {"steps": a.steps, "length_beam": a.length_beam}
        timed_request(port, {"prompt": prompts[0], **body})  # warm-up: first-call allocations
        rows = [timed_request(port, {"prompt": prompt, **body}) for prompt in prompts[:a.requests]]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    title = (f"{Path(a.path).parent.name}/{Path(a.path).name}: S={a.steps}, LB={a.length_beam}, {len(rows)} requests, "
             f"{os.cpu_count()} CPU cores")
    print(title)
    print(f"{'':<22} {'median':>8} {'p90':>8} {'max':>8}")
    summary = {}
    for key, label in (("first_step", "first step shown (s)"), ("answer", "answer (s)"),
                       ("server_first_step", "first step, server (s)")):
        values = sorted(r[key] for r in rows)
        summary[key] = {"median": statistics.median(values), "p90": values[int(0.9 * (len(values) - 1))],
                        "max": values[-1]}
        print(f"{label:<22} {summary[key]['median']:>8.3f} {summary[key]['p90']:>8.3f} {summary[key]['max']:>8.3f}")
    a.json.write_text(json.dumps({"title": title, "summary": summary, "requests": rows}, indent=1,
                                 ensure_ascii=False))
    draw(rows, a.json, title)
    print(f"wrote {a.json} and {a.json.with_suffix('.png')} (.svg)")


if __name__ == "__main__":
    main()
