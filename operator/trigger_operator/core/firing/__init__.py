"""How each type of Trigger fires, one module each: schedule.py (cron and interval moments),
events.py (an event threshold), condition.py (a source's condition), compound.py (enough parts
fired within a window), run_now.py (the run-now annotation, for every type); cooldown.py is the
wait after an event or condition run. Each drafts its runs through core/runs.py. Pure."""
