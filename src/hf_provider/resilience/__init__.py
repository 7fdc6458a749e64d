"""Resilience: supervision of background work (breakers, retry budgets and fallbacks come with their issue)."""
