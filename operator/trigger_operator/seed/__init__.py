"""The seed's Triggers REST API as data: its request and response models (snake_case, every field
of the seed's response model) and the pure mapping between them and Trigger objects. No I/O."""
