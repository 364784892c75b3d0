"""The gateway: the users' REST API over the chain, the schedulers and the miners."""
