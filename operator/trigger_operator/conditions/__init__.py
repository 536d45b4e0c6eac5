"""Pure condition logic: reading a value out of a source's document, drift and threshold measures,
and the rule that makes a conditional Trigger fire once per excursion. No I/O."""
