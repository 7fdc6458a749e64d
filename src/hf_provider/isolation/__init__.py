"""How a model's batches run: in this process (ThreadRunner) or in a child process (ProcessWorker) with its own
device context, restarted after a crash. Stage runners for the scheduler; built by the model manager."""
