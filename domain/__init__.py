"""The domain contract of handoff (see shared/docs/domain.md), as pure code.

Nothing in this package imports from `projections`, `adapters` or `services`.
"""
