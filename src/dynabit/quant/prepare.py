"""Model preparation by module swapping (no tracing), and conversion for inference."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from dynabit.config.io import ConfigError
from dynabit.config.quant import QuantConfig
from dynabit.quant.layers import QuantConv2d, QuantLayerMixin, QuantLinear


def _eligible(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear) and not isinstance(m, QuantLayerMixin)
    ]


log = logging.getLogger(__name__)

# Layers with weights that ``prepare`` does not quantize: said aloud, not left float silently.
_LEFT_FLOAT = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _check_config_fits(model: nn.Module, names: list[str], config: QuantConfig) -> None:
    """Refuse overrides that match no layer (a typo would silently change nothing); warn of
    layers left in float and of budgets that ``uniform_bits`` makes unused."""
    for i, ov in enumerate(config.overrides):
        if not any(ov.matches(n) for n in names):
            shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
            raise ConfigError(
                f"quant.overrides[{i}]: pattern {ov.pattern!r} matches no quantizable layer of "
                f"the model (its layers: {shown}); fix the pattern or remove the override"
            )
    left = [n for n, m in model.named_modules() if isinstance(m, _LEFT_FLOAT)]
    if left:
        log.warning(
            "prepare: %d layer(s) stay in float, not quantized (only Conv2d and Linear are): %s",
            len(left),
            ", ".join(left[:8]) + (" ..." if len(left) > 8 else ""),
        )
    ignored = sorted(
        {
            (c.uniform_bits, c.budget)
            for c in map(config.for_layer, names)
            if c.uniform_bits is not None and c.budget != c.uniform_bits
        }
    )
    for lo, hi, r, budget in sorted(
        {
            (*c.bounds, c.target_ratio, c.budget)
            for c in map(config.for_layer, names)
            if c.bounds is not None
            and c.dynamic
            and c.uniform_bits is None
            and not c.bounds[0] - 1e-12 <= c.target_ratio <= c.bounds[1] + 1e-12
        }
    ):
        log.warning(
            "quant.bounds (%g, %g) do not contain r* = %.4g, the refine ratio quant.budget=%g "
            "needs: the bounds win and the budget is not met",
            lo,
            hi,
            r,
            budget,
        )
    for bits, budget in ignored:
        log.warning(
            "quant.uniform_bits=%d runs the budgeted layers static at %d bits: quant.budget=%g "
            "is not used (B_avg of those layers is %d)",
            bits,
            bits,
            budget,
            bits,
        )


def refuse_non_finite_input(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of a prepared model: NaN/Inf inputs raise ``ValueError``.

    Quantization would turn them into ordinary codes (a NaN clamps to a code, and the frozen
    model would answer with confident logits), so the QAT model, the frozen model and the
    integer engine all refuse them alike.
    """
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            samples = bad.reshape(x.shape[0], -1).any(dim=1) if x.dim() > 1 else bad
            raise ValueError(
                f"model input: {int(bad.sum())} non-finite value(s) (NaN or Inf) in "
                f"{int(samples.sum())} sample(s); a quantized model takes finite inputs only"
            )


def bn_followers(model: nn.Module) -> dict[str, str]:
    """Map conv name -> name of the BatchNorm registered right after it in the same parent.

    Models are expected to register a conv's BatchNorm directly after the conv (as in
    ``nn.Sequential(conv, bn, relu)`` or ``conv1``/``bn1`` attributes).
    """
    pairs: dict[str, str] = {}
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for (cname, child), (bname, nxt) in zip(children, children[1:], strict=False):
            if (
                isinstance(child, nn.Conv2d)
                and isinstance(nxt, nn.BatchNorm2d)
                and nxt.num_features == child.out_channels
            ):
                prefix = f"{parent_name}." if parent_name else ""
                pairs[prefix + cname] = prefix + bname
    return pairs


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def _classifier_name(eligible: list[tuple[str, nn.Module]]) -> str:
    linears = [n for n, m in eligible if isinstance(m, nn.Linear)]
    return linears[-1] if linears else eligible[-1][0]


def prepare(model: nn.Module, config: QuantConfig | None = None) -> nn.Module:
    """Return a copy of ``model`` with every ``Conv2d``/``Linear`` swapped for a quantized one.

    Layers are dual-precision unless an override sets ``dynamic: false``; with
    ``keep_first_last`` the first layer and the classifier (last ``Linear``) stay static at
    ``static_bits``. A BatchNorm registered right after its conv is absorbed (``fold_bn``): its
    running statistics are frozen and its affine parameters keep training. The config is kept
    as ``model.dynabit_config``. Call :func:`dynabit.quant.calibrate` before the first forward.
    """
    config = config or QuantConfig()
    if hasattr(model, "dynabit_config"):
        raise ValueError("model is already prepared (it has a dynabit_config)")
    model = copy.deepcopy(model)
    eligible = _eligible(model)
    if not eligible:
        raise ValueError("model has no nn.Conv2d or nn.Linear layer to quantize")
    _check_config_fits(model, [n for n, _ in eligible], config)
    edge = {eligible[0][0], _classifier_name(eligible)} if config.keep_first_last else set()
    bns = bn_followers(model) if config.fold_bn else {}
    for name, module in eligible:
        layer_cfg = config.for_layer(name)
        dynamic = layer_cfg.dynamic and name not in edge
        if isinstance(module, nn.Conv2d):
            new: QuantLayerMixin = QuantConv2d(module, name, layer_cfg, dynamic)
        else:
            new = QuantLinear(module, name, layer_cfg, dynamic)
        if name in bns:
            new.attach_bn(model.get_submodule(bns[name]))
            _set(model, bns[name], nn.Identity())
        new.train(module.training)
        _set(model, name, new)
    model.dynabit_config = config
    model.register_forward_pre_hook(refuse_non_finite_input)
    return model


def convert(model: nn.Module, strict: bool = False) -> nn.Module:
    """Return a frozen inference copy: fixed scales, BN folded, integer weights and thresholds.

    The copy runs the integer-faithful path in eval mode: integer codes, exact accumulators,
    integer thresholds and scores, and — found by tracing the model with ``torch.fx`` — the
    fixed-point requantization from each layer's producer, integer residual adds, average
    pools and clamps (see :mod:`dynabit.quant.integer_ops`), so it computes exactly what the
    integer engine (:mod:`dynabit.engine`) computes. A model with an operation that has no
    integer form is still converted, with a warning, layer by layer (each layer quantizing its
    float input); ``strict=True`` raises :class:`~dynabit.quant.integer_ops.UnsupportedLayerError`
    instead.
    """
    from dynabit.quant.faithful import make_integer_faithful

    if not hasattr(model, "dynabit_config"):
        raise ValueError("convert() needs a model returned by dynabit.quant.prepare()")
    # The last training forward's differentiable ratios are not graph leaves and cannot be
    # deep-copied: the copy gets them detached (the source model is left as it is).
    memo = {
        id(t): t.detach()
        for m in model.modules()
        if isinstance(m, QuantLayerMixin)
        for t in (m.last_block_ratio, m.last_mac_ratio)
        if isinstance(t, torch.Tensor)
    }
    frozen = copy.deepcopy(model, memo)
    for m in frozen.modules():
        if isinstance(m, QuantLayerMixin):
            if not bool(m.frozen):
                m.freeze()
            m.reset_stats()
    frozen.eval()
    make_integer_faithful(frozen, strict=strict)
    return frozen
