"""Data quality: contracts compiled to Polars, quarantine, scores and gates."""
