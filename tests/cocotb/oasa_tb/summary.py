"""Sum the per-test coverage records of a session into the printed summary."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

__all__ = ["load_records", "summarize"]

_FLAG_KEYS = ("flag_none", "flag_transient", "flag_final")


def load_records(folder: Path) -> list[dict]:
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records


def _fmt(counter: Counter, keys=None) -> str:
    keys = keys if keys is not None else sorted(counter)
    return ", ".join(f"{k} {counter[k]}" for k in keys if counter.get(k))


def summarize(records: list[dict], durations: dict[str, float] | None = None) -> list[str]:
    """Lines of the summary: per simulator, totals, then the breakdowns."""
    by_sim: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_sim[rec["sim"]].append(rec)
    lines: list[str] = []
    for sim in sorted(by_sim):
        recs = by_sim[sim]
        total = Counter()
        bench_dots = Counter()
        bench_ovf = Counter()
        mode_dots = Counter()
        mode_ovf = Counter()
        p_dots = Counter()
        bits_dots = Counter()
        size_dots = Counter()
        stalls = Counter()
        runs = Counter()
        notes = Counter()
        cfgs = set()
        for rec in recs:
            c = Counter(rec["counts"])
            f = rec["cfg_fields"]
            total.update(c)
            cfgs.add((rec["bench"], rec["cfg"]))
            dots = c.get("dot_products", 0)
            bench_dots[rec["bench"]] += dots
            bench_ovf[rec["bench"]] += c.get("overflow_events", 0)
            mode_dots[f["overflow"]] += dots
            mode_ovf[f["overflow"]] += c.get("overflow_events", 0)
            p_dots[f"P={f['acc_bits']}"] += dots
            sign = "s" if f["act_signed"] else ""
            bits_dots[f"a{f['act_bits']}{sign}w{f['weight_bits']}"] += dots
            if rec["bench"] != "pe":
                size_dots[f"{f['rows']}x{f['cols']}"] += dots
            stalls.update(rec.get("stalls", {}))
            runs.update(rec.get("runs", {}))
            for n in rec.get("notes", []):
                notes[n] += 1
        extra = ""
        if durations and sim in durations:
            extra = f", {durations[sim]:.0f} s of test time (build + run, summed over workers)"
        head = f"[{sim}] {len(recs)} cocotb tests passed with records"
        lines.append(f"{head}, {len(cfgs)} bench x config{extra}")
        lines.append(
            f"  dot products compared: {total['dot_products']}; "
            f"overflow events compared: {total['overflow_events']}"
        )
        if total["dot_products"]:
            lines.append(
                f"  by bench: dot products {_fmt(bench_dots)}; overflow events {_fmt(bench_ovf)}"
            )
            lines.append(
                f"  modes: dot products {_fmt(mode_dots)}; overflow events {_fmt(mode_ovf)}"
            )
            p_order = sorted(p_dots, key=lambda k: int(k[2:]))
            lines.append(f"  accumulator widths (dot products): {_fmt(p_dots, p_order)}")
            lines.append(f"  operand widths (dot products): {_fmt(bits_dots)}")
        if any(size_dots.values()):
            lines.append(f"  array sizes (dot products): {_fmt(size_dots)}")
        if any(total[k] for k in _FLAG_KEYS):
            lines.append(
                "  flag outcomes: none {}, transient only {}, final {}".format(
                    *(total[k] for k in _FLAG_KEYS)
                )
            )
        pe_keys = (
            "pe_beats",
            "pe_flag_sets",
            "pe_flag_clears",
            "pe_transient_seen",
            "pe_sat_high",
            "pe_sat_low",
        )
        if any(total[k] for k in pe_keys):
            lines.append(
                "  PE: beats checked {}, flag 0->1 {}, cleared by first {}, transient dot "
                "products {}, saturated high {} / low {}".format(*(total[k] for k in pe_keys))
            )
        st_keys = (
            "stage_rows",
            "stage_ties",
            "stage_shift0",
            "stage_shift_max",
            "stage_clamp_high",
            "stage_clamp_low",
            "stage_relu_zeroed",
            "stage_raw",
        )
        if any(total[k] for k in st_keys):
            lines.append(
                "  output stage: rows {}, exact .5 ties {}, shift 0 {}, largest shift {}, "
                "clamped high {} / low {}, ReLU-zeroed {}, raw rows {}".format(
                    *(total[k] for k in st_keys)
                )
            )
        adv = ("adv_checked", "adv_fired", "adv_quiet", "adv_edge_safe", "adv_edge_over")
        if any(total[k] for k in adv):
            lines.append(
                "  adversarial: worst-case outputs checked {} (flag fired {}, quiet {}); "
                "edge columns at the bound {}, one step over {}".format(*(total[k] for k in adv))
            )
        if runs:
            parts = [f"{k} x{runs[k]} ({stalls.get(k, 0)} stalled cycles)" for k in sorted(runs)]
            lines.append("  stall patterns: " + "; ".join(parts))
            dut_wait = {k: v for k, v in stalls.items() if k.endswith(":dut-not-ready")}
            if dut_wait:
                lines.append(
                    "  DUT back-pressure (ready low while valid): " + _fmt(Counter(dut_wait))
                )
        for note, n in sorted(notes.items()):
            lines.append(f"  note ({n}x): {note}")
    return lines
