"""Text tables and PNG pictures of research results: optimization ranking and heatmap, walk-forward, Monte Carlo."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.strategy.montecarlo import Distribution, MonteCarloReport
from daemon.strategy.optimize import Metric, Optimization, RunResult
from daemon.strategy.walkforward import WalkForwardReport


class PlotError(Exception):
    """A picture that cannot be drawn (matplotlib missing, parameters not in the search)."""


def _num(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def optimization_table(opt: Optimization, top: int) -> str:
    how = (f"random sample of {opt.runs} of {opt.valid} valid sets (seed {opt.seed})" if opt.sampled
           else f"{opt.runs} sets")
    lines = [f"{opt.strategy}: {how} of a {opt.grid_size}-set grid, ranked by {opt.maximize}; "
             f"{opt.runs * opt.bars} bars in {opt.seconds:.1f} s ({opt.bars_per_second:,.0f} bars/s)", ""]
    width = max([len(_params(r.params)) for r in opt.results[:top]] + [6])
    lines.append(f"{'#':>3}  {'params':<{width}}  {'net P&L':>11} {'sharpe':>7} {'PF':>6} {'trades':>6} "
                 f"{'win':>6} {'max DD':>10}  flags")
    for i, r in enumerate(opt.results[:top], 1):
        win = "-" if r.win_rate is None else f"{r.win_rate * 100:.0f}%"
        flags = ("BREACHED " + ",".join(r.breaches)) if r.breached else ""
        lines.append(f"{i:>3}  {_params(r.params):<{width}}  {r.net_pnl:>11.2f} {_num(r.sharpe):>7} "
                     f"{_num(r.profit_factor):>6} {r.trades:>6} {win:>6} {r.max_drawdown:>10.2f}  {flags}")
    breached = sum(1 for r in opt.results if r.breached)
    if breached:
        lines.append(f"\n{breached} of {opt.runs} sets breached a funded rule and rank after the others")
    best = opt.best
    lines.append(f"\nbest: {_params(best.params)}" if best else "\nbest: none (every set breached a funded rule)")
    return "\n".join(lines)


def walk_forward_table(wf: WalkForwardReport) -> str:
    lines = [f"{wf.strategy}: walk-forward train={wf.train} test={wf.test}, {len(wf.folds)} folds, "
             f"optimized for {wf.maximize}", "",
             f"{'fold':>4}  {'train':<23}  {'test':<23}  {'params':<24} {'IS net':>10} {'OOS net':>10} "
             f"{'OOS trades':>10}  flags"]
    for i, f in enumerate(wf.folds, 1):
        params = _params(f.params) if f.params else "(all breached: sits out)"
        in_net = f"{f.in_sample.net_pnl:.2f}" if f.in_sample else "-"
        out = f.out_of_sample
        lines.append(f"{i:>4}  {f.train_start:%Y-%m-%d}..{f.train_end:%Y-%m-%d}  {f.test_start:%Y-%m-%d}.."
                     f"{f.test_end:%Y-%m-%d}  {params:<24} {in_net:>10} "
                     f"{(f'{out.net_pnl:.2f}' if out else '-'):>10} {(out.trades if out else 0):>10}  "
                     f"{('BREACHED ' + ','.join(out.breaches)) if out and out.breached else ''}")
    lines += ["", f"in-sample:     net {wf.in_sample_net:.2f} over {wf.in_sample_days:.0f} days "
                  f"({wf.in_sample_per_day:.2f}/day)",
              f"out-of-sample: net {wf.out_of_sample_net:.2f} over {wf.out_of_sample_days:.0f} days "
              f"({wf.out_of_sample_per_day:.2f}/day), {len(wf.out_of_sample_trades)} trades, "
              f"max drawdown {wf.out_of_sample_max_drawdown:.2f}, Sharpe {_num(wf.out_of_sample_sharpe)}",
              f"efficiency (OOS/IS per day): {_num(wf.efficiency)}"]
    if wf.out_of_sample_breaches:
        lines.append(f"out-of-sample breaches: {', '.join(wf.out_of_sample_breaches)}")
    return "\n".join(lines)


def _dist(name: str, d: Distribution) -> str:
    p = d.percentiles
    return (f"{name:<13} mean {d.mean:>10.2f}  p5 {p['p5']:>10.2f}  p25 {p['p25']:>10.2f}  p50 {p['p50']:>10.2f}"
            f"  p75 {p['p75']:>10.2f}  p95 {p['p95']:>10.2f}")


def monte_carlo_table(mc: MonteCarloReport) -> str:
    lines = [f"Monte Carlo: {mc.runs} {mc.method} runs of {mc.trades} trades (seed {mc.seed})",
             _dist("final P&L", mc.final_pnl), _dist("max drawdown", mc.max_drawdown)]
    if mc.rules is not None:
        r = mc.rules
        lines.append(f"{r.preset or 'funded rules'}: P(max loss {r.max_loss:.0f} breached) {r.p_max_loss:.1%}, "
                     f"P(daily loss {'-' if r.daily_loss_limit is None else f'{r.daily_loss_limit:.0f}'} "
                     f"breached) {r.p_daily_loss:.1%}, P(profit target "
                     f"{'-' if r.profit_target is None else f'{r.profit_target:.0f}'} first) "
                     f"{'-' if r.p_target_first is None else f'{r.p_target_first:.1%}'}")
    return "\n".join(lines)


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotError("pictures need matplotlib: pip install matplotlib") from exc
    return plt


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, float(value)) if isinstance(value, int | float) or _is_number(value) else (1, str(value))


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def heatmap(opt: Optimization, x: str, y: str, path: Path) -> None:
    """The metric over two parameters (best over the others); breached cells are marked with an x."""
    results = [r for r in opt.results if x in r.params and y in r.params]
    if not results:
        raise PlotError(f"--heatmap-params {x},{y}: both must be searched parameters")
    xs = sorted({r.params[x] for r in results}, key=_sort_key)
    ys = sorted({r.params[y] for r in results}, key=_sort_key)
    cells: dict[tuple[Any, Any], RunResult] = {}
    for r in results:  # ranked: the first of a cell is its best
        cells.setdefault((r.params[x], r.params[y]), r)
    plt = _pyplot()
    grid = [[_value(cells.get((vx, vy)), opt.maximize) for vx in xs] for vy in ys]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 + 0.6 * len(xs)), max(3.5, 1.2 + 0.45 * len(ys))))
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label=opt.maximize)
    for (vx, vy), r in cells.items():
        if r.breached:
            ax.text(xs.index(vx), ys.index(vy), "x", ha="center", va="center", color="red", fontsize=12)
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{opt.strategy}: {opt.maximize} (x = breached a funded rule)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _value(r: RunResult | None, metric: Metric) -> float:
    value = None if r is None else r.metric(metric)
    return math.nan if value is None or math.isinf(value) else value


def histogram(mc: MonteCarloReport, path: Path) -> None:
    """Final P&L and max drawdown of the runs, side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, values, title in ((axes[0], mc.final_pnls, "final P&L"), (axes[1], mc.max_drawdowns, "max drawdown")):
        ax.hist([float(v) for v in values], bins=40, color="steelblue", alpha=0.85)
        ax.set_title(f"{title} over {mc.runs} runs (seed {mc.seed})")
        ax.grid(alpha=0.3)
    if mc.rules is not None and mc.rules.max_loss:
        axes[1].axvline(float(mc.rules.max_loss), color="red", linestyle="--", label="max loss")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def equity(points: Sequence[tuple[Any, Any]], title: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot([t for t, _ in points], [float(e) for _, e in points], linewidth=1.2)
    ax.set_title(title)
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
