"""The poll against a real Label Studio server: requests and wall time per poll as projects grow.

Starts Label Studio (``devstack.label_studio``: its own virtual environment, loopback, a
personal access token), creates N projects with the sample labeling config and a few annotated tasks each
(one project in ten past its threshold of 50), connects them all to a fresh store with active learning
on, then times, median of ``--repeat`` polls each, interleaved:

* **poll** - ``Sources.poll(as_of)``, what the sensor runs: one store query for the Label Studio projects'
  settings and last trainings, then ``GET /api/projects?ids=...&include=total_annotations_number`` per 100;
* **per-project** - the naive way: one ``GET /api/projects/{id}`` per project.

Requests are counted by the client (token refreshes included: the first poll of a process pays one).

    python bench/label_studio_poll.py                  # 10, 50, 100 projects (about 5 minutes), writes results
    python bench/label_studio_poll.py --projects 100   # only 100
    python bench/label_studio_poll.py --quick          # 5 projects, 3 polls (about a minute, most of it start-up)

The last line is the key ratio: per-project time / poll time at the largest size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, load_average, median, ms, print_table, ratio_line, save_json  # noqa: E402

SAMPLE = REPO / "include" / "sample"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--projects", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="5 projects, 3 polls, no results written")
    args = parser.parse_args()
    if args.quick:
        args.projects, args.repeat, args.out = [5], 3, None

    home = Path(tempfile.mkdtemp(prefix="bench-ls-poll-"))
    os.environ["ACTIVE_LEARNING_HOME"] = str(home / "data")
    os.environ.pop("ACTIVE_LEARNING_DB_URL", None)
    from active_learning.backends import Backends
    from active_learning.sources.label_studio_client import LabelStudioClient, LabelStudioConnection
    from devstack.label_studio import LocalLabelStudio, sample_tasks
    from active_learning.store.models import SOURCE_LABEL_STUDIO, utcnow

    print(f"load average: {load_average()}", flush=True)
    config = (SAMPLE / "labeling_config.xml").read_text()
    tasks = sample_tasks()
    rows, results = [], []
    started = time.perf_counter()
    with LocalLabelStudio(home / "label-studio") as server:
        print(f"Label Studio up at {server.url} in {time.perf_counter() - started:.0f} s", flush=True)
        os.environ["AIRFLOW_CONN_LABEL_STUDIO_DEFAULT"] = server.connection_uri()
        setup = LabelStudioClient(LabelStudioConnection(server.url, server.token))
        backends = Backends()
        created = 0
        for target in sorted(args.projects):
            while created < target:
                project_id = int(setup.create_project(f"bench-{created:04d}", config)["id"])
                # One project in ten past its threshold (90 annotations), the others at 10.
                setup.import_tasks(project_id, tasks if created % 10 == 0 else tasks[:10])
                backends.store.projects.create(f"bench-{created:04d}", config, active_learning=True, frequency=50,
                                         source=SOURCE_LABEL_STUDIO, source_project_id=project_id)
                created += 1
            ids = [backends.store.projects.get(name).source_project_id for name in backends.store.projects.names()]
            source = Backends().sources  # a fresh process's view: its first poll refreshes the token
            client = source.label_studio.client
            before = client.requests_sent
            first = time.perf_counter()
            polled = source.poll(utcnow())
            first = time.perf_counter() - first
            first_requests = client.requests_sent - before
            poll_times, naive_times, poll_requests = [], [], []
            for _ in range(args.repeat):
                before = client.requests_sent
                start = time.perf_counter()
                again = source.poll(utcnow())
                poll_times.append(time.perf_counter() - start)
                poll_requests.append(client.requests_sent - before)
                start = time.perf_counter()
                naive = {i: client.project(i)["total_annotations_number"] for i in ids}
                naive_times.append(time.perf_counter() - start)
            due = sum(row.due for row in again)
            assert due == len(range(0, target, 10)) and len(polled) == target, (due, len(polled))
            assert sorted(naive.values()) == sorted(row.since_last_training for row in again)
            result = {
                "projects": target, "due": due, "requests_per_poll": max(poll_requests), "first_poll_requests": first_requests,
                "poll_ms": median(poll_times) * 1000, "first_poll_ms": first * 1000,
                "per_project_requests": len(ids), "per_project_ms": median(naive_times) * 1000,
            }
            results.append(result)
            rows.append([target, due, result["requests_per_poll"], first_requests, ms(median(poll_times)), ms(first),
                         len(ids), ms(median(naive_times)), f"{median(naive_times) / median(poll_times):.1f}x"])
    print_table(
        ["LS projects", "due", "requests/poll", "first poll (token)", "poll ms (median)", "first poll ms",
         "per-project requests", "per-project ms", "per-project / poll"],
        rows, title=f"Poll of Label Studio projects (median of {args.repeat}; loopback, 2 cores)",
    )
    save_json("label_studio_poll", {"load_average": load_average(), "results": results}, args.out)
    last = results[-1]
    print(f"poll at {last['projects']} Label Studio projects: {last['requests_per_poll']} request(s), "
          f"{last['poll_ms']:.1f} ms median ({last['first_poll_requests']} requests, {last['first_poll_ms']:.1f} ms "
          f"for a process's first poll, which refreshes its token)")
    ratio = last["per_project_ms"] / last["poll_ms"]
    target = 10 if last["projects"] >= 50 else 2
    print(ratio_line(f"per-project GETs / one poll at {last['projects']} projects (time)", ratio, f">= {target}", ratio >= target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
