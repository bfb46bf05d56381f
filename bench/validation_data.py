"""Deterministic orders data for the validation benchmark, with known bad rows.

    .venv/bin/python bench/validation_data.py --rows 10000000
    # -> bench/data/validation_10000000.parquet + validation_10000000.json

Twelve columns (``validation_spec.COLUMNS``): order_id Int64, customer_id Int64, amount Float64,
quantity Int32, status String, country String (2 letters), email String, created_at
Datetime(us, UTC), discount Float64 (about 40% null, which the contract allows), sku String
(``SKU-123456``), is_gift Boolean, score Float64. Clean values pass every rule of
``validation_spec``; amounts are at least 5, so that an out-of-range quantity (<= 200) never
also breaks ``amount_covers_quantity``.

About 2% of the rows (seeded NumPy, ``SEED``) are bad. Each bad row gets one rule to break,
15% of them a second and 5% a third; breaking a rule never breaks another one (duplicated
order ids come in pairs of bad rows; ``amount_covers_quantity`` is not combined with the amount
or quantity rules; a null order id never shares a row with a duplicated one, nor a null
created_at with an out-of-range one). So the count of rows injected per rule is exactly the
number of rows every tool must report failing that rule; it is written next to the Parquet
file (``validation_<N>.json``, with the count of distinct bad rows) and checked here against
an independent NumPy recount before the file is kept. No NaN and no strings with newlines are
injected (both are places where the tools disagree; see ``validation.py``).

An existing file whose JSON says it was made from the same generator version is reused.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import validation_spec as spec  # noqa: E402

SEED = 20261126
BAD_SHARE = 0.02
GENERATOR_VERSION = 1
COUNTRIES = ("US", "DE", "FR", "GB", "NL", "ES", "IT", "PL", "SE", "JP", "BR", "CA", "AU", "IN")
DOMAINS = ("example.com", "mail.org", "shop.net", "corp.io", "post.de")
BAD = {  # the bad values injected per string rule
    "status.isin": ("NEW", "pending", "", "unknown", "Paid"),
    "country.matches": ("usa", "U1", "u", "DEU", "de", "1A"),
    "email.matches": ("no-at-sign.example.com", "a@b", "x@@y.com", "user@example", "@mail.org"),
    "sku.length": ("SKU-12345", "SKU-1234567", "sku123", "SKU-00000000"),
}


def default_path(rows: int) -> Path:
    """``bench/data/validation_<rows>.parquet``."""
    return DATA / f"validation_{rows}.parquet"


def meta_path(parquet: Path) -> Path:
    """The JSON with the injected counts, next to the Parquet file."""
    return parquet.with_suffix(".json")


def _assign_rules(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    """Bad row indices per rule (sorted), respecting the exclusions of the module docs."""
    n_bad = round(rows * BAD_SHARE)
    bad_rows = rng.choice(rows, size=n_bad, replace=False)
    n_rules = len(spec.RULES)
    extra = rng.random(n_bad)
    k = 1 + (extra < 0.20).astype(np.int64) + (extra < 0.05).astype(np.int64)
    chosen = np.zeros((n_bad, n_rules), dtype=bool)
    for j in range(3):  # up to 3 distinct rules per row
        pick = rng.integers(0, n_rules, size=n_bad)
        chosen[np.arange(n_bad)[k > j], pick[k > j]] = True
    col = {rule: i for i, rule in enumerate(spec.RULES)}

    def drop(when: str, *rules: str) -> None:
        for rule in rules:
            chosen[chosen[:, col[when]], col[rule]] = False

    drop("amount_covers_quantity", "amount.between", "quantity.between")
    drop("order_id.not_null", "order_id.unique")
    drop("created_at.not_null", "created_at.between")
    out = {rule: np.sort(bad_rows[chosen[:, i]]) for rule, i in col.items()}
    dup = out["order_id.unique"]
    out["order_id.unique"] = dup[: len(dup) // 2 * 2]  # duplicates come in pairs
    # rows left with no rule at all (a lone dropped rule) stay clean: n_bad is "about" 2%
    return out


def generate_frame(rows: int, seed: int = SEED) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The data frame and its metadata (injected failing rows per rule)."""
    rng = np.random.default_rng(seed)
    bad = _assign_rules(rng, rows)

    order_id = rng.permutation(rows).astype(np.int64) + 1_000_000_000
    pairs = bad["order_id.unique"].reshape(-1, 2)
    order_id[pairs[:, 1]] = order_id[pairs[:, 0]]
    customer_id = rng.integers(1, 2_000_000, size=rows, dtype=np.int64)
    quantity = rng.integers(spec.QUANTITY_MIN, spec.QUANTITY_MAX + 1, size=rows).astype(np.int32)
    amount = np.round(np.clip(rng.lognormal(4.0, 1.0, size=rows), 5.0, 9_999.0), 2)
    start = int(spec.CREATED_MIN.timestamp() * 1_000_000)
    end = int(spec.CREATED_MIN.replace(year=2026, month=11, day=26).timestamp() * 1_000_000)
    created = rng.integers(start, end, size=rows, dtype=np.int64)
    discount = np.round(rng.random(rows) * 0.5, 3)
    discount_null = rng.random(rows) < 0.4
    score = rng.random(rows)
    is_gift = rng.random(rows) < 0.1

    def some(rule: str) -> np.ndarray:
        return bad[rule]

    def choose(values: np.ndarray | tuple[Any, ...], idx: np.ndarray) -> np.ndarray:
        return np.asarray(values)[rng.integers(0, len(values), size=len(idx))]

    idx = some("amount.between")
    amount[idx] = np.round(rng.uniform(10_000.01, 50_000.0, size=len(idx)), 2)
    idx = some("quantity.between")
    quantity[idx] = choose(np.array([0, -1, -5, 101, 150, 200], dtype=np.int32), idx)
    idx = some("created_at.between")
    year_us = 365 * 24 * 3600 * 1_000_000
    early = rng.random(len(idx)) < 0.5
    created[idx] = np.where(
        early,
        start - rng.integers(1, 5 * year_us, size=len(idx)),
        int(spec.CREATED_MAX.timestamp() * 1_000_000) + rng.integers(1, 3 * year_us, len(idx)),
    )
    idx = some("discount.between")
    discount[idx] = choose(np.array([-0.1, -1.0, 1.5, 1.001, 2.0]), idx)
    discount_null[idx] = False
    idx = some("score.between")
    score[idx] = choose(np.array([-0.2, -0.0001, 1.0001, 1.5, 7.0]), idx)
    idx = some("amount_covers_quantity")
    quantity[idx] = rng.integers(50, 101, size=len(idx)).astype(np.int32)
    amount[idx] = np.round(quantity[idx] * spec.COVER_FACTOR * rng.uniform(0.1, 0.9, len(idx)), 3)

    def string_col(name: str, clean: pl.Series, rule: str) -> pl.Series:
        idx = some(rule)
        return clean.scatter(idx, pl.Series(choose(BAD[rule], idx).tolist(), dtype=pl.String))

    status = pl.Series(spec.STATUSES).gather(rng.integers(0, len(spec.STATUSES), rows))
    country = pl.Series(COUNTRIES).gather(rng.integers(0, len(COUNTRIES), rows))
    frame = pl.DataFrame(
        {
            "order_id": order_id,
            "customer_id": customer_id,
            "amount": amount,
            "quantity": quantity,
            "status": string_col("status", status, "status.isin"),
            "country": string_col("country", country, "country.matches"),
            "created_at": created,
            "discount": discount,
            "sku_n": rng.integers(0, 1_000_000, size=rows),
            "domain": pl.Series(DOMAINS).gather(rng.integers(0, len(DOMAINS), size=rows)),
            "is_gift": is_gift,
            "score": score,
        }
    )
    frame = frame.with_columns(
        pl.col("created_at").cast(pl.Datetime("us", "UTC")),
        pl.when(pl.Series(discount_null))
        .then(None)
        .otherwise(pl.col("discount"))
        .alias("discount"),
        email=pl.format("user{}@{}", pl.col("customer_id"), pl.col("domain")),
        sku=pl.format("SKU-{}", pl.col("sku_n").cast(pl.String).str.zfill(6)),
    ).drop("sku_n", "domain")
    frame = frame.with_columns(
        string_col("email", frame["email"], "email.matches").alias("email"),
        string_col("sku", frame["sku"], "sku.length").alias("sku"),
        frame["order_id"].scatter(some("order_id.not_null"), None).alias("order_id"),
        frame["customer_id"].scatter(some("customer_id.not_null"), None).alias("customer_id"),
        frame["created_at"].scatter(some("created_at.not_null"), None).alias("created_at"),
    ).select(spec.COLUMNS)

    any_bad = np.zeros(rows, dtype=bool)
    for idx in bad.values():
        any_bad[idx] = True
    meta = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "rows": rows,
        "bad_share_target": BAD_SHARE,
        "failing_rows_total": int(any_bad.sum()),
        "failed_rows": {rule: len(bad[rule]) for rule in spec.RULES},
    }
    return frame, meta


def recount(frame: pl.DataFrame) -> dict[str, int]:
    """Failing rows per rule, recomputed in NumPy/Python from the frame (no Polars predicates)."""

    def arr(name: str) -> np.ndarray:
        return frame[name].to_numpy()

    order_id = frame["order_id"].to_numpy(allow_copy=True)  # float with NaN for nulls
    oid = order_id[~np.isnan(order_id)]
    _, counts = np.unique(oid, return_counts=True)
    created = frame["created_at"].dt.epoch("us").cast(pl.Float64).to_numpy()  # NaN: null
    lo, hi = (int(t.timestamp() * 1_000_000) for t in (spec.CREATED_MIN, spec.CREATED_MAX))
    discount = arr("discount")

    def failing(name: str, ok: Any) -> int:  # Python predicate over the distinct values
        counts = frame[name].value_counts()
        return sum(c for v, c in counts.iter_rows() if v is not None and not ok(v))

    country_re, email_re = re.compile(spec.COUNTRY_PATTERN), re.compile(spec.EMAIL_PATTERN)
    amount, quantity, score = arr("amount"), arr("quantity"), arr("score")
    return {
        "order_id.not_null": int(np.isnan(order_id).sum()),
        "order_id.unique": int(counts[counts > 1].sum()),
        "customer_id.not_null": frame["customer_id"].null_count(),
        "amount.between": int(((amount < spec.AMOUNT_MIN) | (amount > spec.AMOUNT_MAX)).sum()),
        "quantity.between": int(
            ((quantity < spec.QUANTITY_MIN) | (quantity > spec.QUANTITY_MAX)).sum()
        ),
        "status.isin": failing("status", lambda v: v in spec.STATUSES),
        "country.matches": failing("country", country_re.search),
        "email.matches": failing("email", email_re.search),
        "created_at.not_null": frame["created_at"].null_count(),
        "created_at.between": int(((created < lo) | (created > hi)).sum()),  # NaN: False
        "discount.between": int(
            ((discount < spec.DISCOUNT_MIN) | (discount > spec.DISCOUNT_MAX)).sum()
        ),
        "sku.length": failing("sku", lambda v: len(v) == spec.SKU_LENGTH),
        "score.between": int(((score < spec.SCORE_MIN) | (score > spec.SCORE_MAX)).sum()),
        "amount_covers_quantity": int((amount < quantity * spec.COVER_FACTOR).sum()),
    }


def generate(rows: int, path: Path | None = None, *, force: bool = False) -> Path:
    """Write the Parquet file (and its JSON) unless an up-to-date one exists; return its path."""
    path = path or default_path(rows)
    meta_file = meta_path(path)
    if not force and path.exists() and meta_file.exists():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("generator_version") == GENERATOR_VERSION and meta.get("rows") == rows:
            return path
    started = time.perf_counter()
    frame, meta = generate_frame(rows)
    recounted = recount(frame)
    if recounted != meta["failed_rows"]:
        diff = {
            r: (meta["failed_rows"][r], recounted[r])
            for r in spec.RULES
            if recounted[r] != meta["failed_rows"][r]
        }
        raise RuntimeError(f"generator bug: injected != recounted (injected, recount): {diff}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp, statistics=True, row_group_size=1_000_000)
    tmp.replace(path)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["bytes"] = path.stat().st_size
    meta_file.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows (default 10,000,000)")
    ap.add_argument("--out", type=Path, help="Parquet path (default bench/data/validation_N...)")
    ap.add_argument("--force", action="store_true", help="regenerate even if the file exists")
    args = ap.parse_args(argv)
    if args.rows < 1000:
        ap.error("--rows must be >= 1000")
    path = generate(args.rows, args.out, force=args.force)
    meta = json.loads(meta_path(path).read_text(encoding="utf-8"))
    print(json.dumps({"path": str(path), **meta}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
