"""Where the chain parameters live in state."""

from __future__ import annotations

from deoss.chain.genesis import ChainParams
from deoss.chain.state import State, get_record

PARAMS_KEY = b"params"


def load_params(state: State) -> ChainParams:
    params = get_record(state, PARAMS_KEY, ChainParams)
    if params is None:
        raise RuntimeError("no chain parameters in state")
    return params
