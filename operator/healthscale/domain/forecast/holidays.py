"""Public holidays as local dates, for the countries and subdivisions a ClinicalSLO names.

The ``holidays`` package knows the rules (fixed dates, Easter, "fourth Thursday", observed days);
this module only turns its answer into local day numbers (days since 1970-01-01 on the series'
wall clock) that the models compare with. It is pure: no network, no files. Answers are cached
per country, subdivision and year, so a refit costs a dictionary look-up, and predicting never
calls the package at all (each fit carries the days it needs).

How a holiday is treated (``forecast.holidayEffect``):

- ``Learned``: a holiday is its own day type. It starts out as a Sunday and gets a level of its
  own from the holidays seen in the history, shrunk towards the Sunday while few have been seen
  (with none seen it stays a Sunday).
- ``Sunday``: a holiday is a Sunday, nothing more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import holidays as holiday_rules

LEARNED = "Learned"
SUNDAY = "Sunday"
EFFECTS = (LEARNED, SUNDAY)
"""The values of ``forecast.holidayEffect`` (the CRD's enum must list the same)."""

_EPOCH = dt.date(1970, 1, 1)


@dataclasses.dataclass(frozen=True)
class Region:
    """A country (ISO 3166-1 alpha-2, e.g. US) and optionally one of its subdivisions (e.g. IA)."""

    country: str
    subdivision: str | None = None


@functools.lru_cache(maxsize=1024)
def _year(region: Region, year: int) -> tuple[int, ...]:
    dates = holiday_rules.country_holidays(region.country, subdiv=region.subdivision, years=year)
    return tuple(sorted((day - _EPOCH).days for day in dates))


def days(regions: tuple[Region, ...], first_year: int, last_year: int) -> tuple[int, ...]:
    """Local day numbers of every holiday of any of ``regions`` from ``first_year`` to ``last_year``."""
    found = {day for region in regions for year in range(first_year, last_year + 1) for day in _year(region, year)}
    return tuple(sorted(found))


def date(day: int) -> dt.date:
    """The calendar date of a local day number."""
    return _EPOCH + dt.timedelta(days=day)
