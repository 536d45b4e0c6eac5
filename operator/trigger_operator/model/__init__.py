"""Pure: the Trigger's spec (validated) and status (immutable values with transitions)."""
