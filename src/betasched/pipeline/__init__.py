"""Pipeline layer (yaml, hydra, dvc, mlflow): params, tracking, the glue of the DVC stages, and the
parallel launcher. The top layer: it may import every other one."""
