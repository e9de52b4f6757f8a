"""The library core: torch and numpy only. Momentum rules and MomentumScheduler, the per-layer
attribution, and surgical fine-tuning; ``errors`` and ``files`` need only the standard library."""
