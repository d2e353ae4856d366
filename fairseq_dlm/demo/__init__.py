"""``fairseq-dlm-demo``: watch a diffusion LM denoise, in a browser, one step at a time.

A small Starlette app (:mod:`.server`) serves one HTML page (``page.html``) and streams each
denoising step of a request as a server-sent event while the decoding runs; the model is loaded once
and shared by every request.  The layers, each with one job:

* :mod:`.requests` — what a page may ask for (the JSON body of ``POST /api/decode``), checked against
  the server's :class:`~.requests.DemoLimits`;
* :mod:`.jobs` — one request's decoding in a worker thread (:class:`~.jobs.DecodeJob`), the events it
  emits (:mod:`.events`), and the admission queue (:class:`~.jobs.Scheduler`);
* :mod:`.server` — the routes; :mod:`.cli` — ``fairseq-dlm-demo --path CKPT`` / ``python -m fairseq_dlm.demo``.
"""
from .requests import DecodeRequest, DemoInputError, DemoLimits, parse_request

__all__ = ["DecodeRequest", "DemoInputError", "DemoLimits", "parse_request"]
