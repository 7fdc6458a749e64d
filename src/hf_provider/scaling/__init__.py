"""Scaling past one process: Ray Serve replicas of the same application (config.py, policy.py and budget.py
are pure and need no Ray; ray_serve.py, ray_run.py and ray_config.py make the Ray calls)."""
