"""Pipeline optimization: measure candidate backends per model on this machine, keep the fastest that passes the
per-task accuracy guard (`hfp optimize`, spec field `optimize`). Modules import their heavy dependencies lazily."""
