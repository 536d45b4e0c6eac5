"""I/O shell: one delaying queue and a few workers reconcile every Trigger (no task per Trigger)."""
