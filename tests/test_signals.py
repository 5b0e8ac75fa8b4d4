"""The signal catalogue is the one home of the rules and signals: the compiled core's bit constants, the
reference's, the configuration's rule names and the table in docs/statistics.md all agree with it."""

from __future__ import annotations

import re
from pathlib import Path

from floorwatch.edge import signals
from floorwatch.edge.config import CharacteristicConfig
from floorwatch.edge.stats import rules

ROOT = Path(__file__).resolve().parents[1]


def test_bits_are_the_catalogue_order_and_fit_the_mask():
    assert [s.bit for s in signals.CATALOGUE] == list(range(len(signals.CATALOGUE)))
    assert len(signals.CATALOGUE) <= 32  # the mask is an unsigned 32-bit integer
    assert rules.BIT_NAMES == signals.SIGNAL_NAMES


def test_the_compiled_core_keeps_the_catalogue_bits():
    from floorwatch.edge import _stats_core

    assert _stats_core.BIT_VALUES == {s.name: s.mask for s in signals.CATALOGUE}


def test_rules_are_the_first_bits_and_the_defaults_are_rules():
    assert signals.RULE_NAMES == tuple(s.name for s in signals.CATALOGUE[:12])
    assert set(signals.DEFAULT_RULES) <= set(signals.RULE_NAMES)
    assert tuple(CharacteristicConfig(name="x", instrument="i", unit="mm").rules) == signals.DEFAULT_RULES


def test_every_signal_but_rejected_raises_an_alert_and_spec_is_critical():
    kinds = signals.alert_masks(list(signals.SIGNAL_NAMES))
    assert kinds["out_of_spec"] == (rules.OUT_OF_SPEC, signals.Severity.CRITICAL)
    assert kinds["ewma"][0] == rules.EWMA and kinds["cusum"][0] == rules.CUSUM
    assert signals.by_name("rejected").alert_kind is None


def test_unknown_names_get_the_nearest_one():
    assert signals.unknown_rule_message("nelson_9").startswith("unknown rule 'nelson_9'; did you mean 'nelson_")
    try:
        signals.by_name("ewma_hi")
    except ValueError as exc:
        assert "did you mean 'ewma_high'?" in str(exc)
    else:
        raise AssertionError("no error for an unknown signal")


def test_the_docs_table_is_the_catalogue():
    doc = (ROOT / "docs" / "statistics.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+?) \|$", doc, flags=re.M)
    assert [(int(b), n, text) for b, n, text in rows] == [(s.bit, s.name, s.fires_when) for s in signals.CATALOGUE]
