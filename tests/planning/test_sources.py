"""Every built-in number names where a reader finds it (PMID, DOI or URL, and the table,
figure or section) and its limits; an internal file is never a source."""

from __future__ import annotations

import json
import re

import pytest

from guideplan.core.resources import resource_path
from guideplan.planning.devices import load_catalog

#: Internal files and notes of this project: never a source.
INTERNAL = re.compile(r"CLINICAL\b|ARCHITECTURE|\.md\b|\.py\b|\.json\b|\b[Ii]ssue \d")


def _strings(node, key_hint=""):
    """(key, text) of every source-like string in a JSON tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key_hint)
    elif isinstance(node, str) and "source" in key_hint:
        yield key_hint, node


@pytest.mark.parametrize("device", list(load_catalog()), ids=lambda d: d.id)
def test_every_built_in_device_cites_findable_references_with_their_limits(device):
    refs = device.data.get("sources")
    assert refs, f"{device.id} has no references"
    for ref in refs:
        assert ref.get("ref"), ref
        assert any(ref.get(k) for k in ("pmid", "doi", "url")), ref
        assert ref.get("locator") and ref.get("limits"), ref
        if ref.get("url"):
            assert ref["url"].startswith(("http://", "https://"))
    assert not INTERNAL.search(device.source), device.source


@pytest.mark.parametrize("name", ["devices/catalog.json", "treatment.json"])
def test_no_source_is_an_internal_file(name):
    doc = json.loads(resource_path(name).read_text(encoding="utf-8"))
    bad = [(k, s) for k, s in _strings(doc) if INTERNAL.search(s)]
    assert bad == []


def test_the_treatment_settings_this_issue_changed_cite_papers():
    doc = json.loads(resource_path("treatment.json").read_text(encoding="utf-8"))
    assert "PMID 12865843" in doc["fracture_risk"]["body_fill_target_pct"]["source"]
    assert "PMID 20562730" in doc["fracture_risk"]["sins_points"]["source"]
    assert "PMID 2684463" in doc["fracture_risk"]["mirels_points"]["source"]
    assert "PMC4850244" in doc["cryo"]["lethal_isotherm_c"]["source"]
    assert "2-8 mL" in doc["cement"]["default_volume_ml"]["source"]
    assert "PMID 12865843" in doc["cement"]["default_volume_ml"]["source"]
