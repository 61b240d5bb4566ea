"""`backforge judge` and `backforge generate`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from backforge._cli import command_app, console, friendly_errors
from backforge.judge.budget import DEFAULT_BUDGET_TOKENS

_COLORS = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _llm_config(llm_config: Optional[Path], provider: Optional[str], model: Optional[str], base_url: Optional[str]):
    from backforge.judge.llm import load_llm_config

    return load_llm_config(llm_config, provider=provider, model=model, base_url=base_url)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


app = command_app()
"""``judge`` and ``generate``, added to the main CLI by :mod:`backforge.cli`."""


@app.command()
@friendly_errors
def judge(
    run_folder: Path = typer.Argument(..., help="A saved run folder (from `backforge run`, `demo` or `optimize`)."),
    evidence: bool = typer.Option(False, "--evidence", help="Print the evidence pack as JSON and exit."),
    full: bool = typer.Option(False, "--full", help="With --evidence: every section, not trimmed to the budget."),
    budget: int = typer.Option(DEFAULT_BUDGET_TOKENS, "--budget", min=500,
                               help="Token budget of the evidence pack (least important parts trimmed first)."),
    llm: bool = typer.Option(False, "--llm", help="Also ask the configured LLM reviewer (see docs/judge.md)."),
    provider: Optional[str] = typer.Option(None, help="LLM provider: openai (any compatible server) or anthropic."),
    model: Optional[str] = typer.Option(None, help="LLM model (default: BACKFORGE_LLM_MODEL)."),
    base_url: Optional[str] = typer.Option(None, help="LLM server URL, e.g. http://localhost:11434/v1 for Ollama."),
    llm_config: Optional[Path] = typer.Option(None, "--llm-config", help="YAML/TOML file with the LLM settings."),
    apply: bool = typer.Option(False, "--apply", help="Apply every recommendation and re-test it in sample and "
                                                      "on a held-out period the judge never saw."),
    holdout: float = typer.Option(0.3, min=0.05, max=0.8, help="With --apply: fraction of the bars held out."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1,
                                         help="Backtests tried to find this one (counted in the deflated Sharpe)."),
    max_drawdown_days: float = typer.Option(365.0, min=1, help="The longest drawdown you could sit through, in days."),
    walk_forward: bool = typer.Option(True, "--walk-forward/--no-walk-forward",
                                      help="Run a walk-forward analysis when the strategy declares parameters."),
    seed: int = typer.Option(0, help="Seed of the Monte Carlo and the samplers."),
    as_json: bool = typer.Option(False, "--json", help="Print the judgement as JSON instead of tables."),
    save: bool = typer.Option(True, "--save/--no-save", help="Write judge.json and judge.html into the run folder."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit with code 1 when a finding of this "
                                                                   "severity (critical or warning) fires."),
) -> None:
    """Judge a run: evidence pack, 50+ rule checks, optional LLM review, recommendations applied and re-tested."""
    from backforge.errors import ConfigError
    from backforge.judge.core import judge as run_judge
    from backforge.judge.evidence import build_evidence
    from backforge.judge.report import write_judge_html
    from backforge.judge.rules import RuleSettings

    if fail_on not in (None, "critical", "warning"):
        raise ConfigError(f"--fail-on must be critical or warning, got {fail_on!r}", field="fail_on")
    if evidence:
        pack = build_evidence(run_folder, n_trials=trials, seed=seed, walk_forward=walk_forward)
        print(json.dumps(pack.for_model(None if full else budget), indent=2, allow_nan=False))
        return
    config = _llm_config(llm_config, provider, model, base_url) if llm else None
    result = run_judge(run_folder, llm=config, apply=apply, holdout=holdout, n_trials=trials,
                       settings=RuleSettings(max_drawdown_days=max_drawdown_days), budget_tokens=budget, seed=seed,
                       walk_forward=walk_forward)
    if as_json:
        print(result.to_json())
    else:
        _print_judgement(console, result)
    if save and run_folder.is_dir():
        json_path = result.save(run_folder / "judge.json")
        html_path = write_judge_html(result, run_folder / "judge.html")
        if not as_json:
            console.print(f"[green]saved:[/] {json_path} and {html_path.name}", soft_wrap=True)
    counts = result.counts()
    if fail_on == "critical" and counts["critical"] or fail_on == "warning" and (counts["critical"] or counts["warning"]):
        raise typer.Exit(code=1)

@app.command()
@friendly_errors
def generate(
    description: str = typer.Argument(..., help="The strategy in plain English (quote it)."),
    output: Path = typer.Option(..., "-o", "--output", help="Strategy file to write (YAML)."),
    asset: Optional[list[str]] = typer.Option(None, "--asset", help="An asset the strategy may use (repeat)."),
    data: Optional[list[Path]] = typer.Option(None, "--data", help="Data file(s), one asset each: the strategy is "
                                                                   "validated against them and runs on them."),
    years: float = typer.Option(10.0, min=0.5, max=50, help="Years of synthetic data when no --data is given."),
    parallel: bool = typer.Option(False, "--parallel", help="Plan first, then write conditions and actions "
                                                            "concurrently."),
    retries: int = typer.Option(2, min=0, max=9, help="Corrected answers asked after an invalid one, per model."),
    provider: Optional[str] = typer.Option(None, help="LLM provider: openai (any compatible server) or anthropic."),
    model: Optional[str] = typer.Option(None, help="LLM model (default: BACKFORGE_LLM_MODEL)."),
    base_url: Optional[str] = typer.Option(None, help="LLM server URL, e.g. http://localhost:11434/v1 for Ollama."),
    llm_config: Optional[Path] = typer.Option(None, "--llm-config", help="YAML/TOML file with the LLM settings."),
) -> None:
    """Write a strategy file from plain English with the configured LLM; it is validated and runs as is."""
    import os

    from backforge.judge.generate import generate_strategy
    from backforge.judge.recommendations import describe_condition

    config = _llm_config(llm_config, provider, model, base_url)
    market = None
    files: dict[str, str] | None = None
    if data:
        from backforge.strategy.compiler import load_data
        from backforge.strategy.schema import load_portfolio

        placeholder = load_portfolio({"name": "data", "universe": ["X"], "strategies": [
            {"name": "x", "action": {"kind": "alert"}}]})
        market = load_data(placeholder, override=list(data))
        from backforge.data.importers import read_csv

        files = {}
        for path in data:
            names = read_csv(path).assets
            if len(names) == 1:
                files[names[0]] = os.path.relpath(path.resolve(), output.resolve().parent)
    generated = generate_strategy(description, config, assets=asset or None, data=market, data_files=files,
                                  years=years, parallel=parallel, retries=retries)
    path = generated.save(output)
    portfolio = generated.portfolio
    console.print(f"[green]wrote[/] {path}: {portfolio.name} — {len(portfolio.strategies)} strategies on "
                  f"{', '.join(portfolio.universe)}", soft_wrap=True)
    for strategy in portfolio.strategies:
        when = describe_condition(strategy.condition) if strategy.condition is not None else "every bar"
        console.print(f"  • {strategy.name}: {strategy.action.kind} when {when}", highlight=False, soft_wrap=True)
    totals = generated.totals()
    cost = "unknown cost" if totals["cost_usd"] is None else f"${totals['cost_usd']:.4f}"
    console.print(f"[dim]{totals['calls']} call(s), {totals['cached']} cached, {totals['input_tokens']:,} + "
                  f"{totals['output_tokens']:,} tokens, {cost}; run it with `backforge run {path}`[/]", soft_wrap=True)


def _print_judgement(console, result) -> None:
    console.print(f"[bold]{result.headline()}[/]", soft_wrap=True, highlight=False)
    for f in result.findings:
        console.print(f"[{_COLORS[f.severity]}]{f.severity:<8}[/] [bold]{f.id}[/]: {_one_line(f.message)}",
                      soft_wrap=True, highlight=False)
        console.print(f"         [dim]fix: {_one_line(f.fix)}[/]", soft_wrap=True, highlight=False)
    if result.llm is not None:
        review = result.llm.review
        totals = result.llm.totals()
        cost = "unknown cost (set BACKFORGE_LLM_PRICE_INPUT/OUTPUT)" if totals["cost_usd"] is None and totals["calls"] \
            else f"${totals['cost_usd']:.4f}"
        console.print(f"[bold]LLM review[/] ({result.llm.model}): [bold]{review.verdict}[/] — {_one_line(review.summary)}",
                      soft_wrap=True)
        for concern in review.concerns:
            console.print(f"  • {_one_line(concern)}", soft_wrap=True)
        for dispute in review.disputes:
            console.print(f"  disputes {dispute.id}: {_one_line(dispute.reason)}", soft_wrap=True)
        console.print(f"[dim]{totals['calls']} call(s), {totals['cached']} cached, {totals['input_tokens']:,} input + "
                      f"{totals['output_tokens']:,} output tokens, {cost}[/]", soft_wrap=True)
    if result.recommendations:
        console.print("[bold]Recommendations[/]" + ("" if result.applied is not None else
                                                    " (apply and re-test them with --apply):"))
        for i, item in enumerate(result.recommendations, start=1):
            data = item.to_dict()
            console.print(f"  {i}. {data['description']} [dim]({item.source})[/]", highlight=False, soft_wrap=True)
    applied = result.applied
    if applied is not None:
        split = applied.split.to_dict()
        console.print(f"[bold]Before and after[/]: in sample {split['in_sample'][0][:10]} → {split['in_sample'][1][:10]} "
                      f"(what the judge saw), held out {split['out_of_sample'][0][:10]} → "
                      f"{split['out_of_sample'][1][:10]}; DSR counts {applied.total_trials} trials", soft_wrap=True,
                      highlight=False)
        for row in applied.rows:
            console.print(f"  [bold]{row['variant']}[/] [dim]({row['source']})[/]", soft_wrap=True, highlight=False)
            if row.get("status") != "ok":
                console.print(f"      [red]{row.get('status')}[/]: {_one_line(row.get('error'))}", soft_wrap=True,
                              highlight=False)
                continue
            dsr = "–" if row.get("dsr") is None else f"{row['dsr']:.2f}"
            console.print(f"      IS Sharpe {row['is_sharpe']:.2f}, return {row['is_total_return']:.1%} | OOS Sharpe "
                          f"{row['oos_sharpe']:.2f}, return {row['oos_total_return']:.1%}, max DD "
                          f"{row['oos_max_drawdown']:.1%}, {int(row['oos_trades'])} trades | DSR {dsr} | "
                          f"{row.get('verdict') or ''}", soft_wrap=True, highlight=False)
        for test in applied.tests:
            text = test.get("summary") or test.get("error") or test.get("status")
            console.print(f"  test [bold]{test['recommendation']}[/] [dim]({test['source']})[/]: {_one_line(text)}",
                          highlight=False, soft_wrap=True)
    sys.stdout.flush()
