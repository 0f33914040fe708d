"""``active-learning``: the loop's command line, on the same code paths as the DAGs.

Settings come from the environment (see :mod:`active_learning.settings`). Exit status: 0 done,
1 a clear error (printed to stderr, one line per problem), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from active_learning.backends import Backends
from active_learning.constants import DEPLOY_ALWAYS, DEPLOY_AUTO, DEPLOY_REGISTER_ONLY
from active_learning.preannotation.export import FORMATS
from active_learning.preannotation.strategies import DEFAULT_STRATEGY, STRATEGIES, UNCERTAINTY
from active_learning.preannotation.simulation import EXPERIMENT as SIMULATION_EXPERIMENT
from active_learning.preannotation.simulation import SIMULATION_OVERRIDES, STRATEGIES as SIMULATION_STRATEGIES
from active_learning.settings import hide_passwords
from active_learning.store.models import DEFAULT_FREQUENCY, FREQUENCIES, SOURCE_LABEL_STUDIO, SOURCE_STORE, utcnow
from active_learning.training.base_model import BaseModelError


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    backends = Backends()
    try:
        return args.command(backends, args) or 0
    except BaseModelError as error:  # model.base names something unusable: the user's value, as a usage error
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (LookupError, ValueError, RuntimeError, OSError) as error:
        print(f"error: {hide_passwords(str(error))}", file=sys.stderr)
        return 1
    except Exception as error:
        if not _from_mlflow(error):
            raise
        # MLflow's messages run to many lines and may name the tracking URI: the first says what failed.
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"error: MLflow: {hide_passwords(first_line)}", file=sys.stderr)
        return 1


def _from_mlflow(error: Exception) -> bool:
    exceptions = sys.modules.get("mlflow.exceptions")  # MLflow not imported: the error cannot be its own
    return exceptions is not None and isinstance(error, exceptions.MlflowException)


def cmd_init(backends: Backends, args: argparse.Namespace) -> int:
    backends.store  # creates the schema
    backends.registry.client.search_experiments(max_results=1)  # creates MLflow's store
    print(f"annotation store: {hide_passwords(backends.store.engine.url.render_as_string(hide_password=False))}")
    print(f"MLflow tracking:  {hide_passwords(backends.registry.tracking_uri)}")
    return 0


def cmd_recount(backends: Backends, args: argparse.Namespace) -> int:
    backends.store.status.recount()
    print("poll counters recomputed from the completions and trainings of every project")
    return 0


def cmd_import(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.deploy.deployment import config_problems
    from active_learning.exports import read_export
    from active_learning.labeling_config import list_labels, text_key
    from active_learning.naming import check_project_name

    store = backends.store
    if store.projects.exists(args.project) and store.projects.get(args.project).source != SOURCE_STORE:
        print(f"error: project {args.project!r} lives in Label Studio: its completions are read from there", file=sys.stderr)
        return 1
    if not store.projects.exists(args.project):
        check_project_name(args.project)  # "", " " or "..": refused, saying why, before anything is read
        if args.config is None:
            print(f"error: project {args.project!r} does not exist yet: give its labeling config with --config", file=sys.stderr)
            return 1
        xml = Path(args.config).read_text(encoding="utf-8")
        problems = config_problems(backends, args.project, xml)  # validate-config --project's checks
        if problems:
            return _print_problems(problems)
        store.projects.create(args.project, xml, text_key=text_key(xml), frequency=args.frequency or DEFAULT_FREQUENCY)
    if args.frequency or args.enable or args.auto_deploy is not None:
        store.projects.update_settings(
            args.project, frequency=args.frequency, auto_deploy=args.auto_deploy, active_learning=True if args.enable else None
        )
    project = store.projects.get(args.project)
    labels = {label.value for label in list_labels(store.configs.read(args.project).xml)}
    tasks, summary = read_export(Path(args.path), text_key=project.text_key, allowed_labels=labels)
    result = store.completions.import_tasks(args.project, tasks)
    added = {"new_tasks": result.new_tasks, "new_completions": result.new_completions,
             "already_imported": result.known_completions}
    backends.registry.log_import(args.project, source=args.path, summary=summary.as_dict(), added=added)
    print(
        json.dumps(
            {"project": args.project, "new_tasks": result.new_tasks, "new_completions": result.new_completions,
             "already_imported": result.known_completions, "export": summary.as_dict()},
            indent=2,
        )
    )
    if result.new_completions and project.active_learning:
        from active_learning.announce import announce_completions

        if told := announce_completions([args.project], "active-learning import"):
            print(told, file=sys.stderr)
    return 0


def cmd_connect_label_studio(backends: Backends, args: argparse.Namespace) -> int:
    """Register a Label Studio project: its config is read from the server, its settings kept here."""
    from sqlalchemy.exc import IntegrityError

    from active_learning import webhooks
    from active_learning.labeling_config import check_structure, label_studio_label_problems, text_key
    from active_learning.settings import webhook_base_url

    client = backends.sources.label_studio.client
    remote = client.project(args.ls_project)
    xml = remote["label_config"]
    problems = check_structure(xml)
    if problems:
        return _print_problems(problems)
    used = client.project_summary(args.ls_project).get("created_labels") or {}
    if problems := label_studio_label_problems(xml, remote.get("parsed_label_config"), used):
        return _print_problems(problems)
    name = args.project or remote["title"]
    if backends.store.projects.exists(name):
        print(f"error: a project named {name!r} exists already: choose another name with --project", file=sys.stderr)
        return 1
    try:
        settings = backends.store.projects.create(
            name, xml, text_key=text_key(xml), frequency=args.frequency or DEFAULT_FREQUENCY,
            auto_deploy=bool(args.auto_deploy), active_learning=args.enable, author="cli",
            source=SOURCE_LABEL_STUDIO, source_project_id=args.ls_project,
        )
    except IntegrityError:  # uq_projects_source_project
        print(f"error: Label Studio project {args.ls_project} is connected already (see `projects`)", file=sys.stderr)
        return 1
    print(f"{settings.name}: Label Studio project {args.ls_project} at {client.connection.shown_url}, active learning "
          f"{'on' if settings.active_learning else 'off'}, every {settings.frequency}, auto-deploy {'on' if settings.auto_deploy else 'off'}")
    print(webhooks.register(client, args.ls_project, webhook_base_url(), client.connection.webhook_secret))
    return 0


def cmd_disconnect_label_studio(backends: Backends, args: argparse.Namespace) -> int:
    """The project leaves Label Studio: its webhook removed there, active learning off, the link freed."""
    from active_learning import webhooks

    settings = backends.store.projects.get(args.project)
    if settings.source != SOURCE_LABEL_STUDIO or settings.source_project_id is None:
        print(f"error: project {args.project!r} is not connected to Label Studio (see `projects`)", file=sys.stderr)
        return 2
    removed, said = webhooks.unregister(backends.sources.label_studio.client, settings.source_project_id)
    backends.store.projects.disconnect(args.project)
    print(f"{args.project}: disconnected from Label Studio project {settings.source_project_id}; active learning off. Its "
          "history, models and config revisions stay here; its tasks and annotations stay in Label Studio")
    print(said, file=sys.stdout if removed else sys.stderr)
    return 0


def cmd_enable(backends: Backends, args: argparse.Namespace) -> int:
    auto_deploy = args.auto_deploy
    if auto_deploy is None and sys.stdin.isatty():  # a person at a terminal answers the page's question
        answer = input("Deploy a newly trained model into the labeling config right after training, "
                       "if it passes the deploy gate? [y/N] ")
        auto_deploy = answer.strip().lower() in ("y", "yes")
    settings = backends.store.projects.update_settings(
        args.project, active_learning=True, frequency=args.frequency, auto_deploy=auto_deploy
    )
    kept = " (unchanged: --auto-deploy or --no-auto-deploy to choose)" if auto_deploy is None else ""
    print(f"{settings.name}: active learning on, every {settings.frequency} new completions, "
          f"auto-deploy {'on' if settings.auto_deploy else 'off'}{kept}")
    return 0


def cmd_training_params(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.training import base_model, parameters

    current = backends.store.projects.get(args.project).training_params
    try:
        assign = dict(parameters.parse_assignment(text) for text in args.set)
        wanted = parameters.changed(current, assign, args.unset, base_check=lambda spec: base_model.check(spec, backends))
    except parameters.TrainingParameterError as error:  # one line per bad value; nothing saved: a usage error
        _print_problems(error.problems)
        return 2
    if wanted != current:
        backends.store.projects.set_training_params(
            args.project, wanted, author="cli", reason=parameters.describe(assign, args.unset))
    rows = parameters.effective(wanted).rows()
    if args.json:
        print(json.dumps({"project": args.project, "parameters": rows}, indent=2))
        return 0
    print(f"{args.project}: training parameters (source: project > deployment {parameters.DEPLOYMENT_VARIABLE} > default ner.cfg)")
    for row in rows:
        value = "(schedule)" if isinstance(row["value"], dict) else str(row["value"])  # ner.cfg's batch size
        print(f"  {row['name']:30} {value:>12}  {row['source']:10}  {row['description']}")
    return 0


def cmd_notifications(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning import notifications

    try:
        if args.email or args.clear:  # all checked before any is saved
            found = notifications.set_project_emails(backends.store, args.project, args.email)
        else:
            backends.store.projects.get(args.project)  # an unknown project is an error, not the defaults
            found = notifications.recipients(backends.store, args.project)
    except notifications.InvalidRecipientsError as error:  # one line per bad address; nothing saved
        return _print_problems(error.problems)
    connections = notifications.shown(found)
    if args.json:  # smtp_connection null: Airflow's [email] email_conn_id
        print(json.dumps({"project": args.project} | connections, indent=2))
        return 0
    smtp, apprise = connections["smtp_connection"], connections["apprise_connection"]
    print(f"{args.project}: training notifications (source: deployment {notifications.EMAIL_VARIABLE}, project)")
    for recipient in found:
        print(f"  {recipient.email:40} {recipient.source}")
    if not found:
        print("  no e-mail recipients: nothing is e-mailed")
    print(f"e-mail through Airflow connection {smtp or '[email] email_conn_id (default smtp_default)'}; "
          f"chat through Airflow connection {apprise}, when it exists")
    return 0


def cmd_disable(backends: Backends, args: argparse.Namespace) -> int:
    backends.store.projects.update_settings(args.project, active_learning=False)
    print(f"{args.project}: active learning off")
    return 0


def cmd_projects(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.naming import safe_name
    from active_learning.status import project_statuses

    # Label Studio's counts are live; the safe name is what MLflow models, run ids and folders are named by.
    rows = [{"safe_name": safe_name(row.name)} | row.as_dict() for row in project_statuses(backends, utcnow())]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'project':30} {'AL':3} {'every':>5} {'auto':4} {'total':>7} {'new':>5} {'next':>5}  deployed model")
    for r in rows:
        print(f"{r['name'][:30]:30} {'on' if r['active_learning'] else 'off':3} {r['frequency']:>5} "
              f"{'yes' if r['auto_deploy'] else 'no':4} {_dash(r['completions']):>7} {_dash(r['since_last_training']):>5} "
              f"{_dash(r['to_next_training']):>5}  {r['deployed_model'] or '-'}")
    return 0


def cmd_validate_config(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.deploy.deployment import config_problems
    from active_learning.labeling_config import LabelingConfigError, parse_config, validate_config

    xml = Path(args.xml).read_bytes()
    try:
        parse_config(xml)  # unusable XML fails here, before any store or MLflow is opened
    except LabelingConfigError as error:
        return _print_problems([error])
    if args.project:
        backends.store.projects.get(args.project)  # unknown project: a clear error
        problems = config_problems(backends, args.project, xml)
    else:
        problems = validate_config(xml, pretrained=backends.pretrained, registered=backends.registry.model_names())
    if problems:
        return _print_problems(problems)
    print(f"{args.xml}: valid")
    return 0


def cmd_train(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.loop import train_now

    choice = DEPLOY_AUTO if args.deploy is None else DEPLOY_ALWAYS if args.deploy else DEPLOY_REGISTER_ONLY
    result = train_now(backends, args.project, choice=choice, tolerance=args.tolerance, warm_start=args.warm_start, notify=True)
    print(result["model_name"])
    print(json.dumps({k: result[k] for k in ("version", "deploy", "metrics")}), file=sys.stderr)
    return 0


def cmd_deploy(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.deploy.deployment import ConfigValidationError, deploy_model
    from active_learning.deploy.gate import compare_with_deployed

    print(f"comparison (a manual deploy is not gated): {compare_with_deployed(backends, args.project, args.model).describe()}",
          file=sys.stderr)
    try:
        result = deploy_model(backends, args.project, args.model, author="cli", reason="manual deploy")
    except ConfigValidationError as error:
        return _print_problems(error.problems)
    print(f"{result.project}: {result.model_name} (version {result.version}) deployed, config revision {result.revision}")
    return 0


def cmd_history(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.training.progress import describe

    history = backends.store.trainings.history(args.project)
    print(json.dumps([run.as_dict() for run in history], indent=2))
    for run in history:  # JSON on stdout; for people, how far a running training is
        if run.status == "running" and run.progress:
            print(f"{run.run_key}: training, {describe(run.progress)}", file=sys.stderr)
    return 0


def cmd_config(backends: Backends, args: argparse.Namespace) -> int:
    if args.revisions:
        for revision in backends.store.configs.revisions(args.project):
            print(f"{revision.revision:>4}  {revision.created_at:%Y-%m-%d %H:%M:%S}  {revision.author:30}  {revision.reason}")
        return 0
    sys.stdout.write(backends.source(args.project).read_config(args.project).xml)
    return 0


def cmd_rollback(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.deploy.deployment import ConfigValidationError, rollback

    try:
        revision = rollback(backends, args.project, to_revision=args.to, author="cli")
    except ConfigValidationError as error:
        return _print_problems(error.problems)
    print(f"{args.project}: config revision {revision} is live")
    return 0


def cmd_evaluate(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.training.evaluation import evaluate_export

    scores = evaluate_export(backends, args.model, Path(args.tasks), scored=args.gate_model)
    print(json.dumps(scores, indent=2))
    return 0


def cmd_preannotate(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.preannotation.run import preannotate

    print(json.dumps(preannotate(backends, args.project).as_dict(), indent=2))
    return 0


def cmd_next(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.preannotation.queue import QueueStrategyError, next_tasks

    try:
        entries = next_tasks(backends, args.project, n=args.n, strategy=args.strategy, seed=args.seed)
    except QueueStrategyError as error:  # a strategy this project's scores cannot give: the user's flag
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([entry.as_dict() for entry in entries], indent=2))
        return 0
    for entry in entries:
        score = "-" if entry.score is None else f"{entry.score:.4f}"
        print(f"{entry.task:20} {score:>8}  {entry.strategy:10}  {entry.model or '-'}")
    return 0


def cmd_simulate(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.preannotation.simulation import SimulationError, SimulationSettings, load_simulation, run_simulation

    import tempfile

    settings = SimulationSettings(args.strategy, args.seed_size, args.batch, args.rounds, args.seed, args.base, not args.no_spread)
    with tempfile.TemporaryDirectory(prefix="al-simulation-") as scratch:  # a registered base, downloaded
        try:
            simulation = load_simulation(Path(args.tasks), Path(args.config), Path(args.eval_tasks), settings, backends, Path(scratch))
        except SimulationError as error:  # wrong usage: nothing trained, no MLflow run
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(run_simulation(backends.registry, simulation), indent=2))
    return 0


def cmd_export_predictions(backends: Backends, args: argparse.Namespace) -> int:
    from active_learning.preannotation.export import export_predictions

    written = export_predictions(backends, args.project, Path(args.out), export_format=args.format)
    print(f"{args.out}: {written} tasks awaiting annotation, with the deployed model's pre-annotations")
    return 0


def _print_problems(problems: Sequence[Any]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="active-learning", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, function: Any, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(command=function)
        return sub

    def frequency_and_deploy(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--frequency", type=int, choices=FREQUENCIES, help="retrain every N new completions")
        sub.add_argument("--auto-deploy", action=argparse.BooleanOptionalAction, default=None,
                         help="deploy each new model into the labeling config right after training")

    command("init", cmd_init, "create the annotation store and the MLflow store")
    command("recount", cmd_recount, "recompute the poll's counters after rows were written around the store "
                                    "(a restore, a bulk SQL load)")

    sub = command("import", cmd_import, "import an Annotation Lab or Label Studio JSON export into a project")
    sub.add_argument("path")
    sub.add_argument("--project", required=True)
    sub.add_argument("--config", help="labeling config XML (needed when the project is new)")
    frequency_and_deploy(sub)
    sub.add_argument("--enable", action="store_true", help="switch active learning on")

    sub = command("connect-label-studio", cmd_connect_label_studio,
                  "take part with a Label Studio project (connection label_studio_default)")
    sub.add_argument("--ls-project", type=int, required=True, help="the project's id in Label Studio")
    sub.add_argument("--project", help="its name here (default: its title in Label Studio)")
    frequency_and_deploy(sub)
    sub.add_argument("--enable", action="store_true", help="switch active learning on")

    sub = command("disconnect-label-studio", cmd_disconnect_label_studio,
                  "stop taking part with a Label Studio project: its webhook removed, active learning off")
    sub.add_argument("--project", required=True)

    sub = command("enable", cmd_enable, "switch active learning on for a project")
    sub.add_argument("--project", required=True)
    frequency_and_deploy(sub)

    sub = command("training-params", cmd_training_params,
                  "show a project's training parameters and where each comes from; set or unset them")
    sub.add_argument("--project", required=True)
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="set a parameter for the project, e.g. training.max_steps=2000 (repeatable)")
    sub.add_argument("--unset", action="append", default=[], metavar="KEY",
                     help="back to the deployment's or the default value (repeatable)")
    sub.add_argument("--json", action="store_true")

    sub = command("notifications", cmd_notifications,
                  "show who is told when a project's training ends or fails, and where each comes from; set them")
    sub.add_argument("--project", required=True)
    recipients = sub.add_mutually_exclusive_group()
    recipients.add_argument("--email", action="extend", nargs="+", default=[], metavar="ADDRESS",
                            help="the project's own recipients, besides the deployment's (replaces its earlier ones)")
    recipients.add_argument("--clear", action="store_true", help="remove the project's own recipients")
    sub.add_argument("--json", action="store_true")

    sub = command("disable", cmd_disable, "switch active learning off for a project")
    sub.add_argument("--project", required=True)

    sub = command("projects", cmd_projects, "list projects with their counts and deployed model")
    sub.add_argument("--json", action="store_true")

    sub = command("validate-config", cmd_validate_config, "validate a labeling config and its model names")
    sub.add_argument("xml")
    sub.add_argument("--project", help="also require every model of ours to be this project's")

    sub = command("train", cmd_train, "train a project's model now and print its name")
    sub.add_argument("--project", required=True)
    sub.add_argument("--deploy", action=argparse.BooleanOptionalAction, default=None,
                     help="deploy it, skipping the gate / only register it (default: auto-deploy flag and gate)")
    sub.add_argument("--tolerance", type=float, default=0.0,
                     help="gate: deploy if new F1 >= deployed F1 - TOLERANCE (default 0)")
    sub.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None,
                     help="continue from the deployed model / train from scratch (default: ACTIVE_LEARNING_WARM_START)")

    sub = command("deploy", cmd_deploy, "deploy a registered model into a project's labeling config")
    sub.add_argument("--project", required=True)
    sub.add_argument("--model", required=True, help="<project>_ner_<YYYYMMDD_HHMMSS>")

    sub = command("history", cmd_history, "a project's training history as JSON")
    sub.add_argument("--project", required=True)

    sub = command("config", cmd_config, "print a project's live labeling config")
    sub.add_argument("--project", required=True)
    sub.add_argument("--revisions", action="store_true", help="list its revisions instead")

    sub = command("rollback", cmd_rollback, "make an earlier config revision live again")
    sub.add_argument("--project", required=True)
    sub.add_argument("--to", type=int, help="revision number (default: the one before the live one)")

    sub = command("preannotate", cmd_preannotate,
                  "pre-annotate the tasks awaiting annotation with the deployed model (only those not done yet)")
    sub.add_argument("--project", required=True)

    sub = command("next", cmd_next, "the tasks to annotate next, by the project's training parameter queue.strategy "
                  "(a diverse batch of the least sure first, by default)")
    sub.add_argument("--project", required=True)
    sub.add_argument("--n", type=int, default=50, help="how many (default 50)")
    sub.add_argument("--strategy", choices=(*STRATEGIES, UNCERTAINTY),
                     help="default: the project's queue.strategy; a scorer's name must be the one the deployed model's "
                          "pre-annotation used; uncertainty: that one, whichever it is")
    sub.add_argument("--seed", type=int, default=0, help="the random strategy's seed (default 0)")
    sub.add_argument("--json", action="store_true")

    sub = command("simulate", cmd_simulate,
                  "replay active learning on labelled tasks: F1 on --eval-tasks after each round of a strategy (JSON), "
                  "to decide whether it pays off")
    sub.epilog = ("Round 0 trains on --seed-size random tasks; each round after it pre-annotates the rest of the pool with "
                  "the newest model, reveals the --batch tasks the strategy picks (their completions play the annotator) "
                  "and trains again. Training is the live loop's, from scratch each round, stopping early on the round's dev "
                  "part, sooner than the live loop: "
                  f"spaCy overrides {SIMULATION_OVERRIDES}, then ACTIVE_LEARNING_SPACY_OVERRIDES. The curve is also "
                  f"logged to MLflow, experiment {SIMULATION_EXPERIMENT!r}. Wrong usage exits 2.")
    sub.add_argument("--tasks", required=True, help="labelled export: the pool")
    sub.add_argument("--config", required=True, help="labeling config XML (its NER labels are trained)")
    sub.add_argument("--eval-tasks", required=True, help="labelled export every round's model is scored on")
    sub.add_argument("--strategy", default=DEFAULT_STRATEGY, metavar="{" + ",".join(SIMULATION_STRATEGIES) + "}",
                     help=f"default {DEFAULT_STRATEGY}")
    sub.add_argument("--seed-size", type=int, required=True, help="tasks round 0 trains on, drawn at random")
    sub.add_argument("--batch", type=int, required=True, help="tasks each round reveals")
    sub.add_argument("--rounds", type=int, required=True, help="rounds after round 0")
    sub.add_argument("--seed", type=int, default=0, help="draws the seed tasks and the random order; spaCy's seed (default 0)")
    sub.add_argument("--no-spread", action="store_true",
                     help="a scorer's batch: its least confident distinct texts, not a k-means spread over the doubtful ones")
    sub.add_argument("--base", default="none",
                     help="where every round's training starts, as the training parameter model.base: none (default), "
                          "a spaCy pipeline package or folder, or models:/<project>_ner@deployed")

    sub = command("export-predictions", cmd_export_predictions,
                  "write the tasks awaiting annotation with their pre-annotations, for a tool to import")
    sub.add_argument("--project", required=True)
    sub.add_argument("--format", required=True, choices=FORMATS)
    sub.add_argument("--out", required=True)

    sub = command("evaluate", cmd_evaluate, "score a registered model on an export's completions (JSON)")
    sub.add_argument("--model", required=True)
    sub.add_argument("--tasks", required=True)
    sub.add_argument("--gate-model", action="store_true",
                     help="score the model the deploy gate scores for it: a refit's split-trained twin (else the model itself)")
    return parser
