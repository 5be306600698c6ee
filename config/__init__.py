"""Environment configuration: the one place that knows which target (local or aws) is active."""
