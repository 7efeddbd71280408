"""The residency policy, ``VAULT/residency.toml``: where each customer's data must live.

    [regions.ch-zurich]
    description = "Zurich, Switzerland (supervised)"

    [regions.ru-moscow]
    description = "Moscow, Russia"

    [countries]                  # ISO 3166-1 alpha-2 codes, or a group name
    EU = "ch-zurich"             # built-in groups: EU, EEA
    US = "ch-zurich"
    RU = "ru-moscow"

    [categories.sample]
    description = "suspicious files sent for analysis"
    retention_days = 365

A country listed by itself wins over a group that contains it; a country
listed nowhere has no region, and its data is refused, never stored "somewhere".
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overt.errors import MalformedError

# EU member states, and the EEA (the EU plus Iceland, Liechtenstein and Norway).
EU = [
    "AT",
    "BE",
    "BG",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "HU",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
]
GROUPS: dict[str, tuple[str, ...]] = {"EU": tuple(EU), "EEA": (*EU, "IS", "LI", "NO")}

_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_CATEGORY = re.compile(r"[a-z][a-z0-9_-]{0,62}")


@dataclass(frozen=True)
class Region:
    name: str
    description: str


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    retention_days: int


class ResidencyError(MalformedError):
    """Data that cannot be placed: unknown country, category or region."""


@dataclass(frozen=True)
class ResidencyPolicy:
    regions: dict[str, Region]
    countries: dict[str, str]  # country code -> region, groups expanded
    categories: dict[str, Category]
    source: dict[str, str]  # country code -> what the file said ("DE" or "EU")

    @classmethod
    def parse(cls, text: str, where: str = "residency.toml") -> ResidencyPolicy:
        try:
            raw: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MalformedError(f"{where}: {exc}") from exc
        unknown = set(raw) - {"regions", "countries", "categories"}
        if unknown:
            raise MalformedError(f"{where}: unknown table(s) {', '.join(sorted(unknown))}")
        regions: dict[str, Region] = {}
        for name, body in _table(raw, "regions", where).items():
            if not _REGION.fullmatch(name):
                raise MalformedError(
                    f"{where}: region name {name!r}: lowercase letters, digits, '-'"
                )
            regions[name] = Region(
                name, str(_table_of(body, f"regions.{name}", where).get("description", ""))
            )
        if not regions:
            raise MalformedError(f"{where}: define at least one region under [regions.<name>]")
        countries: dict[str, str] = {}
        source: dict[str, str] = {}
        entries = _table(raw, "countries", where)
        # Larger groups first, then smaller ones, then single countries: the
        # most specific entry wins, whatever the order of the file.
        for key in sorted(entries, key=lambda k: -len(GROUPS[k]) if k in GROUPS else 0):
            region = entries[key]
            if not isinstance(region, str) or region not in regions:
                raise MalformedError(f"{where}: countries.{key} names unknown region {region!r}")
            if key in GROUPS:
                for code in GROUPS[key]:
                    countries[code], source[code] = region, key
            elif _COUNTRY.fullmatch(key):
                countries[key], source[key] = region, key
            else:
                raise MalformedError(
                    f"{where}: countries.{key}: not an ISO 3166-1 alpha-2 code or a group "
                    f"({', '.join(GROUPS)})"
                )
        categories: dict[str, Category] = {}
        for name, body in _table(raw, "categories", where).items():
            if not _CATEGORY.fullmatch(name):
                raise MalformedError(
                    f"{where}: category name {name!r}: lowercase letters, digits, '_-'"
                )
            table = _table_of(body, f"categories.{name}", where)
            days = table.get("retention_days", 365)
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
                raise MalformedError(f"{where}: categories.{name}.retention_days: 1 to 36500")
            categories[name] = Category(name, str(table.get("description", "")), days)
        if not categories:
            raise MalformedError(f"{where}: define at least one data category")
        return cls(regions, countries, categories, source)

    @classmethod
    def load(cls, path: Path) -> ResidencyPolicy:
        try:
            return cls.parse(path.read_text(encoding="utf-8"), str(path))
        except FileNotFoundError as exc:
            raise MalformedError(f"{path}: no residency policy") from exc

    def region_for(self, country: str) -> str:
        code = country.strip().upper()
        if not _COUNTRY.fullmatch(code):
            raise ResidencyError(f"country {country!r} is not an ISO 3166-1 alpha-2 code")
        region = self.countries.get(code)
        if region is None:
            raise ResidencyError(
                f"no region holds data of customers in {code}; refusing to store it"
            )
        return region

    def category(self, name: str) -> Category:
        category = self.categories.get(name)
        if category is None:
            raise ResidencyError(
                f"unknown data category {name!r} (known: {', '.join(sorted(self.categories))})"
            )
        return category

    def explain(self) -> list[str]:
        lines = []
        for region in self.regions.values():
            listed = sorted(c for c, r in self.countries.items() if r == region.name)
            via = sorted(
                g
                for g, members in GROUPS.items()
                if all(self.countries.get(c) == region.name for c in members)
            )
            groups = f" (including all of {', '.join(via)})" if via else ""
            desc = f" - {region.description}" if region.description else ""
            lines.append(
                f"Region {region.name}{desc}: holds the data of customers in "
                f"{len(listed)} countries{groups}: {', '.join(listed) or 'none'}."
            )
        lines.append(
            "Customers in any other country are refused: their data is never stored anywhere."
        )
        for cat in self.categories.values():
            desc = f" ({cat.description})" if cat.description else ""
            lines.append(f"Category {cat.name}{desc}: kept for {cat.retention_days} days.")
        return lines


def _table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise MalformedError(f"{where}: [{key}] must be a table")
    return value


def _table_of(value: Any, key: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"{where}: [{key}] must be a table")
    return value
