"""Tests for ``--optimizer torch_adamw`` and ``--lr-scheduler log_warmup_constant``.

(a) schedule values against hand-computed numbers; (b) every torch implementation
matches ``torch.optim.AdamW``, also on one flat parameter and under fairseq's
FP16Optimizer (fp16 with loss scaling, bf16); (c) a clear ImportError for apex;
(d) the real ``fairseq-preprocess`` / ``fairseq-train`` CLI: ``tests/cli/test_optim_cli.py``.
"""

import math
import warnings

import pytest
import torch
from omegaconf import OmegaConf

with warnings.catch_warnings():  # fairseq's import-time torch.jit.script deprecations
    warnings.filterwarnings("ignore", ".*torch.jit.script", DeprecationWarning)
    from fairseq import optim
    from fairseq.optim import lr_scheduler
    from fairseq_dlm.optim import log_warmup_constant as lwc
    from fairseq_dlm.optim import torch_adamw

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*version_base.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*_group_.*:UserWarning"),
]

LR, BETAS, EPS, WD = 1e-2, (0.9, 0.98), 1e-8, 0.01


def _optimizer_cfg(impl="for-loop", lr=LR):
    return OmegaConf.create(
        {
            "_name": "torch_adamw",
            "adam_betas": str(BETAS),  # as on the command line: "(0.9, 0.98)"
            "adam_eps": EPS,
            "weight_decay": WD,
            "torch_impl": impl,
            "lr": [lr],
        }
    )


def _tiny_model(dtype=torch.float32):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)
    )
    return model.to(dtype)


def _batches(steps=3):
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(5, 8, generator=g), torch.randn(5, 4, generator=g))
        for _ in range(steps)
    ]


def _loss(model, x, y):
    dtype = next(model.parameters()).dtype
    return ((model(x.to(dtype)) - y.to(dtype)) ** 2).float().mean()


def _reference_params(steps=3):
    """Parameters after ``steps`` updates of plain ``torch.optim.AdamW``."""
    model = _tiny_model()
    opt = torch.optim.AdamW(
        model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD
    )
    for x, y in _batches(steps):
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


# --------------------------------------------------------------------------- (a)


def _scheduler(max_update, warmup_updates=0, lr=1e-3):
    opt = optim.build_optimizer(_optimizer_cfg(lr=lr), list(_tiny_model().parameters()))
    cfg = OmegaConf.create(
        {
            "_name": "log_warmup_constant",
            "warmup_updates": warmup_updates,
            "max_update": max_update,
            "lr": [lr],
        }
    )
    return lr_scheduler.build_lr_scheduler(cfg, opt), opt


def test_schedule_hand_computed_values():
    sched, opt = _scheduler(max_update=1000)  # W = ceil(0.01 * 1000) = 10
    assert isinstance(sched, lwc.LogWarmupConstantSchedule) and sched.warmup == 10
    assert opt.get_lr() == 0.0  # lr(0) = ln 1 / ln 10 = 0, set at construction
    expected = {0: 0.0, 1: 1e-3 * math.log(2) / math.log(10), 4: 1e-3 * 0.6989700043,
                9: 1e-3, 10: 1e-3, 11: 1e-3, 999: 1e-3}
    for u, lr in expected.items():
        assert sched.step_update(u) == pytest.approx(lr, rel=1e-9, abs=1e-15)
        for group in opt.param_groups:
            assert group["lr"] == pytest.approx(lr, rel=1e-9, abs=1e-15)
    sched.step_update(4)
    assert sched.step_begin_epoch(2) == pytest.approx(1e-3 * math.log(5) / math.log(10))
    assert sched.step(2, val_loss=3.0) == pytest.approx(1e-3 * math.log(5) / math.log(10))
    assert sched.best == 3.0


@pytest.mark.parametrize(
    "max_update, warmup_updates, W",
    [(1050, 0, 11), (1000, 5, 5), (100, 0, 1), (50, 0, 1), (0, 0, 0)],
)
def test_schedule_warmup_length_and_constant_guard(max_update, warmup_updates, W):
    sched, _ = _scheduler(max_update, warmup_updates)
    assert sched.warmup == W
    if W <= 1:  # no warmup at all: lr_max from the very first update
        assert [sched.step_update(u) for u in (0, 1, 7)] == [1e-3] * 3
    else:
        lr = 1e-3 * math.log(W - 1) / math.log(W)
        assert sched.step_update(W - 2) == pytest.approx(lr)


# --------------------------------------------------------------------------- (b)


@pytest.mark.parametrize("impl", ["fused", "foreach", "for-loop", "auto"])
def test_torch_impls_match_torch_adamw(impl):
    model = _tiny_model()
    opt = optim.build_optimizer(_optimizer_cfg(impl), list(model.parameters()))
    assert isinstance(opt, torch_adamw.TorchAdamW)
    assert opt.impl == ("fused" if impl == "auto" else impl)  # no apex, CPU params
    assert opt.optimizer_config == dict(lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    for x, y in _batches():
        opt.zero_grad()
        opt.backward(_loss(model, x, y))
        opt.step()
    for p, ref in zip(model.parameters(), _reference_params()):
        torch.testing.assert_close(p.detach(), ref, atol=1e-6, rtol=0)


def test_flat_params_match_torch_adamw():
    """AdamW is pointwise: one flat FP32 tensor (``--fp16`` flat grads) updates the same."""
    model = _tiny_model()
    flat = torch.nn.Parameter(torch.cat([p.detach().view(-1) for p in model.parameters()]))
    opt = optim.build_optimizer(_optimizer_cfg("fused"), [flat])
    assert opt.supports_flat_params
    for x, y in _batches():
        with torch.no_grad():
            offset = 0
            for p in model.parameters():
                p.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        model.zero_grad()
        _loss(model, x, y).backward()
        flat.grad = torch.cat([p.grad.view(-1) for p in model.parameters()])
        opt.step()
    reference = torch.cat([r.view(-1) for r in _reference_params()])
    torch.testing.assert_close(flat.detach(), reference, atol=1e-6, rtol=0)


def test_auto_falls_back_to_foreach_when_fused_is_rejected(monkeypatch):
    real_adamw = torch.optim.AdamW

    def adamw(params, fused=None, **kwargs):
        if fused:
            raise RuntimeError("fused=True requires params on a supported device")
        return real_adamw(params, fused=fused, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    opt = optim.build_optimizer(_optimizer_cfg("auto"), list(_tiny_model().parameters()))
    assert opt.impl == "foreach" and opt.optimizer.defaults["foreach"] is True


def _wrapped_cfg(bf16: bool):
    return OmegaConf.create(
        {
            "optimizer": _optimizer_cfg("fused"),
            "common": {
                "fp16": not bf16, "bf16": bf16, "fp16_no_flatten_grads": True,
                "fp16_init_scale": 4, "fp16_scale_window": None,
                "fp16_scale_tolerance": 0.0, "threshold_loss_scale": None,
                "min_loss_scale": 1e-4, "model_parallel_size": 1,
            },
            "optimization": {"update_freq": [1]},
            "distributed_training": {"distributed_world_size": 1},
        }
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_under_fairseq_fp16_optimizer(dtype):
    """FP16Optimizer: half model, FP32 master copies stepped by TorchAdamW (exact AdamW).

    The reference replays the wrapper by hand: scaled backward in half precision,
    grads cast to FP32 and unscaled, torch AdamW on FP32 masters, masters copied back.
    (``--fp16`` flat grads call ``torch.cuda.current_device()``, so no-flatten on CPU.)
    """
    scale = 1.0 if dtype == torch.bfloat16 else 4.0  # --fp16-init-scale 4; bf16: no scaler
    model, ref_model = _tiny_model(dtype), _tiny_model(dtype)
    opt = optim.FP16Optimizer.build_optimizer(
        _wrapped_cfg(dtype == torch.bfloat16), list(list(model.parameters()))
    )
    assert isinstance(opt.fp32_optimizer, torch_adamw.TorchAdamW)
    masters = [p.detach().float().clone().requires_grad_() for p in ref_model.parameters()]
    ref_opt = torch.optim.AdamW(masters, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    for x, y in _batches():
        opt.zero_grad()
        opt.backward(_loss(model, x, y))
        opt.step()
        ref_model.zero_grad()
        (_loss(ref_model, x, y) * scale).backward()
        for m, p in zip(masters, ref_model.parameters()):
            m.grad = p.grad.float() / scale
        ref_opt.step()
        with torch.no_grad():
            for m, p in zip(masters, ref_model.parameters()):
                p.copy_(m)
    for p32, ref, p in zip(opt.fp32_params, masters, model.parameters()):
        torch.testing.assert_close(p32.detach(), ref.detach(), atol=1e-6, rtol=0)
        assert p.dtype == dtype and torch.equal(p.detach(), p32.detach().to(dtype))


def test_memory_efficient_wrapper_refuses_float16_accepts_bfloat16():
    with pytest.raises(ValueError, match="Unsupported optimizer"):
        optim.MemoryEfficientFP16Optimizer.build_optimizer(
            _wrapped_cfg(bf16=False), list(_tiny_model(torch.float16).parameters())
        )
    model = _tiny_model(torch.bfloat16)
    opt = optim.MemoryEfficientFP16Optimizer.build_optimizer(
        _wrapped_cfg(bf16=True), list(list(model.parameters()))
    )
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    opt.backward(_loss(model, *_batches(1)[0]))
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


# --------------------------------------------------------------------------- (c)


def test_apex_without_apex_raises_helpful_import_error():
    if torch_adamw._apex_fused_adam_class() is not None:
        pytest.skip("apex is importable here")
    with pytest.raises(ImportError, match=r"NVIDIA apex.*--torch-impl fused"):
        optim.build_optimizer(_optimizer_cfg("apex"), list(_tiny_model().parameters()))


def test_adam_betas_parsing_is_literal_only():
    assert torch_adamw.parse_betas("(0.9, 0.98)") == (0.9, 0.98)
    assert torch_adamw.parse_betas(OmegaConf.create([0.8, 0.9])) == (0.8, 0.9)
    with pytest.raises(ValueError):
        torch_adamw.parse_betas("__import__('os').getcwd()")
    with pytest.raises(ValueError):
        torch_adamw.parse_betas("(0.9,)")
