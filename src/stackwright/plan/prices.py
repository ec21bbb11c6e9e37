"""The dated AWS price table (``prices/aws.yaml``): unit prices per region and purchase-option factors.

Prices are looked up as ``"<group>.<name>"`` (``"ec2.m6i.2xlarge"``). A price that is not in the table
raises :class:`PriceError` naming the item and the file; nothing is ever priced at zero silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .errors import PlanError, PriceError

DEFAULT_TABLE = Path(__file__).with_name("prices") / "aws.yaml"


@dataclass(frozen=True)
class Price:
    """One unit price (in the table's base region) with its unit, category, source and date."""

    key: str
    unit: str
    category: str
    source: str
    as_of: str
    usd: float | None = None
    tiers: tuple[tuple[float | None, float], ...] = ()


@dataclass(frozen=True)
class PriceTable:
    """All prices, regional multipliers/overrides and purchase-option factors from one YAML file."""

    path: Path
    as_of: str
    basis: str
    source: str
    hours_per_month: float
    prices: dict[str, Price]
    regions: dict[str, dict[str, Any]]
    purchase_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The region the group prices are listed for; the others are derived from it (``regions``).
    base_region: str = "us-east-1"

    def basis_for(self, regions: list[str]) -> str:
        """The prices' basis for the regions a plan prices, saying how each region's were obtained: the list
        prices of the base region as they stand, another region's as the base price x the table's multiplier
        for the item's category, or the table's exact figure where it has one."""
        parts = []
        for region in regions:
            if region == self.base_region:
                parts.append(f"{region} (as listed)")
                continue
            exact = len(self._region(region).get("overrides") or {})
            parts.append(f"{region} ({self.base_region} prices x the table's {region} multiplier per category"
                         + (f"; {exact} item{'s' * (exact > 1)} at {region}'s own price" if exact else "") + ")")
        return f"{self.basis}, for the spec's region{'s' * (len(regions) > 1)} " + ", ".join(parts)

    def price(self, key: str) -> Price:
        """The :class:`Price` for ``key``, or a PriceError naming it."""
        try:
            return self.prices[key]
        except KeyError:
            raise PriceError(f"no price for '{key}' in {self.path.name} "
                             f"(add it under groups.{key.split('.', 1)[0]} with its source)") from None

    def _region(self, region: str) -> dict[str, Any]:
        try:
            return self.regions[region]
        except KeyError:
            raise PriceError(f"no prices for region '{region}' in {self.path.name} "
                             "(add it under regions: with multipliers by category)") from None

    def factor(self, key: str, region: str) -> float:
        """Regional multiplier that applies to ``key`` (1.0 for flat-priced items)."""
        price = self.price(key)
        info = self._region(region)
        if price.category == "flat":
            return 1.0
        return float(info.get("multipliers", {}).get(price.category, 1.0))

    def unit_price(self, key: str, region: str) -> float:
        """The unit price of ``key`` in ``region`` (an exact override, else base x regional multiplier)."""
        price = self.price(key)
        if price.usd is None:
            raise PriceError(f"'{key}' in {self.path.name} is a tiered price; use charge()")
        override = self._region(region).get("overrides", {}).get(key)
        if override is not None:
            return float(override)
        return price.usd * self.factor(key, region)

    def charge(self, key: str, quantity: float, region: str) -> float:
        """Monthly charge for ``quantity`` units of ``key`` in ``region``, walking tiers when it has them."""
        price = self.price(key)
        if not price.tiers:
            return quantity * self.unit_price(key, region)
        factor = self.factor(key, region)
        total, lower, left = 0.0, 0.0, quantity
        for upper, usd in price.tiers:
            band = left if upper is None else min(left, upper - lower)
            if band <= 0:
                break
            total += band * usd * factor
            left -= band
            lower = upper if upper is not None else lower
        return total

    def effective_unit_price(self, key: str, quantity: float, region: str) -> float:
        """Average price per unit (equals the unit price for untiered items)."""
        if not self.price(key).tiers:
            return self.unit_price(key, region)
        return self.charge(key, quantity, region) / quantity if quantity else self.charge(key, 1.0, region)

    def option_factor(self, option: str, discount_class: str | None) -> float:
        """Factor a purchase option applies to a line of ``discount_class`` (1.0 when it does not apply)."""
        if discount_class is None:
            return 1.0
        opt = self.purchase_options.get(option)
        if opt is None:
            raise PriceError(f"no purchase option '{option}' in {self.path.name}")
        return float(opt.get("factors", {}).get(discount_class, 1.0))


def _tiers(raw: Any, key: str, path: Path) -> tuple[tuple[float | None, float], ...]:
    out: list[tuple[float | None, float]] = []
    for band in raw:
        if not (isinstance(band, list) and len(band) == 2):
            raise PlanError(f"{path.name}: tier of '{key}' must be [upper_bound_or_null, price]")
        out.append((None if band[0] is None else float(band[0]), float(band[1])))
    return tuple(out)


@cache
def load_prices(path: Path = DEFAULT_TABLE) -> PriceTable:
    """Read and check a price table file."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"cannot read price table {path}: {exc}") from None
    meta = data.get("meta", {})
    as_of = str(meta.get("as_of", ""))
    if not as_of:
        raise PlanError(f"{path.name}: meta.as_of (the date of the prices) is required")
    prices: dict[str, Price] = {}
    for group, spec in (data.get("groups") or {}).items():
        for required in ("unit", "category", "source"):
            if required not in spec:
                raise PlanError(f"{path.name}: groups.{group} needs '{required}'")
        common = {"unit": spec["unit"], "category": spec["category"], "source": spec["source"],
                  "as_of": str(spec.get("as_of", as_of))}
        for name, usd in (spec.get("prices") or {}).items():
            key = f"{group}.{name}"
            prices[key] = Price(key=key, usd=float(usd), **common)
        for name, bands in (spec.get("tiers") or {}).items():
            key = f"{group}.{name}"
            prices[key] = Price(key=key, tiers=_tiers(bands, key, path), **common)
    regions = {name: (info or {}) for name, info in (data.get("regions") or {}).items()}
    return PriceTable(path=path, as_of=as_of, basis=str(meta.get("basis", "")), source=str(meta.get("source", "")),
                      hours_per_month=float(meta.get("hours_per_month", 730)), prices=prices, regions=regions,
                      purchase_options=data.get("purchase_options") or {},
                      base_region=str(meta.get("base_region", "us-east-1")))
