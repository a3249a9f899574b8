"""The event catalogue and OpenAPI documents in docs/ are generated from the pydantic models: they must be
current (regenerate with `python -m ops.catalogue`)."""
from ops.catalogue import ROOT, outputs


def test_generated_docs_are_current():
    stale = [str(p.relative_to(ROOT)) for p, text in outputs().items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert not stale, f"regenerate with `python -m ops.catalogue`: {stale}"


def test_catalogue_lists_every_contract():
    import shared.contracts  # noqa: F401
    from shared.envelope import registered_events

    text = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    for (name, version), cls in registered_events().items():
        if not name.startswith("Test"):
            assert cls.type_name() in text
