"""Small regions joined to their cheapest neighbour, smallest first, many at a time.

:func:`merge_speckle` makes the merges of the one-at-a-time clean-up: each region under a
size, smallest first (ties by id), joins the neighbour whose merge adds the fewest bits
(:func:`segment.coding.merge_gain`; the first by id among equal gains), and a merged region
still under the size waits its turn again. Each merge depends on those before it (a
neighbour that grew codes the region differently), so one at a time costs a few small numpy
calls per merge, and a photo has tens of thousands of speckles.

Here the merges are guessed and checked by windows. The next regions' cheapest merges are
computed together from the state at the window's start; the window's merges are made in
order on those guesses (adjacency and statistics only, which is cheap), recording for each
merge what it saw (its region's and neighbours' statistics, the borders) and how to undo
it. Then every merge's gains are computed again from what it saw, in one batch: exactly
the gains the one-at-a-time clean-up computes at that turn. The merges up to the first wrong
guess stand; the others are undone and the wrong one is made with its true partner. Most
guesses hold (a speckle's cheapest neighbour seldom changes because another speckle joined
that neighbour), so the coding lengths cost a few batched calls per window. A merge that
saw the same statistics rows as its guess (nothing near it merged since) takes the gains
the guess computed.
"""

import heapq
import itertools

import numpy as np

from .coding import coding_length, merge_gain

__all__ = ["merge_speckle"]

_MISSING = object()
_FIRST_WINDOW = 64
_MAX_WINDOW = 128


def _smallest(heap, k):
    """The ``k`` smallest items of a heap (a list kept by :mod:`heapq`), in O(k log k)."""
    out, front = [], [(heap[0], 0)] if heap else []
    while front and len(out) < k:
        item, i = heapq.heappop(front)
        out.append(item)
        for c in (2 * i + 1, 2 * i + 2):
            if c < len(heap):
                heapq.heappush(front, (heap[c], c))
    return out


def _pair_keys(rows_r, rows_k):
    return (np.asarray(rows_r, dtype=np.int64) << 32) | np.asarray(rows_k, dtype=np.int64)


class _History:
    """Statistics rows: row x < m is region x's at the start (a copy of the graph's), each
    merge appends the union's row. A region's current statistics are row ``cur[x]``."""

    def __init__(self, graph, capacity):
        self.coding = {"eps": graph.eps, "weight": graph.weight}
        self.m = len(graph.n)
        grow = lambda a: np.concatenate([a, np.zeros((capacity, *a.shape[1:]))])  # noqa: E731
        self.n, self.s, self.q, self.own = (grow(a) for a in (graph.n, graph.s, graph.q, graph.own))
        self.rows = self.m  # next row
        self.own_done = self.m  # rows below have their coding length

    def append(self, size, a, b):
        """A new row: the sums of rows ``a`` and ``b`` (``size`` pixels); its number."""
        h = self.rows
        self.n[h] = size
        np.add(self.s[a], self.s[b], out=self.s[h])
        np.add(self.q[a], self.q[b], out=self.q[h])
        self.rows += 1
        return h

    def truncate(self, rows):
        self.rows = rows
        self.own_done = min(self.own_done, rows)

    def take(self, rows):
        """(n, s, q, own) of ``rows`` (ndarray of row numbers)."""
        if self.own_done < self.rows:  # coding lengths of the rows appended since
            a, b = self.own_done, self.rows
            self.own[a:b] = coding_length(self.n[a:b], self.s[a:b], self.q[a:b], **self.coding)
            self.own_done = b
        return self.n[rows], self.s[rows], self.q[rows], self.own[rows]


class _Speckle:
    """State of one clean-up: the graph, the statistics' history, the queue, the journal."""

    def __init__(self, graph, min_size):
        self.g = graph
        self.min_size = min_size
        live = np.flatnonzero(graph.alive)
        live = live[graph.n[live] < min_size]
        live = live[np.lexsort((live, graph.n[live]))]
        self.queue = list(zip(graph.n[live].tolist(), live.tolist(), strict=True))
        # Each merge leaves one region under the size fewer: at most len(queue) merges.
        self.hist = _History(graph, max(1, len(self.queue)))
        self.cur = list(range(len(graph.n)))
        self.size = graph.n.tolist()
        self.pos = 0
        self.pending = []  # regions merged and still small: (size, id), a heap
        self.window = _FIRST_WINDOW
        self.known = []  # this window's gains so far: (pair keys, gains)

    # -- the order ------------------------------------------------------------------------

    def _next(self, ops):
        """The next region due (or None), as the one-at-a-time clean-up pops it; pops of
        ``pending`` are logged in ``ops``."""
        queue, pending = self.queue, self.pending
        g, size = self.g, self.size
        while True:
            if pending and (self.pos == len(queue) or pending[0] < queue[self.pos]):
                item = heapq.heappop(pending)
                ops.append(None)
            elif self.pos < len(queue):
                item = queue[self.pos]
                self.pos += 1
            else:
                return None
            r = item[1]
            if g.alive[r] and item[0] == size[r] and g.nb[r]:
                return r

    # -- guesses --------------------------------------------------------------------------

    def _pairs(self, regions):
        """Every (region, neighbour) pair of ``regions`` now: rows, neighbours, borders."""
        nb, cur = self.g.nb, self.cur
        deg, others, border = [], [], []
        for r in regions:
            d = nb[r]
            deg.append(len(d))
            others.extend(d)
            border.extend(d.values())
        rows_r = np.repeat(np.array([cur[r] for r in regions], dtype=np.int64), deg)
        rows_k = np.array([cur[k] for k in others], dtype=np.int64)
        return deg, rows_r, rows_k, np.array(others, dtype=np.int64), border

    def _gains(self, rows_r, rows_k, border):
        """ΔL of merging the regions of rows ``rows_r`` with those of ``rows_k``: the same
        sums as :func:`segment.coding.merge_gain` on the graph's arrays."""
        g, p = self.g, len(rows_r)
        n, s, q, own = self.hist.take(np.concatenate([rows_r, rows_k]))
        i = np.arange(p)
        return merge_gain(
            n, s, q, i, i + p, np.asarray(border, dtype=np.float64), g.eps, g.bb,
            weight=g.weight, own=own,
        )  # fmt: skip

    @staticmethod
    def _cheapest(deg, others, gains):
        """Per group of ``deg`` pairs: the index of the least gain, the first neighbour by
        id among equals (as ``argmin`` over neighbours sorted by id), NaN first."""
        group = np.repeat(np.arange(len(deg)), deg)
        order = np.lexsort((others, gains, group))
        starts = np.concatenate([[0], np.cumsum(deg)[:-1]]).astype(np.int64)
        best = order[starts]
        odd = ~np.isfinite(gains)
        if odd.any():
            for t in np.flatnonzero(np.add.reduceat(odd, starts)).tolist():
                lo = starts[t]
                sl = slice(lo, lo + deg[t])
                by_id = np.argsort(others[sl], kind="stable")
                best[t] = lo + by_id[np.argmin(gains[sl][by_id])]
        return best

    def _guess(self, first=None, guesses=None, ahead=None):
        """Cheapest partner of the next regions due (state now), {region: partner}: those
        of the next ``ahead`` (default: a window) with more than one neighbour and no guess
        in ``guesses`` that is still a neighbour (all of them without ``guesses``), and
        region ``first``."""
        queue, g, size = self.queue, self.g, self.size
        k = self.window if ahead is None else ahead
        due = heapq.merge(_smallest(self.pending, k), queue[self.pos : self.pos + k])
        regions = [] if first is None else [first]
        for s_, r in itertools.islice(due, k):
            d = g.nb[r]
            if g.alive[r] and s_ == size[r] and len(d) > 1:
                if guesses is None or guesses.get(r, -1) not in d:
                    regions.append(r)
        if not regions:
            return {}
        deg, rows_r, rows_k, others, border = self._pairs(regions)
        gains = self._gains(rows_r, rows_k, border)
        self.known.append((_pair_keys(rows_r, rows_k), gains))
        best = self._cheapest(deg, others, gains)
        return dict(zip(regions, others[best].tolist(), strict=True))

    def _gains_seen(self, rows_r, rows_k, border):
        """:meth:`_gains`, taken from this window's guesses where they computed the same
        pair of rows (rows are not reused within a window: the same statistics and border)."""
        keys = _pair_keys(rows_r, rows_k)
        known_keys = np.concatenate([k for k, _ in self.known])
        if not len(known_keys):
            return self._gains(rows_r, rows_k, border)
        order = np.argsort(known_keys)
        known_keys = known_keys[order]
        known = np.concatenate([g for _, g in self.known])[order]
        at = np.minimum(np.searchsorted(known_keys, keys), len(known_keys) - 1)
        hit = known_keys[at] == keys
        gains = np.empty(len(keys))
        gains[hit] = known[at[hit]]
        miss = ~hit
        if miss.any():
            border = np.asarray(border, dtype=np.float64)
            gains[miss] = self._gains(rows_r[miss], rows_k[miss], border[miss])
        return gains

    # -- merges, undone on a wrong guess ---------------------------------------------------

    def _join(self, r, p, log):
        """``p`` and ``r`` merge (the region with more neighbours survives, ``r`` if
        equal); what undoes it goes to ``log``. Returns (survivor, merged)."""
        nb, cur, size, alive = self.g.nb, self.cur, self.size, self.g.alive
        i, j = (p, r) if len(nb[p]) > len(nb[r]) else (r, p)
        log.append((cur, i, cur[i]))
        log.append((size, i, size[i]))
        size[i] = size[i] + size[j]
        cur[i] = self.hist.append(size[i], cur[i], cur[j])
        log.append((alive, j, True))
        alive[j] = False
        ni, nj = nb[i], nb[j]
        log.append((ni, j, ni.pop(j)))
        for k, c in nj.items():
            if k == i:
                continue
            old = ni.get(k, _MISSING)
            log.append((ni, k, old))
            ni[k] = (0 if old is _MISSING else old) + c
            nk = nb[k]
            log.append((nk, j, nk.pop(j)))
            log.append((nk, i, nk.get(i, _MISSING)))
            nk[i] = ni[k]
        log.append((nb, j, nj))
        nb[j] = {}
        return i, j

    @staticmethod
    def _undo(log, start):
        for box, key, old in reversed(log[start:]):
            if old is _MISSING:
                del box[key]
            else:
                box[key] = old
        del log[start:]

    # -- one window -----------------------------------------------------------------------

    def window_pass(self):
        """Merge the next window of regions; False when none is left."""
        self.known = [(np.zeros(0, dtype=np.int64), np.zeros(0))]
        guesses = self._guess()
        pending0 = list(self.pending)
        ops, log, steps = [], [], []
        rows_r, rows_k, others, border, deg = [], [], [], [], []
        nb, cur = self.g.nb, self.cur
        while len(steps) < self.window:
            r = self._next(ops)
            if r is None:
                break
            d = nb[r]
            if len(d) == 1:
                p = next(iter(d))
            else:
                p = guesses.get(r, -1)
                if p not in d:
                    guesses.update(self._guess(r, guesses, self.window - len(steps)))
                    p = guesses[r]
            # What the one-at-a-time clean-up sees at this turn, for the check.
            deg.append(len(d))
            rows_r.extend([cur[r]] * len(d))
            rows_k.extend([cur[k] for k in d])
            others.extend(d)
            border.extend(d.values())
            undo = (len(log), self.pos, len(ops), self.hist.rows)
            steps.append((r, p, self._join(r, p, log), undo))
            self._requeue(steps[-1][2][0], ops)
        if not steps:
            return False
        gains = self._gains_seen(np.array(rows_r), np.array(rows_k), border)
        others = np.array(others, dtype=np.int64)
        best = self._cheapest(deg, others, gains)
        true, gain = others[best].tolist(), gains[best].tolist()
        wrong = next((t for t, st in enumerate(steps) if st[1] != true[t]), len(steps))
        for t in range(wrong):
            self._accept(steps[t][2], gain[t])
        if wrong == len(steps):
            self.window = min(_MAX_WINDOW, 2 * self.window)
            return True
        # Back to the wrong guess's turn (region popped, nothing merged since).
        r, _, _, (at, pos, n_ops, rows) = steps[wrong]
        self._undo(log, at)
        self.hist.truncate(rows)
        self.pos = pos
        self.pending = pending0  # a copy of the heap then: still a heap
        for op in ops[:n_ops]:
            if op is None:
                heapq.heappop(self.pending)
            else:
                heapq.heappush(self.pending, op)
        pair = self._join(r, true[wrong], [])
        self._accept(pair, gain[wrong])
        self._requeue(pair[0], [])
        self.window = max(8, wrong)
        return True

    def _requeue(self, i, ops):
        if self.size[i] < self.min_size:
            item = (self.size[i], i)
            heapq.heappush(self.pending, item)
            ops.append(item)

    def _accept(self, pair, gain):
        g = self.g
        g.merges.append(pair)
        g.gains.append(gain)
        g.version[pair[1]] += 1
        g.count -= 1

    def finish(self):
        """The graph's statistics and coding lengths made current."""
        g, hist = self.g, self.hist
        live = np.flatnonzero(g.alive)
        rows = np.array(self.cur, dtype=np.int64)[live]
        moved = rows >= hist.m
        live, rows = live[moved], rows[moved]
        if len(live):
            n, s, q, own = hist.take(rows)
            g.n[live], g.s[live], g.q[live], g.own[live] = n, s, q, own


def merge_speckle(graph, min_size):
    """Merge every region of ``graph`` under ``min_size`` pixels into its cheapest
    neighbour, smallest first, as one at a time would (see the module notes).

    ``graph`` is the merging graph of :mod:`segment.hierarchy`: per region ``n``, ``s``,
    ``q``, ``own`` (coding lengths), ``alive``, ``version``, ``nb`` (dicts neighbour ->
    border), ``eps``, ``bb``, ``weight``, and ``merges``, ``gains``, ``count``; it is
    updated in place.
    """
    run = _Speckle(graph, min_size)
    if not run.queue:
        return
    while run.window_pass():
        pass
    run.finish()
