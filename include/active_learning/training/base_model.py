"""Where a training starts: the training parameter ``model.base``.

Its values:

* ``none``: from scratch, ``include/configs/ner.cfg``'s tok2vec and NER with random weights;
* an installed spaCy pipeline package (``en_core_web_sm``) or the path of a pipeline folder;
* ``models:/<project>_ner@<alias>`` or ``models:/<project>_ner/<version>``: a model this loop trained for
  a project, checked as every model the loop loads (:mod:`active_learning.provenance`): transfer learning
  from one project to the next;
* ``transformer:<name or folder>``: a Hugging Face transformer, a local folder holding one or a name in
  the worker's Hugging Face cache (nothing is downloaded at run time), through spacy-transformers, an
  optional extra (``requirements-transformers.txt``).

How a base is used: its ``ner`` component, with the encoder it reads (its own, as in Explosion's
``en_core_web_*`` pipelines, or the ``tok2vec`` it listens to, as in this loop's models), becomes the
*starting pipeline*; the labels the base knew that the project's data does not use are dropped (their
transitions and their rows of the output layer removed), the labels both share keep what the base
learnt, and the project's other labels are added as training meets them (spaCy's parser grows its output
layer). spaCy then resumes training that pipeline (its ``source`` mechanism). A transformer has no NER to
start from: it is the encoder, fine-tuned under a new NER head that listens to it, as spaCy's own
transformer recipe builds it (:func:`transformer_config`). Either way the model stays a transition-based
NER: pre-annotation's beam scores, the gate, the refit and the warm start work as from scratch. The
trained model holds every weight it needs: it loads where the base is not installed.

Nothing here imports spaCy or MLflow at module level: the training parameters read :func:`problem`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from spacy.language import Language
    from spacy.pipeline import EntityRecognizer

    from active_learning.backends import Backends
    from active_learning.registry import ModelVersionInfo

NONE = "none"
REGISTERED = "models:/"
TRANSFORMER = "transformer:"
LANGUAGE = "en"  # the language the loop tokenises completions in (training/dataset.py: spacy.blank("en"))
_PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REGISTERED = re.compile(r"models:/(?P<name>[A-Za-z0-9_.-]+_ner)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[1-9][0-9]*))")
_MAX_LENGTH = 1000
_ENCODERS = ("tok2vec", "transformer", "curated_transformer")  # factories a NER's listener may read from


class BaseModelError(ValueError):
    """A base that cannot be trained from, in one line that says what to do; no training fell back to scratch."""


@dataclass(frozen=True)
class BaseModel:
    """A located base: what the user named, and the pipeline folder found for it."""

    spec: str  # the parameter's value
    name: str  # the package, the folder's pipeline or the registered model version
    version: str
    sha256: str  # of every file of the pipeline folder, paths included
    folder: Path

    @property
    def is_transformer(self) -> bool:
        return self.spec.startswith(TRANSFORMER)

    def params(self) -> dict[str, str]:
        """MLflow params of the run that trained from it."""
        return {"base_model": self.spec, "base_model.name": self.name, "base_model.version": self.version,
                "base_model.sha256": self.sha256}

    def describe(self) -> str:
        """One line, for the registered version's tag, the history and the page."""
        return f"{self.name} {self.version} (sha256 {self.sha256[:12]})"


def problem(value: str) -> str | None:
    """What is wrong with ``value``'s form, in one line; None when it names a base of a known kind."""
    if not value.strip() or len(value) > _MAX_LENGTH or "\x00" in value:
        return ("model.base must be 'none', a spaCy pipeline package, a pipeline folder, models:/<project>_ner@deployed "
                f"or transformer:<name or folder>, not {value[:80]!r}")
    if value.startswith(REGISTERED) and not _REGISTERED.fullmatch(value):
        return (f"model.base {value!r} is not a model of this loop: use models:/<project>_ner@<alias> "
                "or models:/<project>_ner/<version>")
    if value.startswith(TRANSFORMER) and not value.removeprefix(TRANSFORMER).strip():
        return "model.base 'transformer:' names no transformer: use transformer:<Hugging Face name or folder>"
    return None


def uses_base(spec: str | None) -> bool:
    return spec is not None and spec != NONE


def locate(spec: str, destination: Path | None = None, backends: Backends | None = None) -> BaseModel:
    """The base ``spec`` names, its pipeline checked; a registered model is downloaded under ``destination``
    (it needs ``backends``). BaseModelError, naming the problem and what to do, when it cannot be used."""
    name, version, folder = _found(spec, destination, backends)
    return BaseModel(spec, name, version, files_sha256(folder), folder)


def _found(spec: str, destination: Path | None = None, backends: Backends | None = None) -> tuple[str, str, Path]:
    """:func:`locate`'s checks: the base's name, version and folder, its files not yet hashed."""
    if (found := problem(spec)) is not None:
        raise BaseModelError(found)
    if spec.startswith(TRANSFORMER):
        return _transformer(spec)
    if spec.startswith(REGISTERED):
        if backends is None or destination is None:
            raise BaseModelError(f"model.base {spec!r}: a registered model needs the loop's store and MLflow to be read from")
        name, version, folder = _registered(spec, destination, backends)
    elif _PACKAGE.fullmatch(spec) and not Path(spec).exists():
        name, version, folder = _package(spec)
    else:
        folder = Path(spec).expanduser()
        name, version = folder.name, ""
    meta = _check_pipeline(folder, spec)
    return name, version or str(meta.get("version", "")), folder


def check(spec: str, backends: Backends) -> str | None:
    """When the parameter is set, and before a training reads its data: the one-line problem of a base that
    cannot be used, else None. A registered model is looked up, not downloaded. A transformer is checked in
    full only where the transformer extra is installed: the page's server and the workers that prepare data
    may lack it where only GPU workers have it (docs/scale-out.md); the train task checks it on its worker."""
    if not uses_base(spec):
        return None
    if (found := problem(spec)) is not None:
        return found
    if spec.startswith(TRANSFORMER) and importlib.util.find_spec("spacy_transformers") is None:
        return None
    try:
        if spec.startswith(REGISTERED):
            _registered_version(spec, backends)
        else:
            _found(spec)  # its files are hashed when a training uses it
    except BaseModelError as error:
        return str(error)
    return None


def training_config(base: BaseModel, labels: set[str], config_path: Path, folder: Path) -> Path:
    """The training config (written under ``folder``) that starts from ``base``: ``config_path``'s training
    settings, with the base's NER and encoder sourced (:func:`starting_pipeline`), or a transformer's
    encoder under a new NER head (:func:`transformer_config`)."""
    from active_learning.training.spacy_ner import sourced_config

    folder.mkdir(parents=True, exist_ok=True)
    if base.is_transformer:
        return transformer_config(config_path, base.folder, folder)
    return sourced_config(config_path, starting_pipeline(base, labels, folder / "start"), folder)


def transformer_config(config_path: Path, transformer: Path, folder: Path) -> Path:
    """``config_path`` (the loop's training settings) with spaCy's own transformer NER recipe, as ``spacy init
    config -p ner -G -o accuracy`` writes it: a ``transformer`` component reading the Hugging Face model in
    ``transformer``, the NER listening to it, the recipe's warm-up learning rate, padded batches and gradient
    accumulation. On a worker with a GPU it trains there (``gpu_allocator`` PyTorch's)."""
    from spacy import util
    from spacy.cli.init_config import init_config

    recipe = init_config(lang=LANGUAGE, pipeline=["ner"], optimize="accuracy", gpu=True, silent=True)
    config = util.load_config(config_path, interpolate=False)
    encoder = dict(recipe["components"]["transformer"])
    encoder["model"] = dict(encoder["model"]) | {"name": str(transformer)}
    ner = dict(config["components"]["ner"])
    ner["model"] = dict(ner["model"]) | {"tok2vec": dict(recipe["components"]["ner"]["model"]["tok2vec"])}
    config["nlp"]["pipeline"] = ["transformer", "ner"]
    config["components"] = {"transformer": encoder, "ner": ner}
    for key in ("optimizer", "batcher", "accumulate_gradient"):
        config["training"][key] = recipe["training"][key]
    config["system"]["gpu_allocator"] = "pytorch"
    path = folder / "transformer.cfg"
    config.to_disk(path)
    return path


def starting_pipeline(base: BaseModel, labels: set[str], destination: Path) -> Path:
    """The pipeline a training with ``base`` resumes from, written to ``destination``: the base's NER and the
    encoder it reads, knowing ``labels`` (the project's data) and no other: the base's labels that are in
    ``labels`` keep their weights, the others are added (:func:`~active_learning.training.spacy_ner.add_labels`)."""
    import spacy

    from active_learning.training.spacy_ner import add_labels

    nlp = spacy.load(base.folder)
    ner_name = _ner_component(nlp.config, str(base.folder))
    keep = {ner_name} | _listened_encoders(nlp, ner_name)
    for name in [n for n in nlp.component_names if n not in keep]:
        nlp.remove_pipe(name)
    ner = nlp.get_pipe(ner_name)
    keep_only_labels(ner, labels)
    add_labels(ner, labels)
    if ner_name != "ner":
        nlp.rename_pipe(ner_name, "ner")  # scoring and pre-annotation read the "ner" pipe
    nlp.to_disk(destination)
    return destination


def keep_only_labels(ner: EntityRecognizer, labels: set[str]) -> None:
    """Drop every label of a trained transition-based NER that is not in ``labels``: its transitions, and
    their scores in the output layer. The transitions left keep their weights."""
    import numpy

    moves = ner.moves
    before = {name: row for row, name in enumerate(_transitions(moves))}
    moves.initialize_actions({action: {label: freq for label, freq in freqs.items() if label == "" or label in labels}
                              for action, freqs in moves.labels.items()})
    rows = numpy.asarray([before[name] for name in _transitions(moves)])
    model = ner.model
    unseen = model.attrs["unseen_classes"]
    model.attrs["unseen_classes"] = {new for new, old in enumerate(rows) if old in unseen}
    if model.attrs["has_upper"]:  # the output layer's weights: W (out, in), b (out)
        _keep_rows(model, "upper", rows, {"W": 0, "b": 0})
    else:  # the hidden layer scores the transitions itself: W (features, out, pieces, in), b (out, pieces), pad
        _keep_rows(model, "lower", rows, {"W": 1, "b": 0, "pad": 2})


def files_sha256(folder: Path) -> str:
    """SHA-256 of a folder's files, each named by its relative path: the same files, the same digest."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _transitions(moves: Any) -> list[str]:
    # move_names leaves out some transitions (spaCy's "U-" for a token kept out of every entity): not the rows.
    return [moves.get_class_name(i) for i in range(moves.n_moves)]


def _keep_rows(model: Any, ref: str, rows: Any, axes: dict[str, int]) -> None:
    """Replace layer ``ref`` of a parser model by one holding only output ``rows`` (the transitions kept);
    ``axes``: each weight's output axis."""
    layer = model.get_ref(ref)
    smaller = _layer_like(layer, len(rows))  # a layer's dims cannot change once it has weights
    for name, axis in axes.items():
        smaller.set_param(name, layer.get_param(name).take(rows, axis=axis).copy())
    model.replace_node(layer, smaller)


def _layer_like(layer: Any, n_out: int) -> Any:
    from thinc.api import Linear, zero_init

    if layer.name == "linear":
        return Linear(nO=n_out, nI=layer.get_dim("nI"), init_W=zero_init)
    from spacy.ml._precomputable_affine import PrecomputableAffine

    return PrecomputableAffine(nO=n_out, nI=layer.get_dim("nI"), nF=layer.get_dim("nF"), nP=layer.get_dim("nP"))


def _package(name: str) -> tuple[str, str, Path]:
    """An installed pipeline package's name, version and data folder (found, not imported)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise BaseModelError(f"model.base {name!r}: no such package is installed on this worker; install the pipeline "
                             f"package in every worker's environment (pip install ...), or give the path of a pipeline folder")
    if not spec.submodule_search_locations:
        raise BaseModelError(f"model.base {name!r} is a Python module, not a spaCy pipeline package; name a pipeline "
                             "package (en_core_web_sm) or folder")
    package = Path(next(iter(spec.submodule_search_locations)))
    # spaCy's package loader reads <lang>_<name>-<version>/ (from the package's meta.json), which is <package>-<version>/.
    folders = sorted(path.parent for path in package.glob("*/config.cfg"))
    if not folders:
        raise BaseModelError(f"model.base {name!r}: the package holds no spaCy pipeline (no <name>-<version>/config.cfg); "
                             "name a spaCy pipeline package or folder")
    folder = next((f for f in folders if f.name.startswith(f"{name}-")), folders[0])
    return name, "", folder


def _transformer(spec: str) -> tuple[str, str, Path]:
    """A Hugging Face model's name, revision and folder: a local folder, or a name already in the worker's
    Hugging Face cache (the loop downloads nothing at run time)."""
    name = spec.removeprefix(TRANSFORMER).strip()
    if importlib.util.find_spec("spacy_transformers") is None:
        raise BaseModelError(f"model.base {spec!r}: transformer bases need the optional packages of "
                             "requirements-transformers.txt (spacy-transformers, PyTorch) on this worker: install them there")
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise BaseModelError(f"model.base {spec!r}: {folder} holds no Hugging Face model (no config.json); give a "
                                 "folder saved by save_pretrained, with its tokenizer")
        return folder.name, "folder", folder.resolve()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        cached = Path(snapshot_download(name, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        raise BaseModelError(f"model.base {spec!r}: {name!r} is neither a folder nor in this worker's Hugging Face cache, "
                             "and nothing is downloaded at run time: download it once where there is a network "
                             f"(huggingface-cli download {name}) into the workers' HF_HOME, or give a local folder") from None
    return name, cached.name, cached  # the snapshot's folder is named after its revision


def _registered_version(spec: str, backends: Backends) -> ModelVersionInfo:
    """The registered version a models:/ URI names, if a training of this loop registered it."""
    from active_learning.naming import registered_model_name
    from active_learning.provenance import ForeignModelError, our_version

    match = _REGISTERED.fullmatch(spec)
    assert match is not None  # problem() said so
    projects = [p for p in backends.store.projects.names() if registered_model_name(p) == match["name"]]
    if not projects:
        raise BaseModelError(f"model.base {spec!r}: no project of this loop owns registered model {match['name']!r}; "
                             "name a model this loop trained (active-learning history --project P)")
    project = projects[0]
    if match["version"]:
        version = int(match["version"])
    elif (info := backends.registry.version_by_alias(match["name"], match["alias"])) is not None:
        version = info.version
    else:
        raise BaseModelError(f"model.base {spec!r}: registered model {match['name']!r} has no alias {match['alias']!r}; "
                             "deploy a model of that project first, or name a version")
    try:
        return our_version(backends.store, backends.registry, project, version)
    except ForeignModelError as error:
        raise BaseModelError(f"model.base {spec!r}: {error}") from None


def _registered(spec: str, destination: Path, backends: Backends) -> tuple[str, str, Path]:
    info = _registered_version(spec, backends)
    return info.model_name, str(info.version), backends.registry.download_model(info, destination / "registered-base")


def _check_pipeline(folder: Path, spec: str) -> dict[str, Any]:
    """The pipeline's meta, once its folder, language, spaCy version and NER are right."""
    import spacy
    from spacy.util import is_compatible_version

    if not (folder / "config.cfg").is_file() or not (folder / "meta.json").is_file():
        raise BaseModelError(f"model.base {spec!r}: {folder} is not a spaCy pipeline folder (no config.cfg and meta.json); "
                             "give a folder saved by nlp.to_disk or spacy train, or an installed pipeline package")
    meta = _read_json(folder / "meta.json", spec)
    if meta.get("lang") != LANGUAGE:
        raise BaseModelError(f"model.base {spec!r} is a pipeline for language {meta.get('lang')!r}; this loop trains "
                             f"{LANGUAGE!r} models: choose an English pipeline")
    wanted = meta.get("spacy_version")
    if wanted and is_compatible_version(spacy.about.__version__, wanted) is False:
        raise BaseModelError(f"model.base {spec!r} was built for spaCy {wanted}, this worker has {spacy.about.__version__}: "
                             "use a version of the pipeline built for it")
    _ner_component(spacy.util.load_config(folder / "config.cfg", interpolate=False), spec)
    return meta


def _ner_component(config: Any, spec: str) -> str:
    """The name of the pipeline's transition-based NER (factory "ner")."""
    components = config.get("components", {})
    found = [name for name in config["nlp"]["pipeline"] if components.get(name, {}).get("factory") == "ner"]
    if not found:
        raise BaseModelError(f"model.base {spec!r} has no trained NER component (factory 'ner') to start from; its "
                             f"pipeline is {list(config['nlp']['pipeline'])}: choose a pipeline with 'ner'")
    return found[0]


def _listened_encoders(nlp: Language, ner_name: str) -> set[str]:
    """The encoder components the NER listens to (none when it has its own)."""
    tok2vec = nlp.config["components"][ner_name].get("model", {}).get("tok2vec", {})
    if "Listener" not in str(tok2vec.get("@architectures", "")):
        return set()
    upstream = tok2vec.get("upstream", "*")
    factories = {name: nlp.get_pipe_meta(name).factory for name in nlp.component_names}
    return {name for name, factory in factories.items() if factory in _ENCODERS and upstream in ("*", name)}


def _read_json(path: Path, spec: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BaseModelError(f"model.base {spec!r}: cannot read {path.name} ({error})") from None
    if not isinstance(data, dict):
        raise BaseModelError(f"model.base {spec!r}: {path.name} is not a JSON object")
    return data

