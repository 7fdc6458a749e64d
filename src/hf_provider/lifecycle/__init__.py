"""Model versions while serving: the history of loads, swaps and rollbacks (history.py), a zero-downtime switch
between two loaded versions of one model (switch.py), the version loaded beside the serving one and the warm
previous version kept for a fast rollback (version.py), canary splits with per-revision stats and automatic
abort (canary.py), and the controller that ties them to the model manager (controller.py)."""
