"""Numbers as the probe's console table, the report and the model card print them."""

from __future__ import annotations

import math

def format_spread(stat: dict, signed: bool = False) -> str:
    """A metric over several seeds ({"mean", "std", "min", "max", "n"}) as the probe's table, the report and the
    model card print it: "mean ± std [min, max]", or the value alone for one seed."""
    fmt = "{:+.4f}" if signed else "{:.4f}"
    text = fmt.format(stat["mean"])
    if stat["n"] > 1:
        text += f" ± {stat['std']:.4f} [{fmt.format(stat['min'])}, {fmt.format(stat['max'])}]"
    return text


PROBE_COLUMNS = ("share of train", "arm", "accuracy", "macro-F1")


def probe_rows(task: dict, minus: str = "-") -> list[list[str]]:
    """One task of probe.json as the rows of the probe's console table and of the report (PROBE_COLUMNS): each
    training share's arms and their per-seed gain (format_spread), then the majority class."""
    rows = []
    for share, row in task["summary"].items():
        label = f"{float(share):.0%} ({row['train_examples']:,})"
        for arm in ("pretrained", "scratch"):
            if arm in row:
                failed = row[arm].get("did_not_learn") or {}
                why = sorted({"one class" if v.startswith("predicts one class") else "within noise of the majority class"
                              for v in failed.values()})
                name = f"{arm}: did not learn (seed {', '.join(failed)}: {', '.join(why)})" if failed else arm
                rows.append([label, name, format_spread(row[arm]["accuracy"]), format_spread(row[arm]["macro_f1"])])
        status = row.get("gain_measured", "measured")  # probe.json files before the check: always shown
        if "gain" in row and status.startswith("measured"):
            rows.append([label, f"pretrained {minus} scratch", format_spread(row["gain"]["accuracy"], True),
                         format_spread(row["gain"]["macro_f1"], True)])
        elif "gain" in row:
            rows.append([label, f"pretrained {minus} scratch", status, ""])
    rows.append(["", "majority class", f"{task['majority_accuracy']:.4f}", ""])
    return rows


def format_value(v, digits: int = 4) -> str:
    """A number as the report and the model card print it: thousands separated, "—" for none."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if abs(v) >= 1e3:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}" if abs(v) < 1e-3 else f"{v:.{digits}f}"
    return str(v)

