"""Pure: Job names and manifests, what a Job's object says, the action catalog, history pruning."""
