"""Execution: order builders (MKT LMT STP STP-LMT TRAIL TRAIL-LIMIT MOC LOC, bracket, OCA, exits of
a position), cash sizing with multiplier and lot size, and execution algorithms (TWAP, iceberg) as
pure state machines the trader runs. Nothing here does I/O.

* :mod:`trader.execution.builders` — :class:`OrderSpec`, :func:`check_spec`, :func:`build_order`,
  :func:`build_legs` (brackets), :func:`one_cancels_other`, position exits.
* :mod:`trader.execution.sizing` — :func:`quantity_for_cash`, :class:`LotRules`, :func:`sizing_price`.
* :mod:`trader.execution.algos` — the actions and the plans' common machinery;
  :mod:`trader.execution.twap` — :class:`TwapPlan`; :mod:`trader.execution.iceberg` — :class:`IcebergPlan`.
"""

from trader.execution.algos import Action, CancelChild, Done, ModifyChild, PlaceChild, Plan
from trader.execution.builders import BadOrder, Leg, OrderSpec, build_legs, build_order, check_spec
from trader.execution.iceberg import IcebergPlan
from trader.execution.sizing import LotRules, quantity_for_cash
from trader.execution.twap import TwapPlan

__all__ = [
    "Action",
    "BadOrder",
    "CancelChild",
    "Done",
    "IcebergPlan",
    "Leg",
    "LotRules",
    "ModifyChild",
    "OrderSpec",
    "PlaceChild",
    "Plan",
    "TwapPlan",
    "build_legs",
    "build_order",
    "check_spec",
    "quantity_for_cash",
]
