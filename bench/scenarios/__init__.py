"""One module per scenario; each ``run(...)`` starts from a fresh control plane and returns its
section of results.json."""
