"""``antithetic-sampling estimate-battery``: a smoke run that writes both markdown blocks, and one published row of
docs/evidence.md recomputed from the code (the table cannot drift from the driver it measures)."""

from __future__ import annotations

import math
import pathlib
import re
from dataclasses import replace

from antithetic_sampling.nodes.evidence import estimate_battery as eb
from antithetic_sampling.nodes.methods.sequential_estimation import AUTO_SWITCH

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_battery_smoke_writes_both_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(eb, "BATCHES", (8,))
    monkeypatch.setattr(eb, "SKEW_GRID", (1.0, 2.0))
    monkeypatch.setattr(eb, "report_laws", lambda: [eb._bernoulli(0.05), eb._lognormal(1.0)])
    monkeypatch.setattr(eb, "tuning_laws", lambda: [eb._bernoulli(0.3), eb._beta(0.5, 4)])
    doc = tmp_path / "evidence.md"
    doc.write_text("a\n<!-- BEGIN:estimate-battery -->\n(stale table)\n<!-- END:estimate-battery -->\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- BEGIN:estimate-battery-headline -->\n(stale headline)\n<!-- END:estimate-battery-headline -->\n",
                      encoding="utf-8")
    code = eb.main(["--reps", "6", "--tune-reps", "4", "--no-digits", "--out", str(tmp_path / "out"),
                    "--readme", str(doc), "--summary", str(readme)])
    assert code == 0
    table = doc.read_text(encoding="utf-8")
    assert "| Bernoulli p=0.05 | iid | 8 |" in table and "lognormal σ=1 (unbounded)" in table
    assert "(stale table)" not in table and "Auto switch chosen on the tuning laws" in table
    assert "Trade-off:" in readme.read_text(encoding="utf-8")
    # rerendering from the JSON gives the same table
    assert eb.main(["--render-only", "--out", str(tmp_path / "out"), "--readme", str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == table


def test_a_published_row_is_what_the_code_gives():
    """Bernoulli p=0.2, iid, prompts of 64, loose target: recomputed with the published seed and switch, all
    three methods' cells equal the row in docs/evidence.md."""
    doc = (ROOT / "docs" / "evidence.md").read_text(encoding="utf-8")
    m = re.search(r"Seeded: base seed (\d+)", doc)
    seed = int(m.group(1)) if m else 0
    laws = eb.report_laws()
    li = next(i for i, law in enumerate(laws) if law.name == "Bernoulli p=0.2")
    law = laws[li]
    batch, ti = 64, 0
    target = 1.96 * law.sd / math.sqrt(eb.IID_IMAGES[ti])
    reps = int(re.search(r"(\d+) repetitions per cell, prompts", doc).group(1))
    res = eb._law_cell(law, "iid", batch, target, ("t", "betting", "auto"), reps, (seed, 3, li, False, batch, ti),
                       4096, replace(AUTO_SWITCH))
    row = (f"| {law.name} | iid | {batch} | ±{target:.3g} (n={eb.IID_IMAGES[ti]}) | {eb._cell(res['t'])} | "
           f"{eb._cell(res['betting'])} | {eb._cell(res['auto'])} ")
    assert row in doc


def test_battery_pilots_are_the_clients_defaults():
    """Every battery cell runs the client's own rule: its pilot per design without the control variate."""
    from antithetic_sampling.nodes.api_client.estimate import RULE_DEFAULTS
    from antithetic_sampling.nodes.evidence import estimate_battery as eb

    by_unit = {1: "iid", 2: "pairs", 4: "groups", 8: "replicates"}
    assert {k: (v, eb.AIM) for k, v in eb.PILOT_UNITS.items()} == {k: RULE_DEFAULTS[(d, False)] for k, d in by_unit.items()}
