"""The Hub cache as hf-provider keeps it: a disk budget with LRU pruning from the provider's own access records
(budget.py, access.py), revisions that must never be pruned (pins.py), and file integrity with self-repair
(integrity.py, hashing.py). Everything works on the standard HF cache through huggingface_hub's cache API."""
