"""A third-party stage, registered the way a plugin package would: ``greet`` has its own
recipe table ``[greet]`` (the struct it registers as options) and runs in every process
``[launch] num_processes`` asks for (a ``LaunchedStage``)."""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec

from erv_plugins import hookimpl
from erv_plugins.training.launching import LaunchedStage


class GreetTable(msgspec.Struct, forbid_unknown_fields=True):
    greeting: str
    times: int = 1


class GreetStage(LaunchedStage):
    """Write the table's greeting once per process (rank) into the stage directory."""

    name = "greet"

    def __init__(self, table: GreetTable) -> None:
        self.table = table

    def run(self, ctx: Any) -> dict[str, Any]:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        # The table as this process decoded it from the recipe file.
        table = ctx.recipe.table(self.name)
        record = {"rank": rank, "world_size": world, "greeting": self.table.greeting,
                  "times": table.times}
        (ctx.out / f"rank{rank}.json").write_text(json.dumps(record) + "\n")
        return {"world_size": world}


@hookimpl
def erv_register_stages(register):
    register(GreetStage, options=GreetTable)
