"""Media inputs of requests (images), decoded and checked against `[media]` limits before they are queued."""
