"""The demo's routes (Starlette):

* ``GET /`` — the page (``page.html``, no external resources);
* ``GET /api/config`` — the model, its decoding defaults, the strategies and the server's limits;
* ``POST /api/decode`` — a JSON :class:`~.requests.DecodeRequest`; answered with a
  ``text/event-stream`` of :mod:`.events` as the decoding runs, or with ``400`` (a field's mistake,
  ``{"error", "field"}``) or ``503`` (busy) before it starts.

Why Starlette: a small, well-kept ASGI toolkit (the core of FastAPI) whose streaming responses send
each step the moment it exists, with no front-end build and a dependency set that does not pin
this project's torch/transformers stack (gradio and streamlit do, and streamlit re-runs a script
per interaction instead of streaming one request).
"""
import asyncio
import json
import logging
from dataclasses import asdict
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from ..diffusion.options import DecodingOptions, RuntimeOptions
from ..errors import UserError
from .jobs import Busy, DecodeJob, Scheduler
from .requests import DemoInputError, DemoLimits, parse_request

logger = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
MAX_BODY = 1 << 20  # bytes of a request body (a prompt is capped in tokens after this)
STRATEGIES = ("reparam-uncond-deterministic-cosine", "reparam-uncond-deterministic-linear",
              "reparam-cond-deterministic-cosine", "reparam-uncond-stochastic1.0-cosine", "cmlm", "ar", "threshold")


def create_app(lm, limits: DemoLimits, name: str) -> Starlette:
    """The demo app for the loaded :class:`~fairseq_dlm.DiffusionLM` ``lm`` (``name``: shown in the page)."""
    defaults = DecodingOptions.from_flags(None, lm.task.cfg)
    runtime = RuntimeOptions.from_flags(None, lm.task.cfg)
    scheduler = Scheduler(limits.max_concurrent, limits.max_queue)
    page = PAGE.read_text(encoding="utf-8")
    has_length_head = getattr(lm.models[0], "length_head", None) is not None

    async def index(request: Request):
        return HTMLResponse(page)

    async def config(request: Request):
        return JSONResponse({
            "model": name, "length_head": has_length_head, "join": "spm" if lm.bpe is not None else "space",
            "defaults": {**asdict(defaults), **asdict(runtime), "step_delay_ms": 0},
            "strategies": sorted({defaults.strategy, *STRATEGIES}), "limits": asdict(limits),
        })

    def refuse(message: str, field=None, status: int = 400):
        return JSONResponse({"error": message, "field": field}, status_code=status)

    async def decode(request: Request):
        raw = await _read_capped(request, MAX_BODY)
        if raw is None:
            return refuse(f"the request body is over {MAX_BODY} bytes", None, 413)
        try:
            body = json.loads(raw or b"null")
        except ValueError as e:
            return refuse(f"the request is not JSON ({e})")
        try:
            req = parse_request(body, limits, defaults, runtime)
            if req.length is None and not has_length_head:
                raise DemoInputError("this model has no length head: give a fixed response length", "length")
            n = lm.encode(req.prompt).numel() - 1
            if n > limits.max_prompt_tokens:
                raise DemoInputError(f"the prompt has {n} tokens; this server accepts at most "
                                     f"{limits.max_prompt_tokens} (--max-prompt-tokens)", "prompt")
        except UserError as e:  # a field's mistake, or the model's own checks (a prompt beyond its positions)
            return refuse(str(e), getattr(e, "field", "prompt"))
        try:
            ahead = scheduler.admit()
        except Busy as e:
            return refuse(str(e), None, 503)
        job = DecodeJob(lm, req, scheduler, ahead).start()

        async def stream():
            try:
                while True:
                    event = await asyncio.to_thread(job.next_event, 0.25)
                    if event is None:
                        break
                    if event["type"] != "wait":
                        yield f"data: {json.dumps(event)}\n\n"
            finally:  # the page went away (or the stream ended): stop the decoding at its next step
                job.cancel()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return Starlette(routes=[Route("/", index), Route("/api/config", config),
                             Route("/api/decode", decode, methods=["POST"])])


async def _read_capped(request: Request, limit: int):
    """The request body, or None once it exceeds ``limit`` bytes (the rest is not read)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
