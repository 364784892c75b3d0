"""The miner's own request error, shared by the service, its tag duties and the body writer
(its own module so that ``writer.py`` can raise it without importing ``service.py``)."""

from __future__ import annotations

from deoss.services.common.errors import ServiceError

__all__ = ["FragmentMismatch"]


class FragmentMismatch(ServiceError):
    """The request does not match what the deal declared: hash, size, indices; or tags of the
    wrong length, or that do not verify against the fragment."""

    status, code = 422, "fragment_mismatch"
