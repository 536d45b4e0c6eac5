"""Shell completion: the candidates for the word being typed, and the scripts for bash and zsh.

The candidates come from the argument parser itself (subcommands, flags, ``-o`` choices) and, for
Trigger names, namespaces and contexts, from `Sources`. kubectl (>= 1.26) completes ``kubectl
trigger ...`` by running ``kubectl_complete-trigger`` with the words after ``trigger``, the last
one being the word typed so far; it prints one candidate per line (``name<TAB>description``), then
``:<directive>`` as cobra does (4: no file names; 0: the shell's default, for ``--kubeconfig``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

NO_FILES, FILES = 4, 0


class Sources(Protocol):
    """What only the cluster or the kubeconfig knows; ``scope`` holds the flags given so far
    (``namespace``, ``context``, ``kubeconfig``). Failures answer nothing, never an error."""

    def triggers(self, scope: Mapping[str, str]) -> list[str]: ...

    def namespaces(self, scope: Mapping[str, str]) -> list[str]: ...

    def contexts(self, scope: Mapping[str, str]) -> list[str]: ...


@dataclass
class _Read:
    """The words before the one being completed, as the parser would take them."""

    parser: argparse.ArgumentParser
    command: str | None = None
    positionals: list[str] = field(default_factory=list)
    scope: dict[str, str] = field(default_factory=dict)
    pending: argparse.Action | None = None  # an option whose value is the word being completed


def _option(parser: argparse.ArgumentParser, word: str) -> argparse.Action | None:
    return next((a for a in parser._actions if word in a.option_strings), None)


def _read(words: Sequence[str], parser: argparse.ArgumentParser,
          commands: Mapping[str, argparse.ArgumentParser]) -> _Read:
    read = _Read(parser)
    for word in words:
        if read.pending is not None:
            read.scope[read.pending.dest] = word
            read.pending = None
        elif word.startswith("-"):
            flag, eq, value = word.partition("=")
            action = _option(read.parser, flag)
            if action is not None and action.nargs != 0:
                if eq:
                    read.scope[action.dest] = value
                else:
                    read.pending = action
        elif read.command is None and word in commands:
            read.command, read.parser = word, commands[word]
        else:
            read.positionals.append(word)
    return read


def _value_candidates(action: argparse.Action, read: _Read, sources: Sources) -> tuple[list[str], int]:
    if action.dest == "kubeconfig":
        return [], FILES
    if action.dest == "namespace":
        return sources.namespaces(read.scope), NO_FILES
    if action.dest == "context":
        return sources.contexts(read.scope), NO_FILES
    return [str(c) for c in action.choices or ()], NO_FILES


def candidates(words: Sequence[str], parser: argparse.ArgumentParser,
               commands: Mapping[str, argparse.ArgumentParser], sources: Sources) -> tuple[list[str], int]:
    """The candidates for the last of ``words`` (the word typed so far) and cobra's directive."""
    *before, current = list(words) or [""]
    read = _read(before, parser, commands)
    if read.pending is not None:
        found, directive = _value_candidates(read.pending, read, sources)
    elif current.startswith("-"):
        found, directive = [s for a in read.parser._actions for s in a.option_strings if s.startswith("--")], NO_FILES
    elif read.command is None:
        found, directive = [f"{name}\t{p.description or ''}".rstrip() for name, p in commands.items()], NO_FILES
    else:
        found, directive = _positional_candidates(read, sources), NO_FILES
    return [c for c in found if c.startswith(current)], directive


def _positional_candidates(read: _Read, sources: Sources) -> list[str]:
    positional = [a for a in read.parser._actions if not a.option_strings]
    if len(read.positionals) >= len(positional):
        return []
    action = positional[len(read.positionals)]
    if action.dest == "name":
        return sources.triggers(read.scope)
    return [str(c) for c in action.choices or ()]


BASH = r"""# kubectl-trigger completion for bash: source <(kubectl-trigger completion bash)
# (kubectl trigger <TAB> needs none of this: kubectl >= 1.26 runs kubectl_complete-trigger itself.)
_kubectl_trigger() {
    local line directive=4
    COMPREPLY=()
    while IFS='' read -r line; do
        if [[ $line == :* ]]; then directive=${line#:}; continue; fi
        COMPREPLY+=("${line%%$'\t'*}")
    done < <(kubectl_complete-trigger "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
    if [[ $directive == 0 && ${#COMPREPLY[@]} -eq 0 ]]; then compopt -o default 2>/dev/null; fi
}
complete -F _kubectl_trigger kubectl-trigger
"""

ZSH = r"""#compdef kubectl-trigger
# kubectl-trigger completion for zsh: source <(kubectl-trigger completion zsh), after compinit
# (kubectl trigger <TAB> needs none of this: kubectl >= 1.26 runs kubectl_complete-trigger itself.)
_kubectl_trigger() {
    local -a lines names
    local line directive=4
    lines=("${(@f)$(kubectl_complete-trigger "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    for line in $lines; do
        if [[ $line == :* ]]; then directive=${line#:}; continue; fi
        names+=("${line%%$'\t'*}")
    done
    if (( ${#names} )); then compadd -a names; elif [[ $directive == 0 ]]; then _files; fi
}
compdef _kubectl_trigger kubectl-trigger
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH}
