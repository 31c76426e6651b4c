"""Peer for `vlmscale bench fit`: the authors' grid-search loop (scaling_law_code/objective.py,
`grid_search`), timed on a prefix of the same 5,000,000-point grid and the same 28 cells.

The loop structure follows the authors' code: a numpy meshgrid of (a, b, c, d), then for each point a
Python loop over N and V computing a * 1/N**b * 1/(T**c) + d against 1 - score. Written for this
benchmark from the paper's description of that code (not copied).

Usage: python3 grid_search_authors_loop.py CSV [--points K]
Prints one JSON line: {"points": K, "seconds": s, "points_per_second": r, "best_loss": l}.
"""
import csv
import json
import sys
import time

import numpy as np


def main():
    path = sys.argv[1]
    k = int(sys.argv[sys.argv.index("--points") + 1]) if "--points" in sys.argv else 20000
    cells = []
    with open(path) as f:
        for row in csv.DictReader(f):
            cells.append((float(row["llm_params"]), float(row["visual_tokens"]), float(row["score"])))
    n_values = sorted({c[0] for c in cells})
    t_values = sorted({c[1] for c in cells})
    scores = {n: {t: s for (m, t, s) in cells if m == n} for n in n_values}
    a = np.linspace(0.2, 0.7, 50)
    b = np.linspace(0.0, 0.2, 100)
    c = np.linspace(0.0, 0.05, 100)
    d = np.linspace(0.0, 0.3, 10)
    grid = np.array(np.meshgrid(a, b, c, d)).T.reshape(-1, 4)[:k]
    best = float("inf")
    t0 = time.perf_counter()
    for param in grid:
        pa, pb, pc, pd = param
        loss = 0
        for n in n_values:
            for t in t_values:
                pred = pa * 1 / n**pb * 1 / (t**pc) + pd
                loss += (pred - (1 - scores[n][t])) ** 2
        if loss < best:
            best = loss
    dt = time.perf_counter() - t0
    print(json.dumps({"points": int(len(grid)), "seconds": dt, "points_per_second": len(grid) / dt, "best_loss": float(best)}))


if __name__ == "__main__":
    main()
