"""Shared helpers of the test suite."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def reliability_table():
    """benchmarks/reliability_table.py as a module (the corpus runner the tests share)."""
    if "reliability_table" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "reliability_table", ROOT / "benchmarks" / "reliability_table.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["reliability_table"] = module
        spec.loader.exec_module(module)
    return sys.modules["reliability_table"]
