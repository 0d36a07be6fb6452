"""Automated flows: reminders, abandoned carts and promos down a channel cascade.

`spec` is the flow file's shape and compiled program, `loader` reads a folder of
them, `templates` renders messages in a sandbox, `segments` is the audience
language; the engine, cascade, policies, scheduler and broadcasts run them.
"""
