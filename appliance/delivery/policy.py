"""Which calls a target gets: ``all``, or ``gaps``, the calls the primary did not record whole
(evidence that it failed during the call, or answered by shadowrec itself). ``gaps`` is the
default when the appliance stands by for a primary: the archive has everything else already."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Policy(StrEnum):
    ALL = "all"
    GAPS = "gaps"


# the same test as ``wanted``, in the catalog's SQL (calls.meta is the sidecar's JSON)
GAPS_SQL = "(calls.primary_failed = 1 OR json_extract(calls.meta, '$.answered_by') = 'shadowrec')"


def wanted(policy: Policy, sidecar: dict[str, Any]) -> bool:
    if policy is Policy.ALL:
        return True
    return bool((sidecar.get("primary") or {}).get("failed_at")) or sidecar.get("answered_by") == "shadowrec"


def sql(policy: Policy) -> str:
    return "1" if policy is Policy.ALL else GAPS_SQL
