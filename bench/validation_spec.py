"""The validation benchmark's checks, as plain data every side reads (stdlib only).

The spec's 12 checks are 14 rules: check 1 (order_id not null + unique) and check 8
(created_at not null + in range) are two rules each, so every tool reports one count per rule.

====  ==========================  ========================================================
 #    rule id                     rule (value rules pass nulls; only ``*.not_null`` fail them)
====  ==========================  ========================================================
 1    ``order_id.not_null``       order_id is not null
 1    ``order_id.unique``         no other row has the same order_id (every occurrence of a
                                  duplicated value fails; nulls are not duplicates)
 2    ``customer_id.not_null``    customer_id is not null
 3    ``amount.between``          0 <= amount <= 10,000
 4    ``quantity.between``        1 <= quantity <= 100
 5    ``status.isin``             status in {new, paid, shipped, delivered, cancelled, refunded}
 6    ``country.matches``         country matches ``^[A-Z]{2}$``
 7    ``email.matches``           email matches ``^[^@\\s]+@[^@\\s]+\\.[A-Za-z]{2,}$``
 8    ``created_at.not_null``     created_at is not null
 8    ``created_at.between``      2020-01-01T00:00:00Z <= created_at <= 2026-12-31T23:59:59.999999Z
 9    ``discount.between``        0 <= discount <= 1 (discount is nullable: nulls pass)
 10   ``sku.length``              sku has exactly 10 characters
 11   ``score.between``           0 <= score <= 1
 12   ``amount_covers_quantity``  amount >= quantity * 0.01 (a cross-column row expression)
====  ==========================  ========================================================

Every bound is inclusive. Columns without a ``not_null`` rule are declared nullable in every
tool (Pandera's ``Column`` defaults to ``nullable=False``, so its schema says so explicitly).
"""

from __future__ import annotations

import json
import resource
import sys
from datetime import UTC, datetime
from typing import Any

RULES: tuple[str, ...] = (
    "order_id.not_null",
    "order_id.unique",
    "customer_id.not_null",
    "amount.between",
    "quantity.between",
    "status.isin",
    "country.matches",
    "email.matches",
    "created_at.not_null",
    "created_at.between",
    "discount.between",
    "sku.length",
    "score.between",
    "amount_covers_quantity",
)
CHECK_OF_RULE = {rule: i for i, rules in enumerate((
    ("order_id.not_null", "order_id.unique"), ("customer_id.not_null",), ("amount.between",),
    ("quantity.between",), ("status.isin",), ("country.matches",), ("email.matches",),
    ("created_at.not_null", "created_at.between"), ("discount.between",), ("sku.length",),
    ("score.between",), ("amount_covers_quantity",),
), start=1) for rule in rules}  # fmt: skip

AMOUNT_MIN, AMOUNT_MAX = 0.0, 10_000.0
QUANTITY_MIN, QUANTITY_MAX = 1, 100
STATUSES = ("new", "paid", "shipped", "delivered", "cancelled", "refunded")
COUNTRY_PATTERN = r"^[A-Z]{2}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
CREATED_MIN = datetime(2020, 1, 1, tzinfo=UTC)
CREATED_MAX = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
DISCOUNT_MIN, DISCOUNT_MAX = 0.0, 1.0
SKU_LENGTH = 10
SCORE_MIN, SCORE_MAX = 0.0, 1.0
COVER_FACTOR = 0.01  # amount >= quantity * COVER_FACTOR

COLUMNS = (
    "order_id", "customer_id", "amount", "quantity", "status", "country", "email",
    "created_at", "discount", "sku", "is_gift", "score",
)  # fmt: skip


def peak_rss_kib() -> int:
    """Peak RSS of this process in KiB: ``VmHWM`` (not ``ru_maxrss``, which a child inherits)."""
    return _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_kib() -> int:
    """Current RSS of this process in KiB (``VmRSS``)."""
    return _status_kib("VmRSS")


def _status_kib(key: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def emit(record: dict[str, Any]) -> None:
    """Print the side's result as one JSON line, the last line of stdout."""
    unknown = sorted(set(record.get("failed_rows", {})) - set(RULES))
    if unknown:
        record.setdefault("notes", []).append(f"unmapped rule ids: {unknown}")
    sys.stdout.flush()
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
