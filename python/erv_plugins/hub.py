"""Model references in a recipe: a local directory, or a Hugging Face hub id.

A hub id is ``owner/name`` with an optional revision, ``owner/name@revision``. Training and
scoring read hub models from the local Hugging Face cache only (``local_model``: never the
network); ``erv download RECIPE`` fills the cache (``download``), honouring HF_HOME,
HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE and the token from HF_TOKEN or ``hf auth login``
(huggingface_hub reads them; erv never prints a token).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    from erv_plugins.recipe import Recipe

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")

# Datasets whose licences forbid redistribution: erv download says where to ask for them.
RESTRICTED_DATASETS = {
    "mafw": ("MAFW (Liu et al., ACM MM 2022): request access at "
             "https://mafw-database.github.io/MAFW/ (signed licence agreement)",
             "<root>/clips/<id>.mp4 (or frames), <root>/labels/*.txt, as docs/data.md describes"),
    "dfew": ("DFEW (Jiang et al., ACM MM 2020): request access at "
             "https://dfew-dataset.github.io/ (signed licence agreement)",
             "<root>/Clip/clip_224x224/<id>.mp4, <root>/EmoLabel_DataSplit/, as docs/data.md "
             "describes"),
}


def split_ref(ref: str) -> tuple[str, str | None]:
    """``owner/name@rev`` -> (``owner/name``, ``rev``); no revision -> None."""
    repo, _, revision = ref.partition("@")
    return repo, revision or None


def is_hub_id(ref: str) -> bool:
    """True for ``owner/name[@rev]`` that is not an existing local path."""
    text = os.fspath(ref)
    return (not text.startswith((".", "/", "~")) and _HUB_ID.match(text) is not None
            and not Path(text).exists())


def local_model(ref: str | os.PathLike[str], *, where: str) -> Path:
    """The local directory of ``ref``: the directory itself, or a hub id's snapshot in the
    local cache (``local_files_only``: never downloads). ``where`` names the recipe field."""
    text = os.fspath(ref)
    if not is_hub_id(text):
        return Path(os.path.expanduser(text))
    from huggingface_hub import snapshot_download

    repo, revision = split_ref(text)
    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True,
                                      cache_dir=os.environ.get("HF_HUB_CACHE")))
    except Exception:  # noqa: BLE001 - any miss: the same advice
        raise ErvError(f"{where}: {text}: no such directory, and not in the local Hugging "
                       "Face cache (erv never downloads while training or scoring): run "
                       "`erv download RECIPE` first for a hub id") from None


def download(ref: str) -> Path:
    """Fetch hub id ``ref`` into the Hugging Face cache (progress bars on) and return its
    snapshot directory."""
    from huggingface_hub import snapshot_download

    repo, revision = split_ref(ref)
    return Path(snapshot_download(repo, revision=revision,
                                  cache_dir=os.environ.get("HF_HUB_CACHE")))


# Keys whose string values name a model (the policy, its towers and BERT gate, the verifier
# and its base), wherever a plugin's options put them.
# (Not a bare "model": a judge's options name its chat model so.)
_MODEL_KEYS = re.compile(r"(^|_)(path|base|tower|gate|checkpoint)$")


def model_refs(recipe: Recipe) -> Iterator[tuple[str, str]]:
    """(recipe field, reference) of every model the recipe names."""
    data = recipe.to_builtins()

    def walk(value: Any, where: str, key: str) -> Iterator[tuple[str, str]]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{where}.{k}", str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, f"{where}[{i}]", key)
        elif isinstance(value, str) and _MODEL_KEYS.search(key):
            yield where, value

    for table in ("model", "verifier", "train_verifier", "eval"):
        if table in data:
            yield from walk(data[table], f"$.{table}", table)


def restricted_datasets(recipe: Recipe) -> list[str]:
    """The licence-restricted dataset plugins the recipe reads (mafw, dfew)."""
    found: list[str] = []
    for table in ("sft", "grpo", "eval"):
        cfg = getattr(recipe, table, None)
        specs = cfg.data_specs() if cfg is not None and hasattr(cfg, "data_specs") else []
        for _, spec in specs:
            if spec.plugin in RESTRICTED_DATASETS and spec.plugin not in found:
                found.append(spec.plugin)
    return found
