"""``fairseq-dlm-demo --path CKPT`` (or ``python -m fairseq_dlm.demo``): serve the demo page.

Loads the model once (anything :meth:`fairseq_dlm.DiffusionLM.from_pretrained` loads), then serves
http://127.0.0.1:7860 until Ctrl-C.  Only this machine can reach it unless ``--host`` says otherwise.
"""
import argparse
import ipaddress
import logging
import sys
from dataclasses import fields

from ..errors import ConfigError, UserError
from ..inference import add_model_arguments
from .requests import DemoLimits

logger = logging.getLogger("fairseq_dlm.demo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairseq-dlm-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on")
    p.add_argument("--cpu", action="store_true", help="decode on the CPU even when a GPU is there")
    for f in fields(DemoLimits):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default,
                       help=f"{f.metadata['help']} (default {f.default})")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    try:
        limits = DemoLimits(**{f.name: getattr(a, f.name) for f in fields(DemoLimits)})
        if not 0 <= a.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {a.port}")
        import torch
        import uvicorn

        from ..hub import DiffusionLM
        from .server import create_app

        lm = DiffusionLM.from_pretrained(a.path, data=a.data, spm_model=a.spm_model,
                                         trust_checkpoint=a.trust_checkpoint)
    except UserError as e:
        print(f"fairseq-dlm-demo: error: {e}", file=sys.stderr)
        return 1
    if torch.cuda.is_available() and not a.cpu:
        lm.cuda()
    if not _loopback(a.host):
        logger.warning("--host %s: anyone who can reach this address can use the model", a.host)
    logger.info("serving %s at http://%s:%d (Ctrl-C to stop)", a.path, a.host, a.port)
    uvicorn.run(create_app(lm, limits, a.path), host=a.host, port=a.port, log_level="warning")
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
