"""I/O shell for event intake: counts delivered events into the status of the Triggers they apply
to, durably (acknowledged only once written) and with few writes (group commit)."""
