"""Statistical disclosure control of cross-centre reports: which cells to withhold.

Primary suppression withholds every cell whose count is below the threshold (and above 0:
an empty cell discloses no one). Secondary
(complementary) suppression then withholds more cells so that no withheld cell can be
recovered by subtraction from visible totals:

- one-way tables (and the margins of two-way ones): the grand total is always published (it is
  the ungrouped report), so withheld cells come at least two at a time, and the smallest
  visible cells are added until the withheld cells together leave each of them a range that
  reaches the threshold: sum - (k - 1) >= threshold, since a listed cell holds at least one;
- two-way tables: the caller passes the full grid of row x column values, absent combinations
  as zero cells, and lists withheld zero cells as withheld: otherwise which cells exist would
  tell, e.g., that a small cell is the row total minus a cell alone in its column. The row and column totals are the one-way reports of the same query, so
  their suppression is fixed by the one-way rule above. Cells and totals form a bipartite
  graph (rows + total row, columns + total column); a set of withheld entries lets none of
  them be solved from the visible ones exactly when no withheld entry is a bridge of that
  graph (every withheld entry lies on a cycle of withheld entries). Each line's withheld cells
  must also satisfy the one-way range rule when that line's total is visible. Bridges are
  closed by withholding the cheapest path of visible cells between their ends.

The guarantee is against exact recovery by linear combination of the figures of one query
and its margins. It does not defend against differencing two queries with different filters
(e.g. two date ranges a day apart); see the README.
"""

import heapq
from collections import defaultdict

PRIMARY, SECONDARY = "primary", "secondary"


def suppress_one_way(counts: dict, threshold: int, forced: dict | None = None) -> dict:
    """Suppression of a one-way table whose grand total is public.

    `counts` maps each cell to its count; `forced` cells are withheld already (reason kept).
    Returns {cell: PRIMARY | SECONDARY} for the withheld cells.
    """
    withheld = dict(forced or {})
    for cell, count in counts.items():
        if 0 < count < threshold and cell not in withheld:
            withheld[cell] = PRIMARY
    if 0 < sum(counts.values()) < threshold:
        return {cell: withheld.get(cell, PRIMARY) for cell in counts}
    _protect_line(list(counts), counts, withheld, threshold)
    return withheld


def _protect_line(cells: list, counts: dict, withheld: dict, threshold: int, exempt=frozenset()) -> bool:
    """Withhold the smallest visible cells of a line until its withheld cells are protected."""
    changed = False
    visible = sorted((cell for cell in cells if cell not in withheld and cell not in exempt),
                     key=lambda c: (counts[c], repr(c)))
    while True:
        hidden = [cell for cell in cells if cell in withheld]
        if not hidden:
            return changed
        total = sum(counts[cell] for cell in hidden)
        if len(hidden) >= 2 and total - (len(hidden) - 1) >= threshold:
            return changed
        if not visible:
            return changed
        withheld[visible.pop(0)] = SECONDARY
        changed = True


def suppress_two_way(counts: dict, threshold: int, row_withheld: dict, column_withheld: dict,
                     total_withheld: bool, forced: dict | None = None) -> dict:
    """Suppression of the cells {(row, column): count} of a two-way table.

    `row_withheld` / `column_withheld` are the one-way suppressions of its margins (fixed: the
    one-way reports publish them), `total_withheld` whether the grand total is withheld.
    """
    withheld = dict(forced or {})
    for cell, count in counts.items():
        if 0 < count < threshold and cell not in withheld:
            withheld[cell] = PRIMARY
    rows, columns = defaultdict(list), defaultdict(list)
    for cell in counts:
        rows[cell[0]].append(cell)
        columns[cell[1]].append(cell)

    # Cells that equal a published figure anyway (alone in a line whose total is visible) are
    # never withheld as complements: hiding them protects nothing.
    exempt = set()
    for _ in range(4 * len(counts) + 10):
        changed = False
        for line, margin_withheld in [(cells, row in row_withheld) for row, cells in rows.items()] + \
                                     [(cells, column in column_withheld) for column, cells in columns.items()]:
            if not margin_withheld:
                changed |= _protect_line(line, counts, withheld, threshold, exempt)
        bridge = _find_bridge(counts, withheld, row_withheld, column_withheld, total_withheld)
        if bridge is not None:
            path = _cheapest_path(bridge, counts, withheld, row_withheld, column_withheld, total_withheld, exempt)
            if path is None:
                kind, cell = bridge[2]
                if kind == "cell" and withheld.get(cell) == SECONDARY:
                    del withheld[cell]
                    exempt.add(cell)
                    continue
                for cell in counts:  # no way to hide it inside the table: withhold every cell
                    withheld.setdefault(cell, SECONDARY)
                return withheld
            for cell in path:
                withheld.setdefault(cell, SECONDARY)
            changed = True
        if not changed:
            return withheld
    for cell in counts:
        withheld.setdefault(cell, SECONDARY)
    return withheld


ROW_TOTAL, COLUMN_TOTAL = ("row", "*"), ("column", "*")


def _edges(counts, withheld, row_withheld, column_withheld, total_withheld):
    """Withheld entries as edges between row nodes and column nodes (totals included)."""
    edges = [(("row", r), ("column", c), ("cell", (r, c))) for (r, c) in counts if (r, c) in withheld]
    edges += [(("row", r), COLUMN_TOTAL, ("row_total", r)) for r in row_withheld]
    edges += [(ROW_TOTAL, ("column", c), ("column_total", c)) for c in column_withheld]
    if total_withheld:
        edges.append((ROW_TOTAL, COLUMN_TOTAL, ("total", None)))
    return edges


def _find_bridge(counts, withheld, row_withheld, column_withheld, total_withheld):
    """A withheld entry that is a bridge of the withheld-entry graph (so it can be solved), or None."""
    edges = _edges(counts, withheld, row_withheld, column_withheld, total_withheld)
    for index, (a, b, label) in enumerate(edges):
        graph = defaultdict(list)
        for other, (x, y, _) in enumerate(edges):
            if other != index:
                graph[x].append(y)
                graph[y].append(x)
        if not _connected(graph, a, b):
            return a, b, label
    return None


def _connected(graph, start, goal) -> bool:
    seen, stack = {start}, [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for following in graph[node]:
            if following not in seen:
                seen.add(following)
                stack.append(following)
    return False


def _cheapest_path(bridge, counts, withheld, row_withheld, column_withheld, total_withheld, exempt=frozenset()):
    """Visible cells to withhold so the bridge lies on a cycle: the cheapest path between its ends."""
    start, goal, label = bridge
    graph = defaultdict(list)
    for (r, c), count in counts.items():
        if label == ("cell", (r, c)) or (r, c) in exempt:
            continue
        cost = 0 if (r, c) in withheld else count + 1
        graph[("row", r)].append((("column", c), cost, (r, c)))
        graph[("column", c)].append((("row", r), cost, (r, c)))
    for x, y, other in _edges(counts, withheld, row_withheld, column_withheld, total_withheld):
        if other != label and other[0] != "cell":  # withheld totals can be walked, not added
            graph[x].append((y, 0, None))
            graph[y].append((x, 0, None))
    best = {start: 0}
    queue = [(0, 0, start, [])]
    tie = 0
    while queue:
        cost, _, node, path = heapq.heappop(queue)
        if node == goal:
            return [cell for cell in path if cell is not None and cell not in withheld]
        if cost > best.get(node, float("inf")):
            continue
        for following, step, cell in graph[node]:
            new_cost = cost + step
            if new_cost < best.get(following, float("inf")):
                best[following] = new_cost
                tie += 1
                heapq.heappush(queue, (new_cost, tie, following, path + [cell]))
    return None
