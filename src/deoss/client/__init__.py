"""Clients: the chain's RPC (ChainClient) and, later, the HTTP clients of the services."""
