"""The SQLite results store."""

from hwnas.store.sqlite import EvaluationRecord, ResultsStore, versions

__all__ = ["EvaluationRecord", "ResultsStore", "versions"]
