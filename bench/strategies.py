"""Every queue strategy against random order, from scratch and from a base, cost counted as annotators pay it.

Replayed by ``active-learning simulate`` on each shared corpus (``../shared/data/<corpus>``: ``tasks.json`` is
the pool whose completions play the annotator, ``dev_tasks.json`` the eval set). Per corpus, **side** (from
scratch; from the base, Explosion's ``en_core_web_sm`` 3.8.0 as ``bench/base_model.py`` fetches it) and seed,
``simulate`` runs once per strategy (``margin``, ``mnlp``, ``entity``, ``dropout``, ``random``: the same seed
tasks for all) and once on the whole pool (``--seed-size <pool> --rounds 0``: the model a team gets by
labelling everything, trained the same way). Rounds are 2 % of the pool (NCBI-disease: 11 abstracts,
WNUT-17: 67 tweets), the seed tasks as many, to a fifth of the pool; every round trains as the live loop trains, from scratch (or
the base) and stopping early on its own dev part (``simulate``'s ``SIMULATION_OVERRIDES``). Each
simulation is its own CLI process with its own store and MLflow store, ``--jobs`` at a time.

Reported per corpus and side: mean F1 ± sd per round for every strategy, with the tokens annotated (mean
over seeds); per strategy the **tokens** it needs until its mean F1 reaches 95 % of the whole-pool models'
mean F1, that over random's (target <= 0.5x on both corpora for the default), and its worst round against
random: random's mean F1 minus its own, *level* when inside the seed spread (the larger sd of the two).
A strategy that does not reach 95 % within the rounds needs more than its last round's tokens: a bound.
Within a fifth of the pool no curve may reach 95 %: each strategy's tokens to random's last-round mean F1,
over the tokens random itself needed to first reach it, say the saving at equal F1 all the same.

    python bench/strategies.py                                      # everything (the cost: docs/performance.md)
    python bench/strategies.py --corpora ncbi_disease --sides scratch --strategies mnlp,random
    python bench/strategies.py --quick                              # 40 tweets, 1 round, 50 steps, seed 0: CI
    python bench/strategies.py --missing                            # what the results file lacks
    python bench/strategies.py --report                             # the tables and the plot of what was run

A run writing to a results file that holds results of the same mode replaces the (corpus, side, curve,
seed) simulations it ran and reports on all of them, so the full run can be made in parts. The full run
writes ``bench/results/strategies.json`` and ``docs/bench/strategies.png`` (F1 against tokens annotated).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOCS, PYTHON, REPO, RESULTS, SHARED_DATA, load_average, print_table, ratio_line  # noqa: E402
from _training import QUICK_OVERRIDES, environment  # noqa: E402
from base_model import base_pipeline  # noqa: E402
from model_quality import Results, first_tasks  # noqa: E402

from active_learning.preannotation.strategies import DEFAULT_STRATEGY, RANDOM, SCORER_NAMES  # noqa: E402

STRATEGIES = (*SCORER_NAMES, RANDOM)
SIDES = ("scratch", "base")
WHOLE_POOL = "whole pool"
SHARE_OF_WHOLE_POOL = 0.95
TARGET_RATIO = 0.50
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Plan:
    seed_size: int
    batch: int
    rounds: int
    pool_limit: int | None = None  # the first N tasks of the pool (quick mode)
    eval_limit: int | None = None


# Rounds of 2 % of the pool, to a fifth of it (to a third, the grid took about 7 hours on 2 cores: a round
# trains to early stopping, and later rounds train on more).
FULL = {"wnut17": Plan(67, 67, 9), "ncbi_disease": Plan(11, 11, 10)}
QUICK = {"wnut17": Plan(10, 10, 1, pool_limit=40, eval_limit=40), "ncbi_disease": Plan(6, 6, 1, pool_limit=20, eval_limit=10)}


@dataclass(frozen=True)
class Job:
    corpus: str
    side: str
    curve: str  # a strategy, or WHOLE_POOL
    seed: int
    arguments: tuple[str, ...]

    @property
    def key(self) -> tuple[Any, ...]:
        """As :func:`key` names the record this simulation writes."""
        return self.corpus, self.side, self.curve, self.seed


def key(record: dict[str, Any]) -> tuple[Any, ...]:
    return record["corpus"], record["side"], record["curve"], record["seed"]


class Simulations(Results):
    """A record per simulation (corpus, side, curve, seed): its rounds."""

    key = staticmethod(key)

    def runs(self, corpus: str, side: str, curve: str) -> list[dict[str, Any]]:
        return sorted((r for r in self.data["records"] if key(r)[:3] == (corpus, side, curve)), key=lambda r: r["seed"])


def jobs_for(corpus: str, plan: Plan, sides: list[str], strategies: list[str], seeds: list[int], base: Path | None,
             work: Path) -> list[Job]:
    data = SHARED_DATA / corpus
    pool = first_tasks(data / "tasks.json", plan.pool_limit, work / f"{corpus}-tasks.json")
    evaluation = first_tasks(data / "dev_tasks.json", plan.eval_limit, work / f"{corpus}-dev_tasks.json")
    files = ("--tasks", str(pool), "--config", str(data / "labeling_config.xml"), "--eval-tasks", str(evaluation))
    size = len(json.loads(pool.read_text()))
    jobs = []
    for side in sides:
        start = ("--base", str(base)) if side == "base" else ()
        for seed in seeds:
            jobs += [Job(corpus, side, strategy, seed, (*files, *start, "--strategy", strategy, "--seed-size", str(plan.seed_size),
                                                        "--batch", str(plan.batch), "--rounds", str(plan.rounds), "--seed", str(seed)))
                     for strategy in strategies]
            jobs.append(Job(corpus, side, WHOLE_POOL, seed, (*files, *start, "--strategy", RANDOM, "--seed-size", str(size),
                                                             "--batch", "1", "--rounds", "0", "--seed", str(seed))))
    return jobs


def run_job(job: Job, work: Path, overrides: dict[str, Any] | None, results: Simulations) -> None:
    """``active-learning simulate`` in a fresh home; its rounds recorded with the process's wall time."""
    home = work / f"{job.corpus}-{job.side}-{job.curve.replace(' ', '_')}-{job.seed}"
    start = time.perf_counter()
    env = environment(home, overrides) | dict.fromkeys(THREAD_VARIABLES, "1")  # --jobs simulations share the cores
    done = subprocess.run([PYTHON, "-m", "active_learning", "simulate", *job.arguments], env=env, cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"simulate {' '.join(job.arguments)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rounds = json.loads(done.stdout)["rounds"]
    wall = time.perf_counter() - start
    f1 = " ".join(f"{r['f1']:.3f}" for r in rounds)
    print(f"  {job.corpus} {job.side} {job.curve} seed {job.seed}: F1 {f1} "
          f"({rounds[-1]['annotations']} tasks, {rounds[-1]['tokens']} tokens) in {wall:.0f} s", flush=True)
    results.add({"corpus": job.corpus, "side": job.side, "curve": job.curve, "seed": job.seed, "run": results.run,
                 "wall": wall, "rounds": rounds})


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class Curve:
    """One strategy's rounds over seeds: per round the mean tokens annotated and every seed's F1."""

    tokens: list[float]
    f1: list[list[float]]  # per round, per seed
    seeds: list[int]

    @classmethod
    def of(cls, runs: list[dict[str, Any]]) -> Curve:
        rounds = min(len(run["rounds"]) for run in runs)
        return cls([statistics.fmean(run["rounds"][i]["tokens"] for run in runs) for i in range(rounds)],
                   [[run["rounds"][i]["f1"] for run in runs] for i in range(rounds)], [run["seed"] for run in runs])

    def mean(self, i: int) -> float:
        return statistics.fmean(self.f1[i])

    def leads_over(self, other: Curve) -> list[float]:
        """Per seed, its F1 minus ``other``'s averaged over the rounds after the seed round (the area between
        the two learning curves per round): paired, as both start from the seed's same tasks."""
        rounds = range(1, min(len(self.f1), len(other.f1)))
        pairs = [(self.seeds.index(seed), other.seeds.index(seed)) for seed in self.seeds if seed in other.seeds]
        return [statistics.fmean(self.f1[i][mine] - other.f1[i][theirs] for i in rounds) for mine, theirs in pairs] if rounds else []

    def tokens_to(self, target: float) -> float | None:
        """Mean tokens at the first round whose mean F1 reaches ``target``; None: not within the rounds."""
        return next((t for i, t in enumerate(self.tokens) if self.mean(i) >= target), None)


def summarize(results: Simulations, corpus: str, side: str, strategies: list[str]) -> dict[str, Any] | None:
    whole = [run["rounds"][0]["f1"] for run in results.runs(corpus, side, WHOLE_POOL)]
    curves = {s: Curve.of(runs) for s in strategies if (runs := results.runs(corpus, side, s))}
    if not whole or RANDOM not in curves:
        return None
    target = SHARE_OF_WHOLE_POOL * statistics.fmean(whole)
    random_ = curves[RANDOM]
    rows = {}
    for strategy, curve in curves.items():
        needs, baseline = curve.tokens_to(target), random_.tokens_to(target)
        if needs is not None and baseline is not None:
            ratio, reading = needs / baseline, f"{needs / baseline:.2f}x"
        elif needs is not None:  # random needs more than its last round's tokens
            ratio, reading = needs / random_.tokens[-1], f"< {needs / random_.tokens[-1]:.2f}x"
        elif baseline is not None:
            ratio, reading = curve.tokens[-1] / baseline, f"> {curve.tokens[-1] / baseline:.2f}x"
        else:
            ratio, reading = float("inf"), "n/a: neither reaches it"
        # Random's last F1, matched: within a fifth of the pool no curve may reach 95 % of the whole pool's
        last = random_.mean(len(random_.f1) - 1)
        matched, random_matched = curve.tokens_to(last), random_.tokens_to(last)
        match_ratio = matched / random_matched if matched is not None and random_matched else None
        rounds = range(min(len(curve.f1), len(random_.f1)))
        gaps = [(random_.mean(i) - curve.mean(i), max(spread(random_.f1[i]), spread(curve.f1[i]))) for i in rounds]
        worst = max(gaps, key=lambda gap: gap[0] - gap[1])
        leads, level = curve.leads_over(random_), worst[0] <= worst[1]
        rows[strategy] = {"needs": needs, "ratio": ratio, "reading": reading, "worst_gap": worst[0], "worst_sd": worst[1],
                          "level": level, "met": ratio <= TARGET_RATIO and level,
                          "mean_lead": statistics.fmean(leads) if leads else 0.0, "lead_sd": spread(leads),
                          "to_random_last": matched, "to_random_last_ratio": match_ratio}
    return {"corpus": corpus, "side": side, "whole_pool_f1": statistics.fmean(whole), "whole_pool_sd": spread(whole),
            "target": target, "strategies": rows, "curves": {s: c.__dict__ for s, c in curves.items()}}


def report(summaries: list[dict[str, Any]]) -> None:
    for s in summaries:
        curves = {name: Curve(**c) for name, c in s["curves"].items()}
        rows = [[i, *(f"{c.tokens[i]:,.0f}: {c.mean(i):.3f} ± {spread(c.f1[i]):.3f}" if i < len(c.f1) else "" for c in curves.values())]
                for i in range(max(len(c.f1) for c in curves.values()))]
        seeds = sorted(set().union(*(c.seeds for c in curves.values())))  # the seeds this corpus and side has run
        print_table(["round", *curves], rows, title=f"{s['corpus']}, {s['side']}: tokens annotated: mean F1 ± sd over "
                                                    f"seeds {seeds}")
    print_table(
        ["corpus", "side", "whole-pool F1", "95 % of it", "strategy", "tokens to 95 %", "/ random's",
         "tokens to random's last F1 / random's", "mean lead over random (sd)", "worst round, random - it (sd)"],
        [[s["corpus"], s["side"], f"{s['whole_pool_f1']:.3f} ± {s['whole_pool_sd']:.3f}", f"{s['target']:.3f}", name,
          "not reached" if row["needs"] is None else f"{row['needs']:,.0f}", row["reading"], _matched(row),
          f"{row['mean_lead']:+.3f} ({row['lead_sd']:.3f})",
          f"{row['worst_gap']:+.3f} ({row['worst_sd']:.3f}){'' if row['level'] else ' BELOW'}"]
         for s in summaries for name, row in s["strategies"].items()],
        title=f"tokens annotated until the mean F1 reaches {SHARE_OF_WHOLE_POOL:.0%} of the whole-pool model's (target "
              f"<= {TARGET_RATIO:.2f}x random's, never below it beyond the seed spread)")


def _legend(row: dict[str, Any]) -> str:
    if row["ratio"] != float("inf"):  # 95 % of the whole pool reached by it or by random
        return row["reading"]
    if row.get("to_random_last") is None:
        return "random's last F1 not reached"
    return f"{row['to_random_last_ratio']:.2f}x (random's last F1)"


def _matched(row: dict[str, Any]) -> str:
    if row.get("to_random_last") is None:
        return "not reached"
    return f"{row['to_random_last']:,.0f}: {row['to_random_last_ratio']:.2f}x"


def plot(summaries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(dict.fromkeys(s["corpus"] for s in summaries))
    sides = list(dict.fromkeys(s["side"] for s in summaries))
    figure, axes = plt.subplots(len(corpora), len(sides), figsize=(max(6.2 * len(sides), 9.0), 4.3 * len(corpora) + 0.4), squeeze=False)
    for s in summaries:
        ax = axes[corpora.index(s["corpus"])][sides.index(s["side"])]
        for name, c in s["curves"].items():
            curve = Curve(**c)
            line, = ax.plot(curve.tokens, [curve.mean(i) for i in range(len(curve.f1))], marker=".",
                            linestyle="--" if name == RANDOM else "-", label=f"{name}: {_legend(s['strategies'][name])}")
            ax.fill_between(curve.tokens, [min(v) for v in curve.f1], [max(v) for v in curve.f1], color=line.get_color(), alpha=0.12)
        ax.axhline(s["whole_pool_f1"], color="grey", linestyle=":", label="whole pool")
        ax.axhline(s["target"], color="grey", linestyle="-.", label=f"{SHARE_OF_WHOLE_POOL:.0%} of whole pool")
        ax.set(xlabel="tokens annotated", ylabel="dev F1", title=f"{s['corpus']}, {s['side']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="lower right")
    drawn = {(s["corpus"], s["side"]) for s in summaries}
    for corpus, side in ((c, side) for c in corpora for side in sides if (c, side) not in drawn):
        ax = axes[corpora.index(corpus)][sides.index(side)]
        ax.axis("off")
        ax.text(0.5, 0.5, f"{corpus}, {side}: not run yet", ha="center", va="center", transform=ax.transAxes, color="grey")
    figure.suptitle("Queue strategies against random order: F1 on dev_tasks.json (band: min-max over seeds)\n"
                    "legend: tokens to 95 % of the whole pool's F1 / random's, or where no curve reaches it, to random's last F1")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"plot written to {path}", flush=True)


def _names(text: str, known: tuple[str, ...]) -> list[str]:
    names = [name for name in text.split(",") if name]
    if unknown := [name for name in names if name not in known]:
        raise SystemExit(f"unknown {unknown}: choose from {', '.join(known)}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"first tweets of WNUT-17, spaCy overrides {QUICK_OVERRIDES}, seed 0")
    parser.add_argument("--corpora", default=None, help="default: both (quick: wnut17)")
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="random is always run")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=None, help="default 0,1,2 (quick: 0)")
    parser.add_argument("--jobs", type=int, default=2, help="simulations at a time (default 2: one per core)")
    parser.add_argument("--missing", action="store_true", help="run only the simulations the results file lacks (a full run "
                                                                   "made in parts)")
    parser.add_argument("--report", action="store_true", help="run nothing: report and plot what the results file holds")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/strategies.json (full run: bench/results)")
    parser.add_argument("--plot", type=Path, default=None, help="the plot's path (full run: docs/bench/strategies.png; "
                                                                  "quick: drawn in the work folder, not kept)")
    args = parser.parse_args()
    corpora = _names(args.corpora or ("wnut17" if args.quick else ",".join(FULL)), tuple(FULL))
    sides = _names(args.sides, SIDES)
    strategies = list(dict.fromkeys([*_names(args.strategies, STRATEGIES), RANDOM]))
    if missing := [c for c in corpora if not (SHARED_DATA / c / "tasks.json").is_file()]:
        raise SystemExit(f"shared corpora missing under {SHARED_DATA}: {missing}")
    plans, seeds = (QUICK, args.seeds or [0]) if args.quick else (FULL, args.seeds or [0, 1, 2])
    overrides = QUICK_OVERRIDES if args.quick else None
    base = base_pipeline() if "base" in sides and not args.report else None
    print(f"strategies {', '.join(strategies)} on {', '.join(corpora)}{' (quick)' if args.quick else ''}, sides {sides}, "
          f"seeds {seeds}, {args.jobs} job(s); plans {({c: plans[c] for c in corpora})}; load average {load_average()}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="al-bench-strategies-") as tmp:
        work = Path(tmp)
        out = args.out or (work if args.quick else RESULTS)
        results = Simulations(out / "strategies.json", {"quick": args.quick, "plans": {c: plans[c].__dict__ for c in FULL},
                                                         "overrides": overrides})
        jobs = [] if args.report else [job for corpus in corpora for job in jobs_for(corpus, plans[corpus], sides, strategies, seeds, base, work)]
        if args.missing:
            done = {key(record) for record in results.data["records"]}
            jobs = [job for job in jobs if job.key not in done]
        # Seed by seed (a run stopped early leaves whole seeds: each scorer beside its random), the longest first.
        jobs.sort(key=lambda job: (job.seed, job.curve == WHOLE_POOL, job.curve == RANDOM))
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: run_job(job, work, overrides, results), jobs))
        summaries = [s for corpus in FULL for side in SIDES if (s := summarize(results, corpus, side, list(STRATEGIES)))]
        if not summaries:
            raise SystemExit(f"{out / 'strategies.json'} holds no corpus and side with random's and the whole pool's runs: "
                             f"nothing to report")
        report(summaries)
        plot(summaries, args.plot or (work / "strategies.png" if args.quick else DOCS / "strategies.png"))
    wall = time.perf_counter() - started
    print(f"wall time {wall:.0f} s for {len(jobs)} simulations, {args.jobs} at a time; load average {load_average()}", flush=True)
    scratch = [s for s in summaries if s["side"] == "scratch"] or summaries
    default = [s["strategies"][DEFAULT_STRATEGY] for s in scratch if DEFAULT_STRATEGY in s["strategies"]]
    met = bool(default) and all(row["met"] for row in default)
    if default and all(row["needs"] is not None for row in default):
        worst = max(default, key=lambda row: row["ratio"])
        name, value = f"tokens to {SHARE_OF_WHOLE_POOL:.0%} of whole-pool F1, the default {DEFAULT_STRATEGY} / random, its worst corpus " \
                      f"from scratch ({worst['reading']})", worst["ratio"]
    else:  # 95 % not reached within the rounds: the saving at random's own last F1 instead
        ratios = [row["to_random_last_ratio"] for row in default]
        value = max((r if r is not None else float("inf") for r in ratios), default=float("nan"))
        name = (f"tokens to random's last-round F1, the default {DEFAULT_STRATEGY} / random, its worst corpus from scratch "
                f"({SHARE_OF_WHOLE_POOL:.0%} of whole-pool F1 not reached within the rounds)")
    print(ratio_line(name, value, f"<= {TARGET_RATIO:.2f}x on both corpora, never below random beyond the seed spread", met))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
