from headrace.core.redaction import redact, redact_mapping


def test_passwords_in_urls_are_masked() -> None:
    assert redact("postgresql+psycopg://app:s3cret@db/x") == "postgresql+psycopg://app:***@db/x"
    assert "s3cret" not in redact("failed: password=s3cret host=db")


def test_secret_keys_are_masked_recursively() -> None:
    out = redact_mapping({"token": "abc", "db": {"url": "redis://:pw@h/0", "password": "x"}})
    assert out == {"token": "***", "db": {"url": "redis://:***@h/0", "password": "***"}}
