"""``floorwatch analyze FILE.csv --column NAME``: the statistics core over a file of readings.

What a buyer does with the CSV a factory sent: mean, spread, capability against the spec limits, control
limits, and every point that broke a control-chart rule, with the line of the file it came from.

Control limits are, in order of precedence: given (``--center``/``--sigma``); learned from the first
``--baseline`` readings and then frozen (as the gateway does live); or, by default, learned from all the
readings (a Phase I study: centre = mean, σ = MR̄/1.128, or R̄/d2 for subgroups) and then every reading
judged against them. Cells that are empty or not a number are reported and left out, never guessed.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from floorwatch.edge.model import figures
from floorwatch.edge.signals import DEFAULT_RULES, RULE_NAMES

_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+(?:[eE][+-]?\d+)?$")
MAX_LISTED = 50


class AnalyzeError(Exception):
    """A problem with the input file or the options, said in one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="CSV file with a header row")
    parser.add_argument("--column", required=True, help="header of the column holding the readings")
    parser.add_argument("--lsl", type=float, help="lower spec limit (leave out for a one-sided spec)")
    parser.add_argument("--usl", type=float, help="upper spec limit (leave out for a one-sided spec)")
    parser.add_argument("--window", type=int, help="rolling window in readings (default: the whole file)")
    parser.add_argument("--subgroup", type=int, default=1, metavar="K",
                        help="subgroup size 2..10 for Xbar-R/S charts of consecutive readings (default 1: I-MR)")
    parser.add_argument("--center", type=float, help="given centre line (with --sigma)")
    parser.add_argument("--sigma", type=float, help="given process sigma (with --center)")
    parser.add_argument("--baseline", type=int, metavar="M",
                        help="learn limits from the first M readings only, then judge the rest (as live)")
    parser.add_argument("--rules", default=",".join(DEFAULT_RULES),
                        help="comma-separated rules (nelson_1..nelson_8, we_1..we_4) or 'all' "
                             f"(default {','.join(DEFAULT_RULES)})")
    parser.add_argument("--ewma-lambda", type=float, default=0.2)
    parser.add_argument("--ewma-l", type=float, default=3.0)
    parser.add_argument("--cusum-k", type=float, default=0.5)
    parser.add_argument("--cusum-h", type=float, default=5.0)
    parser.add_argument("--delimiter", help="field separator (default: guessed from , ; tab)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a report")


def _parse_rules(text: str) -> tuple[str, ...]:
    if text.strip().lower() == "all":
        return RULE_NAMES
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    for name in names:
        if name not in RULE_NAMES:
            close = difflib.get_close_matches(name, RULE_NAMES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known rules: {', '.join(RULE_NAMES)} or 'all'"
            raise AnalyzeError(f"--rules: unknown rule {name!r}; {hint}")
    return names


def _number(cell: str, decimal_comma: bool) -> float | None:
    text = cell.strip()
    if decimal_comma and _DECIMAL_COMMA.match(text):
        text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_column(path: Path, column: str, delimiter: str | None = None
                ) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Values of one column (NaN for bad cells), the file line of each, and the bad cells (line, text)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnalyzeError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnalyzeError(f"{path}: cannot read it as UTF-8 text: {exc}") from None
    if not text.strip():
        raise AnalyzeError(f"{path}: the file is empty; expected a header row and readings")
    if delimiter is None:
        first = text.splitlines()[0]
        counts = {d: first.count(d) for d in (",", ";", "\t")}
        delimiter = max(counts, key=counts.get) if any(counts.values()) else ","
    decimal_comma = delimiter != ","
    rows = csv.reader(text.splitlines(), delimiter=delimiter)
    header = [h.strip() for h in next(rows)]
    if column in header:
        index = header.index(column)
    else:
        lowered = [h.lower() for h in header]
        if column.lower() in lowered:
            index = lowered.index(column.lower())
        else:
            close = difflib.get_close_matches(column, header, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise AnalyzeError(f"{path}: no column {column!r}; {hint}columns are: {', '.join(header)}")
    values: list[float] = []
    lines: list[int] = []
    bad: list[tuple[int, str]] = []
    for line_no, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue  # blank line
        cell = row[index] if index < len(row) else ""
        value = _number(cell, decimal_comma)
        if value is None:
            bad.append((line_no, cell))
            value = math.nan
        values.append(value)
        lines.append(line_no)
    if not values:
        raise AnalyzeError(f"{path}: no readings below the header")
    return np.array(values, dtype=np.float64), lines, bad


def analyze(args: argparse.Namespace) -> dict[str, Any]:
    """Run the core over the file; returns the report as plain data (what --json prints)."""
    from floorwatch.edge.stats import IMPLEMENTATION, RollingStats, rules

    values, lines, bad = read_column(args.file, args.column, args.delimiter)
    good = int(np.isfinite(values).sum())
    k = args.subgroup
    if good < max(2, 2 * k):
        raise AnalyzeError(f"{args.file}: column {args.column!r} has {good} usable reading(s); "
                           f"need at least {max(2, 2 * k)}")
    if (args.center is None) != (args.sigma is None):
        raise AnalyzeError("give both --center and --sigma, or neither (then limits are learned)")
    if args.center is not None and args.baseline is not None:
        raise AnalyzeError("--baseline learns limits; it cannot be combined with --center/--sigma")
    window = args.window if args.window is not None else max(good, 2 * k)
    common = dict(window=window, lsl=args.lsl, usl=args.usl, subgroup_size=k,
                  rules=_parse_rules(args.rules), ewma_lambda=args.ewma_lambda, ewma_l=args.ewma_l,
                  cusum_k=args.cusum_k, cusum_h=args.cusum_h, characteristic=args.column)
    try:
        if args.center is not None:
            limits = "given"
            rs = RollingStats(center=args.center, sigma=args.sigma, **common)
        elif args.baseline is not None:
            limits = f"learned from the first {args.baseline} readings"
            rs = RollingStats(baseline=args.baseline, **common)
        else:
            learner = RollingStats(**{**common, "window": max(good, 2 * k)}, baseline=max(good, 2))
            learner.push_many(values)
            learned = learner.snapshot()
            if not learned.baseline_done:
                raise AnalyzeError(f"{args.file}: column {args.column!r} shows no variation between "
                                   "readings, so no control limits can be learned; give --center and --sigma")
            limits = f"learned from all {good} readings"
            rs = RollingStats(center=learned.center, sigma=learned.sigma, **common)
    except ValueError as exc:
        raise AnalyzeError(f"invalid option: {exc}") from None
    masks = rs.push_many(values)
    snap = rs.snapshot()
    reportable = ~np.uint32(rules.REJECTED)
    violations = [
        {"reading": int(i) + 1, "line": lines[i], "value": float(values[i]),
         "rules": rules.names(int(masks[i]) & int(reportable))}
        for i in np.flatnonzero(masks & reportable)
    ]
    return {
        "file": str(args.file), "column": args.column, "readings": len(values), "accepted": good,
        "rejected": [{"line": line, "text": cell} for line, cell in bad], "limits": limits,
        "implementation": IMPLEMENTATION, "snapshot": figures(snap), "violations": violations,
    }


def _fmt(v: Any) -> str:
    if v is None or isinstance(v, float) and math.isnan(v):
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _print_report(rep: dict[str, Any]) -> None:
    s = rep["snapshot"]
    out = []
    rejected = rep["rejected"]
    out.append(f"{rep['file']}: column {rep['column']!r}, {rep['readings']} readings"
               + (f" ({len(rejected)} not numbers, left out: lines "
                  f"{', '.join(str(r['line']) for r in rejected[:10])}{' …' if len(rejected) > 10 else ''})"
                  if rejected else ""))
    chart = "I-MR" if s["subgroup_size"] == 1 else f"Xbar-R/S, subgroups of {s['subgroup_size']}"
    out.append(f"window: last {s['n']} readings; chart: {chart}; control limits {rep['limits']}")
    out.append(f"  mean {_fmt(s['mean'])}   std (overall s) {_fmt(s['std'])}   "
               f"min {_fmt(s['min'])}   max {_fmt(s['max'])}")
    within = "MR̄/1.128" if s["subgroup_size"] == 1 else "R̄/d2"
    out.append(f"  σ within ({within}) {_fmt(s['sigma_within'])}   MR̄ {_fmt(s['mr_bar'])}")
    out.append(f"  Cp {_fmt(s['cp'])}   Cpk {_fmt(s['cpk'])}   Pp {_fmt(s['pp'])}   Ppk {_fmt(s['ppk'])}")
    out.append(f"  centre {_fmt(s['center'])}   σ {_fmt(s['sigma'])}   UCL {_fmt(s['ucl'])}   LCL {_fmt(s['lcl'])}")
    if s["subgroup_size"] > 1:
        out.append(f"  R̄ {_fmt(s['r_bar'])} (R chart {_fmt(s['r_lcl'])}..{_fmt(s['r_ucl'])})   "
                   f"S̄ {_fmt(s['s_bar'])} (S chart {_fmt(s['s_lcl'])}..{_fmt(s['s_ucl'])})")
    out.append(f"  EWMA {_fmt(s['ewma'])} ({_fmt(s['ewma_lcl'])}..{_fmt(s['ewma_ucl'])})   "
               f"CUSUM C+ {_fmt(s['cusum_pos'])} C- {_fmt(s['cusum_neg'])}")
    out.append(f"  out of spec: {s['n_below_lsl']} below LSL, {s['n_above_usl']} above USL")
    vs = rep["violations"]
    if not vs:
        out.append("no rule violations")
    else:
        out.append(f"rule violations ({len(vs)} point(s)):")
        for v in vs[:MAX_LISTED]:
            out.append(f"  reading {v['reading']} (line {v['line']}): {_fmt(v['value'])}  {', '.join(v['rules'])}")
        if len(vs) > MAX_LISTED:
            out.append(f"  … and {len(vs) - MAX_LISTED} more (use --json for all)")
    print("\n".join(out))


def run(args: argparse.Namespace) -> int:
    try:
        rep = analyze(args)
    except AnalyzeError as exc:
        print(f"floorwatch analyze: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rep, indent=2, allow_nan=False))
    else:
        _print_report(rep)
    return 0
