"""The explicit order of the suite (support/ordering.py): the runs_last hook sorts and checks,
and the modules that must run last are marked. Needs no Keycloak."""
from __future__ import annotations

import importlib

import pytest

from support.ordering import (MARKER, RUNS_LAST_LOG_SCAN, RUNS_LAST_PHASE2, RUNS_LAST_RESTART_NO_DATA, check_runs_last,
                              order_runs_last, runs_last_order)


class _Mark:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Item:
    def __init__(self, nodeid: str, mark: _Mark | None = None):
        self.nodeid, self._mark = nodeid, mark

    def get_closest_marker(self, name):
        return self._mark if name == MARKER else None


def test_order_runs_last_puts_unmarked_first_then_groups_by_order_keeping_collection_order():
    items = [_Item("z3", _Mark(order=3)), _Item("a"), _Item("v1a", _Mark(order=1)), _Item("y2", _Mark(2)),
             _Item("b"), _Item("v1b", _Mark(order=1))]
    order_runs_last(items)
    assert [i.nodeid for i in items] == ["a", "b", "v1a", "v1b", "y2", "z3"]
    check_runs_last(items)


def test_check_runs_last_fails_when_a_marked_test_would_run_before_an_unmarked_one():
    with pytest.raises(AssertionError, match="b is an unmarked test but runs after a runs_last"):
        check_runs_last([_Item("a"), _Item("late", _Mark(order=1)), _Item("b")])
    with pytest.raises(AssertionError, match=r"early is a runs_last\(order=1\) test but runs after a runs_last\(order=2\)"):
        check_runs_last([_Item("late", _Mark(order=2)), _Item("early", _Mark(order=1))])


def test_runs_last_needs_an_integer_order():
    with pytest.raises(ValueError, match="integer order"):
        runs_last_order(_Item("x", _Mark()))
    with pytest.raises(ValueError, match="integer order"):
        runs_last_order(_Item("x", _Mark(order="1")))


# module (file name without .py) -> the group it must run in
MUST_RUN_LAST = {"test_v2": RUNS_LAST_PHASE2, "test_v2_events": RUNS_LAST_PHASE2,
                 "test_token_exchange": RUNS_LAST_PHASE2, "test_no_secrets_in_logs": RUNS_LAST_LOG_SCAN,
                 "test_native_missing": RUNS_LAST_RESTART_NO_DATA}


def test_the_phase2_log_scan_and_no_data_restart_modules_are_marked_to_run_last_in_that_order():
    for module, order in MUST_RUN_LAST.items():
        marks = importlib.import_module(f"e2e.{module}").pytestmark
        marks = marks if isinstance(marks, list) else [marks]
        assert [m.kwargs.get("order") for m in marks if m.name == MARKER] == [order], module


def test_this_session_runs_the_runs_last_tests_after_all_others(request):
    items = request.session.items
    check_runs_last(items)
    for item in items:
        module = item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        if module in MUST_RUN_LAST:
            assert runs_last_order(item) == MUST_RUN_LAST[module], item.nodeid
