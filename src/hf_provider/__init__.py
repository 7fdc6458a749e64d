"""hf-provider."""
