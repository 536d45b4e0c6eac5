"""Pure event logic: reading deliveries (CloudEvents 1.0 over HTTP, the seed's plain JSON), matching
them to event Triggers, and counting them into a Trigger's status exactly once. No I/O."""
