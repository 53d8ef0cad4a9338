"""Table 1 as the reports write it (learned PReLU slopes per layer), and read back.

The photo report shows the shapes report's slopes beside its own; a clone has
the written shapes report but not its runs, so the table is read back from it.
"""

from delving import paper
from delving.experiments import common

#: Table 1's column of each PReLU variant.
COLUMNS = {"prelu_shared": "channel-shared", "prelu": "channel-wise (mean)"}


def coefficient_table(results):
    """Table 1's layout: layer | shared (ours, paper) | channel-wise (ours, paper)."""
    summary = results["summary"]
    variants = [a for a in ("prelu_shared", "prelu") if a in summary]
    if not variants:
        return ""
    headers = ["layer"]
    for a in variants:
        kind = COLUMNS[a]
        headers += [f"{kind}: ours", f"{kind}: paper"]
    rows = []
    variants = [a for a in variants if "prelu" in summary[a]]
    if not variants:
        return ""
    for layer in summary[variants[0]]["prelu"]:
        row = [layer]
        for a in variants:
            mean, std = summary[a]["prelu"].get(layer, (None, None))
            reported = paper.TABLE1.get(layer)
            row += [
                f"{mean:.3f} ± {std:.3f}" if mean is not None else "-",
                common.fmt(reported[0 if a == "prelu_shared" else 1], 3) if reported else "-",
            ]
        rows.append(row)
    return common.markdown_table(headers, rows)


def read_coefficient_table(markdown):
    """The per-layer slopes in a written report's Table 1 (`coefficient_table`).

    Returns `{"summary": {variant: {"prelu": {layer: (mean, std)}}}}`, the part
    of the results that table came from, or None when `markdown` has none:
    another report can show the slopes beside its own without the runs.
    """
    kinds = {f"{kind}: ours": a for a, kind in COLUMNS.items()}
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] != "layer" or not set(cells) & set(kinds):
            continue
        summary = {kinds[c]: {"prelu": {}} for c in cells if c in kinds}
        for row in lines[i + 2 :]:
            if not row.startswith("|"):
                break
            values = [c.strip() for c in row.strip().strip("|").split("|")]
            for header, value in zip(cells, values):
                if header in kinds and "±" in value:
                    mean, std = (float(v) for v in value.split("±"))
                    summary[kinds[header]]["prelu"][values[0]] = (mean, std)
        return {"summary": summary}
    return None
