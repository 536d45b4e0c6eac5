"""Which Triggers this replica schedules now: ``owns(namespace, name)`` says whether it leads
(controller/leader.py) or holds the Trigger's shard (controller/shards.py); always, alone. A pass
over a key not owned drops it; `lead` and `take_back` bring keys back when that changes."""

from __future__ import annotations

from collections.abc import Callable

from trigger_operator.controller.store import Key, Store


class Ownership:
    def __init__(self, owns: Callable[[str, str], bool], store: Store, add: Callable[[Key], None]) -> None:
        self.owns = owns
        self.store = store
        self.add = add  # puts a key on the work queue
        self._dropped: set[Key] = set()  # keys a pass dropped for not owning them, until `take_back`
        # Counts `lead` calls: a copy our own write produced in an earlier term is not vouched for
        # (another replica may have held the Trigger meanwhile): controller/reconciler.py.
        self.term = 0

    def drop(self, key: Key) -> None:
        """A pass skipped for not owning the key; remembered for `take_back` only while there is
        something to act on (a follower would otherwise keep every deleted Trigger's key)."""
        if self.store.holds(key):
            self._dropped.add(key)

    def lead(self) -> None:
        """This replica became the leader, or took shards: every Trigger gets a pass (a follower
        kept its store current from the watches but decided nothing; another shard's are dropped).
        Also called on every new term of a lease it had not lost by its own clock (the electors)."""
        self.term += 1
        self._dropped.clear()
        for key in self.store.trigger_keys():
            self.add(key)

    def take_back(self) -> None:
        """After each successful renewal: keys dropped while a lease we hold had lapsed for a
        moment (a round later than the renew deadline; no new shard, so no `lead`) come back."""
        for key in [k for k in self._dropped if self.owns(*k)]:
            self._dropped.discard(key)
            self.add(key)
