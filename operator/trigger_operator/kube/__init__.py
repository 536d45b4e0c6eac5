"""I/O: the Kubernetes API calls the scheduler makes. Nothing else in the package calls the API."""
