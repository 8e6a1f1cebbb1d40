"""tests/unit stays fast and self-contained: run on its own, nothing it collects imports moto or the
Cronofy emulator (the rules run on tests/fakes instead)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent


def test_unit_tests_import_neither_moto_nor_the_emulator(request):
    if any(UNIT not in Path(item.path).resolve().parents for item in request.session.items):
        pytest.skip("other suites in this session bring moto and the emulator")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "moto" or m.startswith("localdev.emulator")
                    or m == "localdev.stack")
    assert loaded == []
