"""Active learning against random sampling: what an annotation buys, replayed by ``active-learning simulate``.

For each shared corpus (``../shared/data/<corpus>``: ``tasks.json`` is the pool whose completions play the
annotator, ``dev_tasks.json`` the eval set) and each seed, ``simulate`` runs once per strategy (uncertainty,
random; the same seed tasks for both) and once on the whole pool (``--seed-size <pool> --rounds 0``: the
model a team gets by labelling everything, trained the same way). Each simulation is its own CLI process
with its own store and MLflow store, ``--jobs`` at a time (F1 does not depend on it: the seed fixes it).

Full-run settings, chosen to fit 60 minutes on 2 cores: every round trains from scratch for a fixed
number of steps, which costs a round the same whatever its data; 3 seeds. NCBI-disease: ``simulate``'s
own 400 steps (``SIMULATION_OVERRIDES``), seed 50 + 6 rounds of 25 (to 200 of 592 abstracts; about 48 s a
round with pre-annotating the pool, on an idle core). WNUT-17: 1,000 steps (``Plan.steps``, passed as
``ACTIVE_LEARNING_SPACY_OVERRIDES``), seed 100 + 6 rounds of 250 (to 1,600 of 3,394 tweets): its tweets
are short and its entities rare, and 400 steps (under a fifth of a pass over the pool) left the
whole-pool model at F1 0.045; at 1,200 steps it scores 0.235, above the live loop's converged 0.203
(``bench/model_quality.py``'s older method, scored on all of ``dev_tasks.json``). About 5,000 process-seconds: some 45 minutes with 2 jobs on idle cores.
The whole-pool mark is that of the simulation's training (same steps), not of the live loop's.
Annotations count tasks, not effort: a longer text has a lower whole-text confidence, so uncertainty
tends to pick longer tasks.

Reported: mean F1 per round per strategy with its spread over seeds (sd; min-max band on the plot); the
annotations each strategy needs until its mean F1 reaches 95 % of the whole-pool models' mean F1; and the key
ratio, uncertainty's annotations / random's for that (target <= 0.60x on at least one corpus, with
uncertainty's mean F1 never more than 0.01 below random's at any round). A strategy that does not reach it
within the rounds needs more than the last round's annotations: the ratio is then a bound.

    python bench/uncertainty_vs_random.py            # both corpora, 3 seeds: about 45 minutes on idle cores (see above)
    python bench/uncertainty_vs_random.py --quick    # first tasks of each corpus, 50 training steps, 1 seed: about a minute

The full run writes ``bench/results/uncertainty_vs_random.json`` and ``docs/bench/uncertainty_vs_random.png`` (F1 against
annotations per strategy and corpus).
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
from _common import DOCS, PYTHON, REPO, RESULTS, SHARED_DATA, load_average, print_table, ratio_line, save_json  # noqa: E402
from _training import QUICK_OVERRIDES, environment  # noqa: E402
from model_quality import first_tasks  # noqa: E402

STRATEGIES = ("uncertainty", "random")
WHOLE_POOL = "whole pool"
SHARE_OF_WHOLE_POOL = 0.95
TARGET_RATIO = 0.60
TOLERANCE = 0.01  # how far below random uncertainty's mean F1 may be at any round


@dataclass(frozen=True)
class Plan:
    seed_size: int
    batch: int
    rounds: int
    steps: int | None = None  # training steps a round, if not simulate's own (SIMULATION_OVERRIDES)
    pool_limit: int | None = None  # the first N tasks of the pool (quick mode)
    eval_limit: int | None = None

    def overrides(self) -> dict[str, Any] | None:
        return {"training.max_steps": self.steps, "training.eval_frequency": self.steps // 5} if self.steps else None


FULL = {"wnut17": Plan(100, 250, 6, steps=1000), "ncbi_disease": Plan(50, 25, 6)}
QUICK = {"wnut17": Plan(20, 20, 2, pool_limit=200, eval_limit=150), "ncbi_disease": Plan(8, 8, 2, pool_limit=40, eval_limit=15)}


@dataclass(frozen=True)
class Job:
    corpus: str
    strategy: str  # or WHOLE_POOL
    seed: int
    arguments: tuple[str, ...]
    overrides: dict[str, Any] | None


def jobs_for(corpus: str, plan: Plan, seeds: list[int], work: Path, overrides: dict[str, Any] | None) -> list[Job]:
    data = SHARED_DATA / corpus
    pool = first_tasks(data / "tasks.json", plan.pool_limit, work / f"{corpus}-tasks.json")
    evaluation = first_tasks(data / "dev_tasks.json", plan.eval_limit, work / f"{corpus}-dev_tasks.json")
    files = ("--tasks", str(pool), "--config", str(data / "labeling_config.xml"), "--eval-tasks", str(evaluation))
    size = len(json.loads(pool.read_text()))
    jobs = []
    for seed in seeds:
        for strategy in STRATEGIES:
            jobs.append(Job(corpus, strategy, seed, (*files, "--strategy", strategy, "--seed-size", str(plan.seed_size),
                                                     "--batch", str(plan.batch), "--rounds", str(plan.rounds), "--seed", str(seed)),
                            overrides))
        jobs.append(Job(corpus, WHOLE_POOL, seed, (*files, "--strategy", "random", "--seed-size", str(size), "--batch", "1",
                                                   "--rounds", "0", "--seed", str(seed)), overrides))
    return jobs


def run_job(job: Job, work: Path) -> dict[str, Any]:
    """``active-learning simulate`` in a fresh home; its JSON with the process's wall time."""
    home = work / f"{job.corpus}-{job.strategy.replace(' ', '_')}-{job.seed}"
    start = time.perf_counter()
    done = subprocess.run([PYTHON, "-m", "active_learning", "simulate", *job.arguments], env=environment(home, job.overrides),
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"simulate {' '.join(job.arguments)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout) | {"corpus": job.corpus, "curve": job.strategy, "seed": job.seed,
                                        "wall": time.perf_counter() - start}
    f1 = [r["f1"] for r in result["rounds"]]
    print(f"  {job.corpus} {job.strategy} seed {job.seed}: F1 {' '.join(f'{v:.3f}' for v in f1)} "
          f"({result['rounds'][-1]['annotations']} annotations) in {result['wall']:.0f} s", flush=True)
    return result


def curves(results: list[dict[str, Any]], corpus: str, curve: str) -> tuple[list[int], list[list[float]]]:
    """Annotations per round, and per round the F1 of every seed."""
    runs = [r for r in results if r["corpus"] == corpus and r["curve"] == curve]
    annotations = [r["annotations"] for r in runs[0]["rounds"]]
    return annotations, [[run["rounds"][i]["f1"] for run in runs] for i in range(len(annotations))]


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def needed(annotations: list[int], f1_per_round: list[list[float]], target: float) -> int | None:
    """The first round's annotations where the mean F1 over seeds reaches ``target``; None: not within the rounds."""
    return next((n for n, values in zip(annotations, f1_per_round) if statistics.mean(values) >= target), None)


def summarize(results: list[dict[str, Any]], corpus: str) -> dict[str, Any]:
    _, whole = curves(results, corpus, WHOLE_POOL)
    reference = statistics.mean(whole[0])
    target = SHARE_OF_WHOLE_POOL * reference
    annotations, uncertainty = curves(results, corpus, "uncertainty")
    _, random_ = curves(results, corpus, "random")
    gaps = [statistics.mean(r) - statistics.mean(u) for u, r in zip(uncertainty, random_)]
    needs = {"uncertainty": needed(annotations, uncertainty, target), "random": needed(annotations, random_, target)}
    last = annotations[-1]
    u, r = needs["uncertainty"], needs["random"]
    if u is not None and r is not None:
        ratio, reading = u / r, f"{u / r:.2f}x"
    elif u is not None:  # random needs more than the last round's annotations
        ratio, reading = u / last, f"< {u / last:.2f}x"
    elif r is not None:
        ratio, reading = last / r, f"> {last / r:.2f}x"
    else:
        ratio, reading = 1.0, "n/a: neither reaches it"
    return {"corpus": corpus, "whole_pool_f1": reference, "whole_pool_sd": spread(whole[0]), "target": target,
            "annotations": annotations, "uncertainty": uncertainty, "random": random_, "needs": needs, "last": last,
            "ratio": ratio, "reading": reading, "met": u is not None and ratio <= TARGET_RATIO, "worst_gap": max(gaps)}


def report(summaries: list[dict[str, Any]], seeds: list[int]) -> None:
    for s in summaries:
        rows = [[n, f"{statistics.mean(u):.3f} ± {spread(u):.3f}", f"{statistics.mean(r):.3f} ± {spread(r):.3f}",
                 f"{statistics.mean(u) - statistics.mean(r):.3f}"]
                for n, u, r in zip(s["annotations"], s["uncertainty"], s["random"])]
        print_table(["annotations", "uncertainty F1", "random F1", "uncertainty - random"], rows,
                    title=f"{s['corpus']}: mean dev F1 per round ± sd over {len(seeds)} seed(s) {seeds}")
    print_table(
        ["corpus", "whole-pool F1", f"{SHARE_OF_WHOLE_POOL:.0%} of it", "uncertainty needs", "random needs",
         "uncertainty / random", "worst round, random - uncertainty"],
        [[s["corpus"], f"{s['whole_pool_f1']:.3f} ± {s['whole_pool_sd']:.3f}", f"{s['target']:.3f}",
          *(_annotations(s["needs"][k], s["last"]) for k in STRATEGIES), s["reading"], f"{s['worst_gap']:.3f}"]
         for s in summaries],
        title=f"annotations to reach {SHARE_OF_WHOLE_POOL:.0%} of the whole-pool model's F1 (mean over seeds)")


def _annotations(value: int | None, last: int) -> str:
    return f"> {last}" if value is None else str(value)


def plot(summaries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(summaries), figsize=(6.2 * len(summaries), 4.3), squeeze=False)
    for ax, s in zip(axes[0], summaries):
        for strategy, color in zip(STRATEGIES, ("tab:blue", "tab:orange")):
            per_round = s[strategy]
            ax.plot(s["annotations"], [statistics.mean(v) for v in per_round], marker="o", color=color, label=f"{strategy} (mean)")
            ax.fill_between(s["annotations"], [min(v) for v in per_round], [max(v) for v in per_round], color=color, alpha=0.2)
        ax.axhline(s["whole_pool_f1"], color="grey", linestyle=":", label="whole pool")
        ax.axhline(s["target"], color="grey", linestyle="--", label=f"{SHARE_OF_WHOLE_POOL:.0%} of whole pool")
        ax.set(xlabel="annotations (tasks revealed)", ylabel="dev F1", title=f"{s['corpus']}: uncertainty / random {s['reading']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    figure.suptitle("Active learning against random sampling: F1 on dev_tasks.json (band: min-max over seeds)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"plot written to {path}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"first tasks of each corpus, spaCy overrides {QUICK_OVERRIDES}, seed 0")
    parser.add_argument("--corpora", default=",".join(FULL))
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=None, help="default 0,1,2 (quick: 0)")
    parser.add_argument("--jobs", type=int, default=2, help="simulations at a time (default 2: one per core)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/uncertainty_vs_random.json (full run: bench/results)")
    parser.add_argument("--plot", type=Path, default=None, help="the plot's path (full run: docs/bench/uncertainty_vs_random.png; quick: drawn in the work folder, not kept)")
    args = parser.parse_args()
    corpora = [c for c in args.corpora.split(",") if c]
    missing = [c for c in corpora if not (SHARED_DATA / c / "tasks.json").is_file()]
    if missing:
        raise SystemExit(f"shared corpora missing under {SHARED_DATA}: {missing}")
    plans, seeds = (QUICK, args.seeds or [0]) if args.quick else (FULL, args.seeds or [0, 1, 2])
    print(f"active learning vs random on {', '.join(corpora)}{' (quick)' if args.quick else ''}, seeds {seeds}, "
          f"{args.jobs} job(s); plans {({c: plans[c] for c in corpora})}; load average {load_average()}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="al-bench-simulate-") as tmp:
        work = Path(tmp)
        jobs = [job for corpus in corpora
                for job in jobs_for(corpus, plans[corpus], seeds, work, QUICK_OVERRIDES if args.quick else plans[corpus].overrides())]
        jobs.sort(key=lambda job: (job.corpus != "ncbi_disease", job.strategy != "uncertainty"))  # longest first
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(lambda job: run_job(job, work), jobs))
        summaries = [summarize(results, corpus) for corpus in corpora]
        report(summaries, seeds)
        plot(summaries, args.plot or (work / "uncertainty_vs_random.png" if args.quick else DOCS / "uncertainty_vs_random.png"))
    wall = time.perf_counter() - started
    print(f"wall time {wall:.0f} s for {len(jobs)} simulations ({sum(r['wall'] for r in results):.0f} process-seconds, "
          f"{args.jobs} at a time); load average {load_average()}", flush=True)
    save_json("uncertainty_vs_random", {"quick": args.quick, "seeds": seeds, "plans": {c: plans[c].__dict__ for c in corpora},
                                  "wall": wall, "results": results, "summaries": summaries, "load_average": load_average()},
              args.out or (None if args.quick else RESULTS))
    best = min(summaries, key=lambda s: (not s["met"], s["ratio"]))
    within = all(s["worst_gap"] <= TOLERANCE for s in summaries)
    print(f"uncertainty's mean F1 is {'never' if within else 'somewhere'} more than {TOLERANCE} below random's "
          f"(worst: {max(s['worst_gap'] for s in summaries):+.3f})")
    print(ratio_line(f"annotations to {SHARE_OF_WHOLE_POOL:.0%} of whole-pool F1, uncertainty / random "
                     f"({best['corpus']}: {_annotations(best['needs']['uncertainty'], best['last'])} / "
                     f"{_annotations(best['needs']['random'], best['last'])})", best["ratio"],
                     f"<= {TARGET_RATIO:.2f}x on one corpus, never {TOLERANCE} F1 below random", best["met"] and within))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
