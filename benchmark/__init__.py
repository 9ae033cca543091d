"""synthcxr-bench: benchmark stages for synthetic chest X-rays (fidelity, classifier utility)."""

__version__ = "0.1.0"
