"""The sandbox console: a browser page to chat with the bots as emulated users.

One static page (vanilla JS, no build step) talks to the emulators' control APIs and
to chatgate's JSON API; the composition root mounts it with `setup_console`.
"""

from __future__ import annotations

from gateway.sandbox.console.routes import ConsoleConfig, setup_console

__all__ = ["ConsoleConfig", "setup_console"]
