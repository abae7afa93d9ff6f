"""Explicit order of the e2e suite: which tests must run after all the others, and why.

A test (usually a whole module, `pytestmark = pytest.mark.runs_last(order=N)`) marked
`runs_last` runs after every unmarked test, in ascending `order`; tests with the same order keep
their collection order. The groups the suite uses:

- RUNS_LAST_PHASE2 (1): modules that restart the shared Keycloak with conftest.PHASE2_FEATURES.
  The V2 broker endpoint switches V1 off (two versions of one Keycloak feature), and unmarked
  modules call the V1 endpoint on the default feature set without restarting: they must all
  have run before. The phase-2 modules share one restart (conftest.ensure_features).
- RUNS_LAST_LOG_SCAN (2): the log-hygiene scan. It reads Keycloak's log and the events of every
  realm the run created and looks for every token the mock issued, so every other token-issuing
  test must have run before it, except the one below, which wipes the database.
- RUNS_LAST_RESTART_NO_DATA (3): the native-library-missing test. It restarts Keycloak without
  the .so and then with the defaults and without KC_KEEP_DATA: the database (realms, events)
  is gone afterwards, and the feature set is back to the defaults.

conftest.pytest_collection_modifyitems applies `order_runs_last` and then `check_runs_last`,
which fails the collection if a marked test would still run before an unmarked one (or a
later group before an earlier one).
"""
from __future__ import annotations

MARKER = "runs_last"
MARKER_HELP = (f"{MARKER}(order=N): run after every unmarked test, in ascending N "
               "(see tests/support/ordering.py for the groups and why)")

RUNS_LAST_PHASE2 = 1
RUNS_LAST_LOG_SCAN = 2
RUNS_LAST_RESTART_NO_DATA = 3


def runs_last_order(item) -> int | None:
    """The `order` of the item's closest runs_last marker, None when it is not marked."""
    mark = item.get_closest_marker(MARKER)
    if mark is None:
        return None
    order = mark.kwargs.get("order", mark.args[0] if mark.args else None)
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise ValueError(f"{item.nodeid}: {MARKER} needs an integer order >= 1, got {order!r}")
    return order


def _key(item) -> int:
    order = runs_last_order(item)
    return 0 if order is None else order


def order_runs_last(items: list) -> None:
    """Reorders items in place: unmarked first, then runs_last groups by order (stable)."""
    items[:] = sorted(items, key=_key)


def check_runs_last(items: list) -> None:
    """Raises if a runs_last test would run before an unmarked one or a later group before an earlier one."""
    seen = 0
    for item in items:
        k = _key(item)
        if k < seen:
            kind = "an unmarked test" if k == 0 else f"a {MARKER}(order={k}) test"
            raise AssertionError(f"{item.nodeid} is {kind} but runs after a {MARKER}(order={seen}) test")
        seen = k
