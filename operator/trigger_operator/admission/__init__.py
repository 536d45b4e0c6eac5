"""Pure admission decisions for Triggers: what the schema cannot refuse (an unparsable cron
expression, an unknown time zone, a schedule that never fires, an action type with no template),
who created it, and whether the request carries its own Job template (then the requester must be
allowed to create Jobs). No I/O: the web shell asks the API server the RBAC question."""
