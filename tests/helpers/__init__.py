"""Shared test helpers: closed-form linear-Gaussian programs (``ppca``), hand-written programs of
other shapes (``programs``) and the worker of the multi-process tests (``distributed_worker``)."""
