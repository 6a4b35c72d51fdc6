"""Simulated Dynamics 365 orgs, Exchange and Microsoft Graph over real HTTP (never deployed).

`create_app(state)` builds the ASGI app, `seed(...)` the world, `server.running()` serves it
in a background thread for tests. See README-style notes in `sandbox/app.py` and the
control routes in `sandbox/control.py`.
"""
