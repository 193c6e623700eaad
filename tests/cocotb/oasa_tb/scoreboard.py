"""In-order scoreboard: expected items from the golden model against what the DUT sent.

Mismatches are collected (the first few in full) rather than raised at once, so one run
reports how much is wrong; :meth:`Scoreboard.finish` raises if anything was. Items must
arrive in order: a missing item, an extra one, or a swapped pair all show up as
mismatches or as a count difference.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Scoreboard"]


class Scoreboard:
    """Compare a stream of observed items with a queue of expected ones.

    ``expect(item, tag)`` queues what must come next; ``observe(item)`` compares the next
    observation with the oldest expected item (dicts compare per key, so a message names
    the field that differs).
    """

    def __init__(self, name: str, log, max_reports: int = 8):
        self.name = name
        self.log = log
        self.max_reports = max_reports
        self.expected: deque = deque()
        self.errors: list[str] = []
        self.matched = 0
        self.unexpected = 0

    def expect(self, item, tag: str = "") -> None:
        self.expected.append((item, tag))

    def error(self, text: str) -> None:
        self.errors.append(text)
        if len(self.errors) <= self.max_reports:
            self.log.error("%s: %s", self.name, text)

    def observe(self, item, cycle: int | None = None) -> bool:
        where = f" at cycle {cycle}" if cycle is not None else ""
        if not self.expected:
            self.unexpected += 1
            self.error(f"unexpected item{where} (nothing more was expected): {item}")
            return False
        want, tag = self.expected.popleft()
        if item == want:
            self.matched += 1
            return True
        if isinstance(want, dict) and isinstance(item, dict):
            diff = {k: (item.get(k), want[k]) for k in want if item.get(k) != want[k]}
            text = ", ".join(f"{k}: got {g} want {w}" for k, (g, w) in diff.items())
        else:
            text = f"got {item} want {want}"
        self.error(f"mismatch{where} [{tag}]: {text}")
        return False

    def check(self, got, want, tag: str = "") -> bool:
        """One immediate comparison (no queue)."""
        self.expect(want, tag)
        return self.observe(got)

    @property
    def pending(self) -> int:
        return len(self.expected)

    def finish(self) -> None:
        """Raise ``AssertionError`` if anything differed, was missing or was extra."""
        if self.expected:
            tags = ", ".join(t for _, t in list(self.expected)[:5])
            self.error(f"{len(self.expected)} expected item(s) never arrived (first: {tags})")
        if self.errors:
            raise AssertionError(
                f"{self.name}: {len(self.errors)} error(s), {self.matched} matched; "
                f"first: {self.errors[0]}"
            )
