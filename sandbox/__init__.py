"""Simulated Dynamics 365 orgs, Exchange and Microsoft Graph over real HTTP (never deployed).

* ``sandbox.seed.seed(state=None, mailboxes=60, overlap=0.3, seed=7, orgs=3)`` builds the world;
* ``sandbox.app.create_app(state=None)`` the ASGI app (Web API per org under
  ``/orgs/{name}/api/data/v9.2/``, Graph under ``/graph/v1.0/``, control under ``/_sandbox/``);
* ``sandbox.server.running(port=0, *, loopback_webhooks=False, **seed_kwargs)`` serves it in a
  background thread and yields the base URL; ``sandbox.server.run(...)`` / ``python -m sandbox``
  serve it in the foreground. Webhooks go only to ports 80 and 443, as in Dataverse, unless
  ``loopback_webhooks`` lets a local OrgGuard on a loopback port register.

It imports nothing from OrgGuard: it stands for Microsoft's systems.
"""
