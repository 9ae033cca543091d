"""The whole pipeline from one config (run_all)."""
