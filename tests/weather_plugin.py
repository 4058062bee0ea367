"""A third-party dataset with a label space of its own (two made-up moods)."""

from __future__ import annotations

from erv_plugins import hookimpl
from erv_plugins.labels import LabelSpace

WEATHER = LabelSpace("weather", ("sunny", "stormy"))


class WeatherDataset:
    """Clips labelled sunny or stormy (no samples: the tests score predictions)."""

    name = "weather"
    label_space = WEATHER

    def __init__(self, options: None = None, **_: object) -> None:
        pass

    def samples(self):
        return []


@hookimpl
def erv_register_datasets(register):
    register(WeatherDataset)
