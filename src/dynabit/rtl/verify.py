"""Check the tile against the arithmetic and the cycle model, layer by layer.

:func:`verify_job` runs a :class:`~dynabit.rtl.program.LayerJob` sample by sample on the
simulated dynamic tile (and on the uniform baseline tile) and compares

- outputs and decisions with the numpy golden model and with any references given (the integer
  engine, the frozen PyTorch layer): all must agree bit for bit;
- the cycles the tile took (first MAC to last MAC) with the closed form
  :func:`~dynabit.rtl.program.predicted_cycles` and with the cycle model
  :func:`dynabit.hardware.simulate` fed the same layer shape, array and masks.

Samples run one at a time because the cycle model counts cycles per sample.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dynabit.rtl.extract import Reference
from dynabit.rtl.params import TileParams
from dynabit.rtl.program import (
    LayerJob,
    build_program,
    golden,
    golden_uniform,
    predicted_cycles,
    scatter_outputs,
)
from dynabit.rtl.sim import SimResult, simulate


def params_for(job: LayerJob, **overrides: Any) -> TileParams:
    """The dynamic tile that runs ``job``: ``R = g_h * g_w`` rows, ``C = block_size`` columns."""
    spec = job.layer_spec
    kw: dict[str, Any] = {
        "rows": spec.group[0] * spec.group[1],
        "cols": spec.block_size,
        "hi_bits": spec.hi_bits,
        "lo_bits": spec.lo_bits,
        "weight_bits": job.weight_bits,
        "act_signed": job.act_signed,
        "score": spec.score,
    }
    kw.update(overrides)
    return TileParams(**kw)


def layer_shape(job: LayerJob) -> Any:
    """The :class:`dynabit.hardware.LayerShape` of ``job`` (a 1x1 conv when no geometry)."""
    from dynabit.hardware.shapes import shape_of

    return shape_of(job.layer_spec)


def model_cycles(
    p: TileParams, job: LayerJob, mask: np.ndarray | None, mode: str | None = None
) -> list[int]:
    """Per-sample compute cycles that :func:`dynabit.hardware.simulate` predicts for ``job``.

    Dynamic tile: mode ``dynamic`` with ``mask``; uniform tile: mode ``bitparallel`` (one pass
    of ``8 x W`` PEs) when ``B <= 8``, else ``dense`` with ``B``-bit chunks. ``mode`` forces
    another unmasked mode on ``p``'s array (e.g. ``uniform``: both chunks of every tile).
    """
    shape = layer_shape(job)
    chunk = max(p.hi_bits, p.lo_bits) if p.dynamic else p.bits
    if mode is None:
        mode = "dynamic" if p.dynamic else ("bitparallel" if p.bits <= 8 else "dense")
    hw = {"rows": p.rows, "cols": p.cols, "weight_bits": p.weight_bits, "acc_bits": p.acc_bits}
    return _cycle_model(shape, job, mask, mode, chunk, hw)


def _cycle_model(
    shape: Any, job: LayerJob, mask: np.ndarray | None, mode: str, chunk: int, hw: dict[str, Any]
) -> list[int]:
    """Per-sample compute cycles of :func:`dynabit.hardware.simulate` for one layer on an
    output-stationary array (``hw``: the config fields of the tile) with ``chunk``-bit
    activation chunks; mode ``dynamic`` follows ``mask``."""
    from dynabit.config.hardware import HardwareConfig
    from dynabit.hardware import simulate as hw_simulate

    cfg = HardwareConfig(dataflow="os", act_chunk_bits=chunk, **hw)
    # The model also costs energy; odd chunk widths need a MAC entry (its value is irrelevant
    # to cycles): scale the 8 x W figure by partial-product bits, as the default table does.
    table, w = cfg.energy, cfg.weight_bits
    for a in {chunk, 8}:
        key = f"{a}x{w}"
        if key not in table.mac_pj:
            ref = table.mac_pj.get(f"8x{w}", next(iter(table.mac_pj.values())))
            table = table.model_copy(update={"mac_pj": {**table.mac_pj, key: ref * a / 8}})
    cfg = cfg.model_copy(update={"energy": table})
    if mode == "dynamic":
        res = hw_simulate([shape], {job.name: np.asarray(mask, dtype=bool)}, cfg, mode="dynamic")
    else:
        n = int(job.cols.shape[0])
        res = hw_simulate([shape], None, cfg, mode=mode, samples=n)  # type: ignore[arg-type]
    return [int(c) for c in res.compute_cycles[0]]


def decisions_mask(job: LayerJob, decisions: dict[tuple[int, int], bool]) -> np.ndarray:
    """The tile's ``{(block, group): refined}`` as a ``(N, blocks, gh, gw)`` mask."""
    n = int(job.cols.shape[0])
    gh, gw = job.grid
    mask = np.zeros((n, job.n_blocks, gh, gw), dtype=bool)
    seen = np.zeros_like(mask)
    for (b, g), v in decisions.items():
        s, rem = divmod(g, gh * gw)
        y, x = divmod(rem, gw)
        mask[s, b, y, x] = v
        seen[s, b, y, x] = True
    if not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} tiles were never decided")
    return mask


@dataclass
class TileRun:
    """One tile configuration on one layer: exactness and cycles per sample."""

    tile: str
    bit_exact: bool
    decisions_exact: bool
    cycles_rtl: list[int] = field(default_factory=list)
    cycles_formula: list[int] = field(default_factory=list)
    cycles_model: list[int] | None = None
    refined_tiles: int = 0
    tiles: int = 0
    reads: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def cycle_exact(self) -> bool:
        """RTL cycles equal the closed form and (when run) the cycle model, every sample."""
        ok = self.cycles_rtl == self.cycles_formula
        return ok and (self.cycles_model is None or self.cycles_rtl == self.cycles_model)


@dataclass
class LayerCheck:
    """Result of :func:`verify_job`."""

    name: str
    k: int
    samples: int
    references: list[str]
    dynamic: TileRun
    uniform: TileRun | None = None
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        runs = [self.dynamic] + ([self.uniform] if self.uniform else [])
        return all(r.bit_exact and r.decisions_exact and r.cycle_exact for r in runs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["dynamic"]["cycle_exact"] = self.dynamic.cycle_exact
        if self.uniform is not None:
            d["uniform"]["cycle_exact"] = self.uniform.cycle_exact
        return d


def _timed(run: TileRun, build: Any, sim: Any, p: Any, sj: LayerJob) -> tuple[Any, SimResult]:
    """Build ``sj``'s program for ``p`` and simulate it, adding the time to ``run.seconds``."""
    t0 = time.perf_counter()
    prog = build(p, sj)
    res = sim(prog)
    run.seconds += time.perf_counter() - t0
    return prog, res


def _record(
    run: TileRun, res: SimResult, formula: int, model: list[int] | None, tiles: int, refined: int
) -> None:
    """One sample's cycles (RTL, closed form, cycle model when run), tiles and reads."""
    run.cycles_rtl.append(res.compute_cycles)
    run.cycles_formula.append(formula)
    if model is not None:
        run.cycles_model = (run.cycles_model or []) + model
    run.refined_tiles += refined
    run.tiles += tiles
    for key, v in res.reads.items():
        run.reads[key] = run.reads.get(key, 0) + v


def verify_job(
    job: LayerJob,
    p: TileParams | None = None,
    references: Sequence[Reference] = (),
    uniform: bool = True,
    use_model: bool = True,
    samples: int | None = None,
) -> LayerCheck:
    """Simulate ``job`` (its first ``samples`` samples) and compare everything (see module doc)."""
    p = p or params_for(job)
    n = int(job.cols.shape[0]) if samples is None else min(samples, int(job.cols.shape[0]))
    check = LayerCheck(
        job.name, job.k, n, ["golden"] + [r.source for r in references], TileRun(p.tag, True, True)
    )
    dyn = check.dynamic
    for s in range(n):
        sj = job.sample(s)
        gold = golden(sj)
        prog, res = _timed(dyn, build_program, simulate, p, sj)
        out = scatter_outputs(prog, res.outputs, sj)
        mask = decisions_mask(sj, res.decisions)
        exact = [("golden", gold.acc, gold.mask)]
        exact += [(r.source, r.acc[s : s + 1], r.mask[s : s + 1]) for r in references]
        for src, acc, ref_mask in exact:
            if not np.array_equal(out, acc):
                dyn.bit_exact = False
                check.mismatches.append(f"sample {s}: outputs differ from {src}")
            if not np.array_equal(mask, ref_mask):
                dyn.decisions_exact = False
                check.mismatches.append(f"sample {s}: decisions differ from {src}")
        model = model_cycles(p, sj, gold.mask) if use_model else None
        formula = predicted_cycles(p, sj, gold.mask)
        _record(dyn, res, formula, model, sj.n_tiles, int(gold.mask.sum()))
    if uniform:
        pu = p.uniform()
        uni = TileRun(pu.tag, True, True)
        for s in range(n):
            sj = job.sample(s)
            prog, res = _timed(uni, build_program, simulate, pu, sj)
            out = scatter_outputs(prog, res.outputs, sj)
            if not np.array_equal(out, golden_uniform(sj)):
                uni.bit_exact = False
                check.mismatches.append(f"sample {s}: uniform tile outputs differ from bias + W q")
            model = model_cycles(pu, sj, None) if use_model else None
            tiles = prog.n_groups * prog.n_blocks
            _record(uni, res, predicted_cycles(pu, sj), model, tiles, 0)
        check.uniform = uni
    if not (dyn.cycle_exact and (check.uniform is None or check.uniform.cycle_exact)):
        check.mismatches.append("cycles differ (see cycles_rtl / cycles_formula / cycles_model)")
    return check


# ---------------------------------------------------------------------- lane tiles
#: Cycle-model mode and activation chunk of each design (see :func:`lane_model_cycles`).
LANE_MODEL = {"dual": "dynamic", "int8": "dense", "int4": "dense", "bitserial": "uniform"}


def lane_model_cycles(p: Any, job: LayerJob, mask: np.ndarray | None = None) -> list[int]:
    """Per-sample cycles :func:`dynabit.hardware.simulate` predicts for lane tile ``p``.

    ``HardwareConfig.lanes = N`` in every case: ``dual`` runs mode ``dynamic`` with the group
    masks; ``int8``/``int4`` mode ``dense`` with ``B``-bit chunks (one pass); ``bitserial``
    mode ``uniform`` with ``s``-bit chunks over a layer whose high part is the whole code (so
    ``ceil(B / s)`` chunk passes). ``job`` is at the design's width (``design_job``).
    """
    from dataclasses import replace as dc_replace

    pe = p.pe
    shape = layer_shape(job)
    if pe.design == "dual":
        chunk = max(pe.hi_bits, pe.lo_bits)
    elif pe.design == "bitserial":
        chunk = pe.serial_bits
        shape = dc_replace(shape, dynamic=False, bits=pe.code_bits, hi_bits=pe.code_bits)
    else:
        chunk = pe.code_bits
    hw = {"rows": p.rows, "cols": p.cols, "weight_bits": pe.weight_bits, "lanes": pe.lanes}
    return _cycle_model(shape, job, mask, LANE_MODEL[pe.design], chunk, hw)


def verify_lanes(
    job: LayerJob,
    design: str,
    lanes: int,
    serial_bits: int = 1,
    references: Sequence[Reference] = (),
    use_model: bool = True,
    samples: int | None = None,
    **overrides: Any,
) -> TileRun:
    """Run ``job`` sample by sample on the ``design`` lane tile and compare everything.

    Outputs (and, for ``dual``, decisions) must equal the numpy golden model and every
    reference (the integer engine, the frozen layer: dual only, they compute the dual
    arithmetic); cycles must equal :func:`~dynabit.rtl.lane_program.lane_predicted_cycles`
    and, with ``use_model``, :func:`lane_model_cycles` (``run.cycle_exact``).
    """
    from dynabit.rtl.lane_program import (
        build_lane_program,
        design_job,
        lane_golden,
        lane_params_for,
        lane_predicted_cycles,
    )
    from dynabit.rtl.program import TileProgram
    from dynabit.rtl.sim import simulate_lanes

    p = lane_params_for(job, design, lanes, serial_bits, **overrides)  # type: ignore[arg-type]
    dj = design_job(job, design)
    n = int(job.cols.shape[0]) if samples is None else min(samples, int(job.cols.shape[0]))
    run = TileRun(p.tag, True, True)
    for s in range(n):
        sj = dj.sample(s)
        prog, res = _timed(run, build_lane_program, simulate_lanes, p, sj)
        view = TileProgram(p, prog.k, prog.n_groups, prog.n_blocks, [], [], [], [], prog.pixels)  # type: ignore[arg-type]
        out = scatter_outputs(view, res.outputs, sj)
        acc, gmask = lane_golden(p, sj)
        exact = [("golden", acc, gmask)]
        if design == "dual":
            exact += [(r.source, r.acc[s : s + 1], r.mask[s : s + 1]) for r in references]
        for _src, ref_acc, ref_mask in exact:
            run.bit_exact &= bool(np.array_equal(out, ref_acc))
            if ref_mask is not None:
                got = decisions_mask(sj, res.decisions)
                run.decisions_exact &= bool(np.array_equal(got, ref_mask))
        model = lane_model_cycles(p, sj, gmask) if use_model else None
        refined = int(gmask.sum()) if gmask is not None else 0
        formula = lane_predicted_cycles(p, sj, gmask)
        _record(run, res, formula, model, prog.n_groups * prog.n_blocks, refined)
    return run
