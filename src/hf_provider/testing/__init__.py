"""Test helpers: tiny random model builder (`hf_provider.testing.models`). Nothing heavy is imported here."""
