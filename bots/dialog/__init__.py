"""Channel-agnostic chatbot scripts: menus, FAQ, contact capture, hand-off to a manager.

A script is YAML (`scripts/shop.yaml` is the example); `Dialog.handle` is pure and
takes the stored state and one customer turn, returning messages, actions and the
new state for the caller to keep.
"""

from __future__ import annotations

from bots.dialog.engine import Action, Dialog, OutMessage, Reply, Turn
from bots.dialog.loader import ScriptError, ScriptIssue, load_script, parse_script
from bots.dialog.render import render_numbered
from bots.dialog.script import Script

__all__ = [
    "Action",
    "Dialog",
    "OutMessage",
    "Reply",
    "Script",
    "ScriptError",
    "ScriptIssue",
    "Turn",
    "load_script",
    "parse_script",
    "render_numbered",
]
