"""``erv download RECIPE``: fetch every hub model the recipe names into the HF cache."""

from __future__ import annotations

import click


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False, exists=True))
def download(recipe: str) -> None:
    """Download every model RECIPE names by hub id (owner/name[@revision]) into the
    Hugging Face cache, so that `erv run` can then run with the network gone
    (HF_HUB_OFFLINE=1). Local directories are left as they are. Honours HF_HOME,
    HF_HUB_CACHE, HF_ENDPOINT and the token from HF_TOKEN or `hf auth login`.
    Licence-restricted datasets (MAFW, DFEW) are not downloaded: where to request them
    and the layout erv expects are printed.

    Example:
      erv download recipes/paper_0_5b.toml
    """
    from erv_plugins.errors import ErvError
    from erv_plugins.hub import RESTRICTED_DATASETS, download as fetch
    from erv_plugins.hub import is_hub_id, model_refs, restricted_datasets, split_ref
    from erv_plugins.plugins import get_plugins
    from erv_plugins.recipe import load_recipe

    loaded = load_recipe(recipe, get_plugins())
    seen: set[str] = set()
    for where, ref in model_refs(loaded):
        if not is_hub_id(ref):
            click.echo(f"erv: {where}: {ref} (local, not downloaded)")
            continue
        if ref in seen:
            continue
        seen.add(ref)
        click.echo(f"erv: {where}: downloading {ref}")
        try:
            path = fetch(ref)
        except Exception as exc:  # noqa: BLE001 - one line naming the model and the cause
            repo, _ = split_ref(ref)
            raise ErvError(f"{recipe}: {where}: {ref} is not a local directory, and "
                           f"downloading {repo} from the hub failed: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                           ) from None
        click.echo(f"erv: {ref} -> {path}")
    for name in restricted_datasets(loaded):
        ask, layout = RESTRICTED_DATASETS[name]
        click.echo(f"erv: dataset {name} is not downloaded (its licence forbids "
                   f"redistribution). {ask}. Expected layout: {layout}")
