"""Where the chain parameters live in state."""

from __future__ import annotations

from deoss.chain.genesis import ChainParams
from deoss.chain.query import QueryArgs, encode_value
from deoss.chain.state import State, get_record

PARAMS_KEY = b"params"


def load_params(state: State) -> ChainParams:
    params = get_record(state, PARAMS_KEY, ChainParams)
    if params is None:
        raise RuntimeError("no chain parameters in state")
    return params


def query_params(state: State, args: QueryArgs) -> bytes:
    """The chain's parameters (from genesis), for services that must follow them."""
    return encode_value(load_params(state))
